"""The runner: build cases once, score them with every arm (through the cache), collect per-user results."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmrec.errors import ConfigError
from llmrec.evaluation.arms import ArmOutput, build_arm, check_arm, check_arm_split
from llmrec.evaluation.cache import ArmCache, arm_fingerprint
from llmrec.evaluation.config import ArmConfig, ExperimentConfig
from llmrec.evaluation.metrics import ndcg_at, target_rank
from llmrec.evaluation.protocols import EvalCase, build_cases, make_split, slice_membership, user_order
from llmrec.models.adapters import resolve_adapter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UserResult:
    """One arm's outcome on one user."""

    user_id: str
    rank: int | None  # 1-based rank of the target, None when the target was not a candidate
    n_candidates: int
    target_index: int | None
    scores: tuple[float, ...]
    slices: dict[str, bool]
    prompt_tokens: int
    forward_passes: int
    parse_failures: int
    latency_s: float
    scored: bool = True  # False: an LLM arm skipped a case whose target the retriever missed (a miss anyway)


@dataclass
class ArmResult:
    """Everything one arm produced."""

    config: ArmConfig
    users: list[UserResult] = field(default_factory=list)
    computed: int = 0
    reused: int = 0
    seconds: float = 0.0


@dataclass
class ExperimentResult:
    """Per-arm, per-user results of one experiment run."""

    config: ExperimentConfig
    arms: dict[str, ArmResult]
    users_sampled: int
    users_available: int


def _repo_root(config: ExperimentConfig) -> Path:
    """Relative adapter paths resolve against the working directory, else the config's repository root."""
    if config.source is None:
        return Path.cwd()
    here = Path(config.source).resolve().parent
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").exists() or (folder / ".git").exists():
            return folder
    return here


def load_experiment_dataset(config: ExperimentConfig) -> Any:
    """The config's dataset (a relative folder path is tried against the config file's folder too)."""
    from llmrec.data import load_dataset

    candidate = Path(config.dataset).expanduser()
    if not candidate.exists() and config.source is not None:
        beside = Path(config.source).parent / config.dataset
        if beside.is_dir():
            return load_dataset(beside)
    return load_dataset(config.dataset)


def dataset_fingerprint(dataset: Any) -> str:
    """Hash of a dataset's content (items, interactions, KG triples, item -> entity links): a rebuilt or corrected
    dataset under the same name does not reuse scores made from the old one."""
    return str(dataset.content_fingerprint())


class RetrieverPool:
    """Retrievers fit on the train split, built once per (name, options) and shared by protocol and arms."""

    def __init__(self, train_dataset: Any) -> None:
        self.train_dataset = train_dataset
        self._built: dict[str, Any] = {}

    def __call__(self, name: str, options: dict) -> Any:
        key = json.dumps([name, options], sort_keys=True, default=str)
        if key not in self._built:
            from llmrec.retrieval import build_retriever

            log.info("fitting retriever %s %s on the train split", name, options or "")
            self._built[key] = build_retriever(name, self.train_dataset, **options)
        return self._built[key]


def run_experiment(
    config: ExperimentConfig,
    *,
    users: int | None = None,
    arms: Sequence[str] | None = None,
    progress: bool = True,
    dataset: Any = None,
) -> ExperimentResult:
    """Run every arm (or those named in `arms`) of `config` and return per-user results.

    Args:
        config: the experiment.
        users: evaluate a seeded sample of this many users (overrides ``config.users``).
        arms: only these arms (the baseline is always added, for the comparisons).
        progress: show a tqdm progress bar per arm with the running NDCG@10 and an ETA.
        dataset: an already loaded dataset (default: load ``config.dataset``).

    Raises:
        ConfigError / EmptySplitError: bad config or nothing to evaluate, before any arm runs.
    """
    config = config.with_users(users)
    chosen = list(config.arms)
    if arms:
        unknown = [a for a in arms if a not in {x.name for x in config.arms}]
        if unknown:
            raise ConfigError(
                f"unknown arm(s) {', '.join(unknown)} (arms: {', '.join(a.name for a in config.arms)})"
            )
        wanted = set(arms) | {config.baseline}
        chosen = [a for a in config.arms if a.name in wanted]
    root = _repo_root(config)
    for arm in chosen:
        check_arm(arm, root=root)

    dataset = dataset if dataset is not None else load_experiment_dataset(config)
    split = make_split(dataset, config)
    for arm in chosen:
        check_arm_split(arm, split, root=root)  # the leak guard: before any arm runs
    order = user_order(split, config)
    sample = order[: config.users] if config.users is not None else order
    if config.users is not None and config.users > len(order):
        log.warning("asked for %d users but only %d have a target: using all", config.users, len(order))
    pool = RetrieverPool(split.train_dataset)
    cases = build_cases(split, config, sample, pool)
    case_fp = {**config.case_fingerprint(), "dataset_content": dataset_fingerprint(dataset)}

    results: dict[str, ArmResult] = {}
    for arm in chosen:
        arm_cases = cases[: arm.users] if arm.users is not None else cases
        adapter_dir = resolve_adapter(arm.adapter, base=root) if arm.adapter else None
        resolved = arm.resolved()
        if adapter_dir is not None:
            resolved["adapter"] = str(adapter_dir)
        cache = ArmCache(
            config.cache_path() / f"{arm.name}.jsonl", arm_fingerprint(resolved, case_fp, adapter_dir)
        )
        runnable = dataclasses.replace(arm, adapter=str(adapter_dir)) if adapter_dir is not None else arm
        scorer = build_arm(runnable, seed=config.seed, retriever_factory=pool, dataset=split.train_dataset)
        with cache.locked():
            results[arm.name] = _run_arm(arm, arm_cases, scorer, cache, config, progress)
    return ExperimentResult(config, results, users_sampled=len(sample), users_available=len(order))


def _run_arm(
    arm: ArmConfig,
    cases: Sequence[EvalCase],
    scorer: Any,
    cache: ArmCache,
    config: ExperimentConfig,
    progress: bool,
) -> ArmResult:
    from tqdm.auto import tqdm

    result = ArmResult(arm)
    start = time.perf_counter()
    ndcg_sum = 0.0
    bar = tqdm(cases, desc=f"{config.name}/{arm.name}", unit="user", disable=not progress, dynamic_ncols=True)
    for n, case in enumerate(bar, 1):
        output = cache.get(case)
        if output is not None:
            result.reused += 1
        else:
            skip = arm.is_llm and not case.target_present
            output = ArmOutput(scores=()) if skip else scorer(case)
            if not skip and len(output.scores) != len(case.candidates):
                raise ConfigError(
                    f"arm {arm.name!r} returned {len(output.scores)} scores for {len(case.candidates)} candidates"
                )
            cache.put(case, output)
            result.computed += 1
        user = _user_result(case, output, config)
        result.users.append(user)
        ndcg_sum += ndcg_at(user.rank, 10)
        if progress and (n % 5 == 0 or n == len(cases)):
            bar.set_postfix({"ndcg@10": f"{ndcg_sum / n:.3f}", "cached": result.reused}, refresh=False)
    bar.close()
    result.seconds = time.perf_counter() - start
    log.info(
        "arm %s: %d users (%d computed, %d from cache) in %.1fs",
        arm.name,
        len(result.users),
        result.computed,
        result.reused,
        result.seconds,
    )
    return result


def _user_result(case: EvalCase, output: ArmOutput, config: ExperimentConfig) -> UserResult:
    scored = len(output.scores) == len(case.candidates)
    rank = target_rank(output.scores, case.target_index) if scored else None
    return UserResult(
        user_id=case.user_id,
        rank=rank,
        n_candidates=len(case.candidates),
        target_index=case.target_index,
        scores=output.scores,
        slices=slice_membership(case, config),
        prompt_tokens=output.prompt_tokens,
        forward_passes=output.forward_passes,
        parse_failures=output.parse_failures,
        latency_s=output.latency_s,
        scored=scored,
    )
