"""The runner: build cases once, score them with every arm (through the cache), collect per-user results."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmrec.errors import ConfigError
from llmrec.evaluation.arms import build_arm, check_arm, check_arm_split
from llmrec.evaluation.cache import ArmCache, arm_fingerprint
from llmrec.evaluation.config import FUSION_SUFFIXES, ArmConfig, ExperimentConfig
from llmrec.evaluation.protocols import (
    ArmOutput,
    EvalCase,
    build_cases,
    make_split,
    slice_membership,
    user_order,
)
from llmrec.metrics import ndcg_at, target_rank
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
    llm_scores: tuple[float, ...] | None = None  # a fused LLM arm: the LLM's own scores (see ArmOutput)
    first_stage_scores: tuple[float, ...] | None = None  # ... and the members' fusion without the LLM


@dataclass
class ArmResult:
    """Everything one arm produced."""

    config: ArmConfig
    users: list[UserResult] = field(default_factory=list)
    computed: int = 0
    reused: int = 0
    seconds: float = 0.0
    #: Retriever arms: per user, the target's 1-based rank among every item not in the history, when it is
    #: within the top `FULL_CATALOGUE_DEPTH` (else None).
    full_catalogue_ranks: dict[str, int | None] | None = None


#: How deep retriever arms retrieve from the whole catalogue (HR@20/50/100, NDCG@10 over all items).
FULL_CATALOGUE_DEPTH = 100


@dataclass
class ExperimentResult:
    """Per-arm, per-user results of one experiment run."""

    config: ExperimentConfig
    arms: dict[str, ArmResult]
    users_sampled: int
    users_available: int
    #: The evaluated cases by user id, and the retrievers fit on the train split (for fitting a score fusion).
    cases: dict[str, EvalCase] = field(default_factory=dict)
    retrievers: Any = None
    #: The evaluated dataset's content fingerprint (`dataset_fingerprint`), recorded in the report.
    dataset_fingerprint: str | None = None


def repo_root(config: ExperimentConfig) -> Path:
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
    """Retrievers fit on the train split, built once per (name, options) and shared by protocol and arms.

    With ``progress=False`` the retrievers that draw progress bars while fitting (SASRec's epochs, dense
    embeddings), alone or as fusion members, draw none.
    """

    def __init__(self, train_dataset: Any, progress: bool = True) -> None:
        self.train_dataset = train_dataset
        self.progress = progress
        self._built: dict[str, Any] = {}

    def __call__(self, name: str, options: dict) -> Any:
        key = json.dumps([name, options], sort_keys=True, default=str)
        if key not in self._built:
            from llmrec.retrieval import build_retriever

            log.info("fitting retriever %s %s on the train split", name, options or "")
            self._built[key] = build_retriever(name, self.train_dataset, progress=self.progress, **options)
        return self._built[key]


def run_experiment(
    config: ExperimentConfig,
    *,
    users: int | None = None,
    arms: Sequence[str] | None = None,
    progress: bool = True,
    dataset: Any = None,
    score_memo: bool = True,
) -> ExperimentResult:
    """Run every arm (or those named in `arms`) of `config` and return per-user results.

    Args:
        config: the experiment.
        users: evaluate a seeded sample of this many users (overrides ``config.users``).
        arms: only these arms (the baseline is always added, for the comparisons).
        progress: show a tqdm progress bar per arm with the running NDCG@10 and an ETA.
        dataset: an already loaded dataset (default: load ``config.dataset``).
        score_memo: LLM arms answer prompts scored before (by any arm or config, same model, adapter and scoring
            code) from the score memo in the cache folder (``score-memo/``; `llmrec.evaluation.score_memo`).

    Under ``accelerate launch --num_processes N`` the users of each arm are sharded over the processes (see
    `ProcessGroup`); only the main process returns results (the others return an empty ``arms``).

    Raises:
        ConfigError / EmptySplitError: bad config or nothing to evaluate, before any arm runs.
    """
    if config.protocol.kind == "knowledge_probe":
        raise ConfigError(f"{config.name!r} is a knowledge probe: run it with llmrec.evaluation.probe.run_probe")
    config = config.with_users(users)
    chosen = config.arms_named(arms, keep=[config.baseline] if config.baseline else [])
    root = repo_root(config)
    for arm in chosen:
        check_arm(arm, root=root)

    dataset = dataset if dataset is not None else load_experiment_dataset(config)
    split = make_split(dataset, config)
    order = user_order(split, config)
    sample = order[: config.users] if config.users is not None else order
    for arm in chosen:  # the leak guard, on the users each arm is evaluated on: before any arm runs
        check_arm_split(arm, split, root=root, users=sample[: arm.users] if arm.users is not None else sample)
    if config.users is not None and config.users > len(order):
        log.warning("asked for %d users but only %d have a target: using all", config.users, len(order))
    pool = RetrieverPool(split.train_dataset, progress=progress)
    procs = ProcessGroup.current()
    with procs.main_first():  # the main process fits (and caches) slow retrievers such as SASRec first
        cases = build_cases(split, config, sample, pool)
    case_fp = {**config.case_fingerprint(), "dataset_content": dataset_fingerprint(dataset)}

    results: dict[str, ArmResult] = {}
    for arm in chosen:
        arm_cases = cases[: arm.users] if arm.users is not None else cases
        adapter_dir = resolve_adapter(arm.adapter, base=root) if arm.adapter else None
        path = config.cache_path() / f"{arm.name}.jsonl"
        fusion = arm_fusion(arm, adapter_dir) if arm.is_llm else None
        fingerprint = arm_cache_fingerprint(arm, case_fp, adapter_dir, fusion)
        # an llm arm's adapter folder as resolved here; a reranker arm resolves its adapter as a user's Reranker does
        runnable = dataclasses.replace(arm, adapter=str(adapter_dir)) if adapter_dir and arm.kind == "llm" else arm
        scorer = build_arm(
            runnable,
            seed=config.seed,
            retriever_factory=pool,
            dataset=split.train_dataset,
            score_memo=config.cache_path() / "score-memo" if score_memo else None,
            memo_writer="main" if procs.size == 1 else f"rank{procs.rank}",
        )
        if procs.size > 1:
            _run_shard(arm, arm_cases, scorer, path, fingerprint, config, progress, procs)
            if not procs.is_main:
                continue  # the main process reads the merged cache and reports
        cache = ArmCache(path, fingerprint)
        with cache.locked():
            results[arm.name] = _run_arm(arm, arm_cases, scorer, cache, config, progress and procs.is_main)
        memo = getattr(scorer, "memo", None)
        if memo is not None and memo.hits + memo.misses:
            log.info("arm %s: %d candidate sets from the score memo, %d scored by the model", arm.name, memo.hits, memo.misses)
        retriever = getattr(scorer, "retriever", None)
        if retriever is not None:
            results[arm.name].full_catalogue_ranks = full_catalogue_ranks(retriever, arm_cases)
        if fusion is not None and arm.kind == "llm":  # a reranker arm is the pipeline's one row
            results.update(fusion_rows(arm, results.pop(arm.name), fusion, arm_cases, config))
    return ExperimentResult(
        config,
        results,
        users_sampled=len(sample),
        users_available=len(order),
        cases={c.user_id: c for c in cases},
        retrievers=pool,
        dataset_fingerprint=case_fp["dataset_content"],
    )


@dataclass(frozen=True)
class ProcessGroup:
    """This process's place in a data-parallel run (``accelerate launch --num_processes N -m llmrec eval``).

    A single process is a group of one. Under accelerate (GPUs, or CPU processes on the gloo backend) each process
    scores every N-th user of each arm into its own cache shard; the main process merges the shards and writes the
    one report.
    """

    rank: int = 0
    size: int = 1
    state: Any = None

    @classmethod
    def current(cls) -> ProcessGroup:
        import os

        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return cls()
        import torch
        from accelerate import PartialState

        # Without a GPU, accelerate only sees the processes when told to run on the CPU (the gloo backend).
        state = PartialState(cpu=not torch.cuda.is_available())
        return cls(state.process_index, state.num_processes, state)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wait(self) -> None:
        if self.state is not None:
            self.state.wait_for_everyone()

    def main_first(self) -> Any:
        import contextlib

        return self.state.main_process_first() if self.state is not None else contextlib.nullcontext()


def _run_shard(
    arm: ArmConfig,
    cases: Sequence[EvalCase],
    scorer: Any,
    path: Path,
    fingerprint: str,
    config: ExperimentConfig,
    progress: bool,
    procs: ProcessGroup,
) -> None:
    """Score this process's share of `cases` (every `size`-th user) into its shard, then merge on the main process.

    Users already in the arm's cache or in any shard (an interrupted run, another process count) are not redone.
    """
    from llmrec.evaluation.cache import merge_shards, shard_path

    own = shard_path(path, procs.rank)
    others = [path] + [shard_path(path, r) for r in range(procs.size) if r != procs.rank]
    shard = ArmCache(own, fingerprint, also_read=[p for p in others if p.exists()])
    mine = list(cases[procs.rank :: procs.size])
    with shard.locked():
        _run_arm(arm, mine, scorer, shard, config, progress and procs.is_main)
    procs.wait()
    if procs.is_main:
        merged = merge_shards(path, fingerprint)
        log.info("arm %s: merged %d process shards into %s (%d users)", arm.name, procs.size, path, merged)
    procs.wait()


def arm_cache_fingerprint(
    arm: ArmConfig, case_fp: Mapping[str, Any], adapter_dir: Path | None, fusion: Any = None
) -> str:
    """The fingerprint of `arm`'s cache: its resolved config, the fusion its `Reranker` applies (`fusion`, the
    arm's own or its adapter card's: new weights written into the card re-rank the arm), the cases, the component
    versions, and the adapter by name and content (not by where it lies). Another fusion of the same LLM is
    re-ranked quickly: the score memo answers its prompts."""
    resolved = arm.resolved()
    if arm.is_llm:
        applied = fusion.to_dict() if fusion is not None else None
        resolved["fusion_applied"] = {k: v for k, v in applied.items() if k != "fitted"} if applied else None
    return arm_fingerprint(resolved, case_fp, adapter_dir)


def fit_arm_fusion(
    result: ExperimentResult, arm_name: str, members: Sequence[str], *, keep_llm: bool = False
) -> Any:
    """Fit the score-fusion weights of LLM arm `arm_name` with first-stage `members` on the run's users
    (`llmrec.ranking.fusion.fit_score_fusion`; `keep_llm` as there).

    Only validation targets may be used (``split.target: valid``): the weights then carry to the test split.

    Raises:
        ConfigError: the run's targets are test targets, or the arm is not an LLM arm of the run.
    """
    from llmrec.ranking.fusion import fit_score_fusion

    config = result.config
    if config.split.target != "valid":
        raise ConfigError(
            f"score-fusion weights are fit on validation targets only; {config.name!r} evaluates "
            f"{config.split.target!r} targets (set split.target: valid)"
        )
    raw = result.arms.get(f"{arm_name}{FUSION_SUFFIXES[0]}") or result.arms.get(arm_name)
    if raw is None or not raw.config.is_llm:
        raise ConfigError(f"{arm_name!r} is not an LLM arm of this run (arms: {', '.join(result.arms)})")
    users = [u for u in raw.users if u.scored and u.target_index is not None]
    cases = [result.cases[u.user_id] for u in users]
    retrievers = {m: result.retrievers(m, {}) for m in members}
    member_scores = {
        m: [r.score(list(c.history), list(c.candidates)) for c in cases] for m, r in retrievers.items()
    }
    return fit_score_fusion(
        [list(u.scores) for u in users],
        member_scores,
        [int(u.target_index) for u in users if u.target_index is not None],
        fitted={
            "experiment": config.name,
            "dataset": config.dataset,
            "split": dataclasses.asdict(config.split),
            "protocol": config.protocol.as_dict(),
            "seed": config.seed,
        },
        keep_llm=keep_llm,
    )


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


def arm_fusion(arm: ArmConfig, adapter_dir: Path | None) -> Any:
    """The `ScoreFusion` an LLM arm's `Reranker` applies (`llmrec.ranking.resolve_fusion`: the arm's own
    ``fusion`` mapping, else its adapter card's, else None), read without loading the model."""
    from llmrec.evaluation.llm import reranker_config
    from llmrec.models.adapters import card_of
    from llmrec.ranking.settings import resolve_fusion

    card = card_of(adapter_dir) if adapter_dir is not None else None
    if arm.fusion is None and card is not None:
        note = card.fusion_note()
        if note is not None:
            log.warning(
                "arm %r, adapter %s: %s; here ARM is %s (or set fusion: false on the arm to silence this)",
                arm.name, adapter_dir, note, arm.name,
            )  # fmt: skip
    config = reranker_config(arm)
    return resolve_fusion(config.fusion, card, config.llm_depth, adapter=str(adapter_dir) if adapter_dir else None)


def fusion_rows(
    arm: ArmConfig, fused: ArmResult, fusion: Any, cases: Sequence[EvalCase], config: ExperimentConfig
) -> dict[str, ArmResult]:
    """A fused LLM arm's report rows, all read from its `Reranker`'s ranked lists: ``<name>`` (the fused score),
    ``<name>.llm-only`` (the LLM's own score; not when the LLM scored only an ``llm_depth``) and ``<name>.no-llm``
    (the first-stage members' fusion without the LLM)."""
    only_suffix, without_suffix = FUSION_SUFFIXES
    alone = ArmResult(dataclasses.replace(arm, name=f"{arm.name}{without_suffix}", fusion=fusion.without_llm().to_dict()))
    llm = ArmResult(dataclasses.replace(arm, name=f"{arm.name}{only_suffix}", fusion=False))
    llm.computed, llm.reused, llm.seconds = fused.computed, fused.reused, fused.seconds
    for case, user in zip(cases, fused.users, strict=True):
        if not user.scored:
            alone.users.append(user)
            llm.users.append(user)
            continue
        if user.first_stage_scores is None or user.llm_scores is None:
            raise ConfigError(f"arm {arm.name!r}, user {case.user_id}: the reranker returned no first-stage scores")
        alone.users.append(_user_result(case, ArmOutput(user.first_stage_scores), config))
        llm_output = ArmOutput(
            user.llm_scores,
            prompt_tokens=user.prompt_tokens,
            forward_passes=user.forward_passes,
            parse_failures=user.parse_failures,
            latency_s=user.latency_s,
        )
        llm.users.append(_user_result(case, llm_output, config))
    fused.config = dataclasses.replace(arm, fusion=fusion.to_dict())
    log.info(
        "arm %s: the LLM score fused with %s (weights %s, LLM weight %.2f%s)",
        arm.name,
        "+".join(fusion.members),
        list(fusion.weights),
        fusion.llm_weight,
        "" if fusion.llm_depth is None else f", LLM on the members' top {fusion.llm_depth}",
    )
    rows = {arm.name: fused, alone.config.name: alone}
    if fusion.llm_depth is None:
        rows[llm.config.name] = llm
    return rows


def full_catalogue_ranks(retriever: Any, cases: Sequence[EvalCase]) -> dict[str, int | None]:
    """Per user, the target's rank when `retriever` ranks the whole catalogue minus the history (top 100 only)."""
    from llmrec.retrieval import retrieve_many

    depth = min(FULL_CATALOGUE_DEPTH, len(retriever.item_ids))
    lists = retrieve_many(retriever, [list(case.history) for case in cases], depth)
    out: dict[str, int | None] = {}
    for case, candidates in zip(cases, lists, strict=True):
        found = [c.item_id for c in candidates]
        out[case.user_id] = found.index(case.target) + 1 if case.target in found else None
    return out


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
        llm_scores=output.llm_scores,
        first_stage_scores=output.first_stage_scores,
    )
