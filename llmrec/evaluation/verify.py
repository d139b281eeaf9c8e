"""A report's per-user results (``users.jsonl.gz``) and their replay: `llmrec eval CONFIG --verify`.

Every report folder gets ``users.jsonl.gz`` beside ``metrics.json``: a header (experiment, commit, dataset
fingerprint) and one line per (arm, user) with what every metric of the report is computed from (the target's
rank, the candidate count, the slices, the costs) plus a digest of the candidates. For a seeded sample of each
arm's users (`SAMPLE_USERS`) the line also holds the arm's scores, so the report can be replayed: `verify` scores
those users again with the code of this checkout, without any cache or score memo, and compares.

- Retriever, random and candidate-order arms must give the committed scores up to float64 rounding
  (`CLASSICAL_EPSILONS`: a BLAS summing in another order moves EASE by ~1e-16); those holding the dense encoder's
  float32 scores (`FLOAT32_RETRIEVERS`, and a fused arm's first-stage row) up to float32 rounding.
- LLM arms (a few users each: they are slow) must give the same rank of the target, with scores within a
  tolerance derived from the model's dtype and the scores' scale (`score_tolerance`).
- An LLM arm whose model is a multi-GB asset fetched by name only (Qwen2.5-Coder) and not in the cache is skipped,
  saying how to fetch it.
- An LLM arm whose adapter was retired from the package (`llmrec.models.adapters.retired_adapters`: its weights
  no longer ship) is skipped, with the reason and its recipe, unless it was retrained where its name finds it; the
  other arms are still replayed. Any other adapter that cannot be found fails its arm.

The replay computes with the thread counts the report was made with (torch and BLAS): a trained retriever such as
SASRec, refit on a fresh machine, ends at other weights with another thread count (seen: scores moved by 0.7 with 2
threads instead of 1). On another CPU model its float32 training sums in another order and ends elsewhere too (seen:
an Intel Xeon with AMX against the AMD EPYC that made the ml-100k studies; also the dense encoder's float32 scores
move by ~4e-7, so `dense` arms get a float32 tolerance). So a row whose scores or candidates come from a first stage
trained in the run (`trains_first_stage`: SASRec, the fusions holding it, an LLM arm fused by its card) is compared
strictly only on the CPU model the report records (``compute.cpu``); elsewhere, or when the report predates that
record, such rows are skipped naming both CPUs (not replayed: the refit cannot give the same weights, and refitting
SASRec on ML-1M takes 17 minutes); likewise where the report was made with another version of such a first stage
(``provenance.versions`` in ``metrics.json``: a declared change, such as SASRec's faster fit), naming both versions. A refactor that passes the replay keeps its reports; one that fails it changed behaviour: bump the version of the
component that moved (`llmrec.evaluation.cache.behaviour_versions`) and re-run the studies it moved.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import hashlib
import json
import logging
import math
import os
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmrec.errors import ConfigError
from llmrec.evaluation.config import FUSION_SUFFIXES, ArmConfig, ExperimentConfig

log = logging.getLogger(__name__)

USERS_FILE = "users.jsonl.gz"
FORMAT = 1
#: Users per arm whose scores are kept for the replay (all of an arm's users when it has fewer).
SAMPLE_USERS = 20
#: Float64 epsilons of the scores' scale a score without an LLM may move by (BLAS summation order).
CLASSICAL_EPSILONS = 1024
#: Epsilons of the scores' scale an LLM score may move by on another CPU or batching, by weight dtype.
LLM_EPSILONS = {"float32": 2**-23 * 1024, "bfloat16": 2**-7 * 8, "float16": 2**-10 * 64}


class VerifyError(ConfigError):
    """A study cannot be replayed: no committed per-user results, or another dataset."""


def candidates_digest(candidates: Sequence[str]) -> str:
    return hashlib.sha256("\x1f".join(candidates).encode()).hexdigest()[:16]


def sample_users(experiment: str, row: str, users: Sequence[str], n: int = SAMPLE_USERS) -> list[str]:
    """The seeded sample of `users` whose scores are kept (in the row's user order); a fused arm's ``.llm-only``
    and ``.no-llm`` rows keep the arm's own sample, since one replay checks all three."""
    if len(users) <= n:
        return list(users)
    arm = next((row[: -len(s)] for s in FUSION_SUFFIXES if row.endswith(s)), row)
    chosen = set(random.Random(f"llmrec-verify:{experiment}:{arm}").sample(list(users), n))
    return [u for u in users if u in chosen]


def write_user_results(result: Any, summary: Mapping[str, Any], folder: str | Path) -> Path:
    """Write ``users.jsonl.gz`` for `result` (an `ExperimentResult`) into `folder`, atomically."""
    folder = Path(folder)
    provenance = summary.get("provenance") or {}
    header = {
        "format": FORMAT,
        "experiment": result.config.name,
        "commit": provenance.get("commit"),
        "dataset_fingerprint": result.dataset_fingerprint,
        "sample_users": SAMPLE_USERS,
        "compute": provenance.get("compute"),
    }
    lines = [json.dumps(header)]
    for name, arm in result.arms.items():
        scored = [u.user_id for u in arm.users if u.scored]
        kept = set(sample_users(result.config.name, name, scored))
        for user in arm.users:
            case = result.cases[user.user_id]
            record: dict[str, Any] = {
                "arm": name,
                "user": user.user_id,
                "rank": user.rank,
                "n_candidates": user.n_candidates,
                "target_index": user.target_index,
                "scored": user.scored,
                "slices": user.slices,
                "prompt_tokens": user.prompt_tokens,
                "forward_passes": user.forward_passes,
                "parse_failures": user.parse_failures,
                "latency_s": round(user.latency_s, 6),
                "candidates": candidates_digest(case.candidates),
            }
            if user.user_id in kept:
                record["scores"] = [None if math.isnan(s) else s for s in user.scores]
            lines.append(json.dumps(record))
    path = folder / USERS_FILE
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with gzip.open(tmp, "wt", encoding="utf-8", compresslevel=9) as handle:
        handle.write("\n".join(lines) + "\n")
    os.replace(tmp, path)
    return path


def read_user_results(folder: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The header and records of a report folder's ``users.jsonl.gz``.

    Raises:
        VerifyError: no such file, or a format this code does not read.
    """
    path = Path(folder) / USERS_FILE
    if not path.is_file():
        raise VerifyError(f"no per-user results at {path}")
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    header, records = rows[0], rows[1:]
    if header.get("format") != FORMAT:
        raise VerifyError(f"{path} has format {header.get('format')!r}; this llmrec reads format {FORMAT}")
    return header, records


def score_tolerance(arm: ArmConfig, scores: Sequence[float]) -> float:
    """How far a replayed score of `arm` may be from the committed one: `CLASSICAL_EPSILONS` float64 epsilons of
    the scores' scale (at least 1) for arms without an LLM, float32's for the dense encoder's cosine scores (its
    float32 kernels differ between CPU models), else `LLM_EPSILONS` of the arm's dtype."""
    if arm.kind in FLOAT32_RETRIEVERS:
        return float32_tolerance(scores)
    if not arm.is_llm:
        return classical_tolerance(scores)
    scale = _scale(scores)
    dtype = "float32" if arm.dtype in (None, "auto") else str(arm.dtype)
    return LLM_EPSILONS.get(dtype, LLM_EPSILONS["bfloat16"]) * scale


def _scale(scores: Sequence[float | None]) -> float:
    return max([abs(s) for s in scores if s is not None and math.isfinite(s)] + [1.0])


#: Retriever arms whose scores hold the dense encoder's float32 cosine scores (other kernels or threads move them
#: by ~1e-7 relative): replayed to float32's tolerance.
FLOAT32_RETRIEVERS = frozenset({"dense", "zfusion"})


def float32_tolerance(scores: Sequence[float | None]) -> float:
    """`LLM_EPSILONS`' float32 epsilons of the scores' scale (at least 1)."""
    return LLM_EPSILONS["float32"] * _scale(scores)


def classical_tolerance(scores: Sequence[float | None]) -> float:
    """`CLASSICAL_EPSILONS` float64 epsilons of the scores' scale (at least 1): how far scores computed without an
    LLM may move when a BLAS sums in another order."""
    return CLASSICAL_EPSILONS * 2**-52 * _scale(scores)


@dataclass
class ArmCheck:
    """The replay of one report row."""

    row: str
    users: int = 0
    max_diff: float = 0.0
    tolerance: float = 0.0
    problems: list[str] = field(default_factory=list)
    #: Why the row was not replayed (None: it was): its adapter is not in this install.
    skipped: str | None = None

    @property
    def ok(self) -> bool:
        """Replayed as committed, or skipped (a skipped row says why in `iter_problems`)."""
        return self.skipped is not None or (self.users > 0 and not self.problems)

    @property
    def status(self) -> str:
        """``ok``, ``skipped`` or ``FAILED``."""
        if self.skipped is not None:
            return "skipped"
        return "ok" if self.ok else "FAILED"


def _close(replayed: Sequence[float], committed: Sequence[Any], tol: float) -> tuple[bool, float]:
    if len(replayed) != len(committed):
        return False, math.inf
    worst = 0.0
    for a, b in zip(replayed, committed, strict=True):
        if b is None or not math.isfinite(a):
            if not (b is None and not math.isfinite(a)):
                return False, math.inf
            continue
        worst = max(worst, abs(a - b))
    return worst <= tol, worst


def verify_study(
    config: ExperimentConfig,
    folder: str | Path | None = None,
    *,
    users: int = SAMPLE_USERS,
    llm_users: int = 3,
    dataset: Any = None,
) -> list[ArmCheck]:
    """Replay the sampled users of every arm of `config`'s committed report and compare (see the module doc).

    Args:
        config: the study's config.
        folder: its report folder (default: ``config.results_path()``).
        users: users replayed per arm without an LLM; llm_users: per LLM arm.
        dataset: the loaded dataset (default: load ``config.dataset``).

    Raises:
        VerifyError: no per-user results, or the dataset's content differs from the one the report was made on.
    """
    from llmrec.evaluation.runner import dataset_fingerprint, load_experiment_dataset

    folder = Path(folder) if folder is not None else config.results_path()
    how = f"re-run it to make them: llmrec eval {config.source or config.name}"
    try:
        header, records = read_user_results(folder)
    except VerifyError as exc:
        raise VerifyError(f"study {config.name!r}: {exc} (a report made before reports kept them); {how}") from None
    dataset = dataset if dataset is not None else load_experiment_dataset(config)
    found = dataset_fingerprint(dataset)
    if header.get("dataset_fingerprint") != found:
        raise VerifyError(
            f"study {config.name!r} was made on dataset content {header.get('dataset_fingerprint')}, but "
            f"{config.dataset!r} is {found} here (another build or version of the data); {how}"
        )
    untrusted = _moved_first_stage(_made_versions(folder)) or _other_cpu(header.get("compute"))
    with same_compute(header.get("compute")):
        return _replay(config, dataset, records, users=users, llm_users=llm_users, untrusted_first_stage=untrusted)


def _made_versions(folder: Path) -> Mapping[str, Any]:
    """The component versions (`llmrec.evaluation.cache.behaviour_versions`) the report in `folder` was made with."""
    try:
        summary = json.loads((folder / "metrics.json").read_text())
    except (OSError, ValueError):
        return {}
    return (summary.get("provenance") or {}).get("versions") or {}


def _moved_first_stage(made: Mapping[str, Any]) -> str | None:
    """Why a first stage trained in the run cannot give the report's scores here: this checkout trains another
    version of it (a declared change of behaviour, e.g. a faster SASRec fit), or None when the versions match."""
    from llmrec.retrieval import RETRIEVERS

    recorded = made.get("retrievers") or {}
    moved = [
        f"{name} version {recorded[name]} there, {RETRIEVERS[name].version} here"
        for name in sorted(TRAINED_FIRST_STAGES)
        if name in recorded and name in RETRIEVERS and recorded[name] != RETRIEVERS[name].version
    ]
    if not moved:
        return None
    return (
        f"the study was made with another version of a first stage trained in the run ({'; '.join(moved)}): "
        "its scores are the old version's; re-run the study to measure this one"
    )


@contextlib.contextmanager
def same_compute(made_with: Mapping[str, Any] | None) -> Iterator[None]:
    """Compute with the torch and BLAS thread counts a report was made with (restored after); log when this CPU's
    kernels differ from the report's."""
    import torch
    from threadpoolctl import threadpool_limits

    from llmrec.evaluation.provenance import compute_setting

    if not made_with:
        yield
        return
    here = compute_setting()
    if made_with.get("cpu_capability") != here["cpu_capability"]:
        log.warning(
            "the report was computed with %s CPU kernels, this machine uses %s: a trained retriever (SASRec) "
            "refit here may not replay",
            made_with.get("cpu_capability"),
            here["cpu_capability"],
        )
    before = torch.get_num_threads()
    torch.set_num_threads(int(made_with.get("torch_threads") or before))
    try:
        blas = int(made_with.get("blas_threads") or 0)
        with threadpool_limits(limits=blas if blas > 0 else None, user_api="blas"):
            yield
    finally:
        torch.set_num_threads(before)


def _unfetched_heavy_model(arm: Any) -> str | None:
    """Why an arm is not replayed here: its model is a multi-GB asset that is fetched by name only (not by `llmrec
    fetch all`, nor in CI) and is not in this cache; else None."""
    from llmrec.assets import ASSETS, is_fetched

    for name in _arm_models(arm):
        spec = ASSETS.get(name)
        if spec is not None and not spec.in_all and not is_fetched(name):
            return (
                f"its model {name} is not fetched here (a multi-GB asset: `llmrec fetch {name}`, then --verify "
                "replays it)"
            )
    return None


def _arm_models(arm: Any) -> list[str]:
    """The model names an arm loads: its LLM's, and the decoder of an `llm_dense` retriever it is or fuses."""
    from llmrec.retrieval.decoder import DEFAULT_MODEL

    model = getattr(arm, "model", None)
    names = [model if isinstance(model, str) else getattr(model, "name_or_path", None)]
    options = getattr(arm, "retriever_options", None) or {}
    if getattr(arm, "kind", None) == "llm_dense":
        names.append(options.get("model", DEFAULT_MODEL))
    if "llm_dense" in (options.get("members") or ()):
        names.append((options.get("member_opts") or {}).get("llm_dense", {}).get("model", DEFAULT_MODEL))
    return [str(n) for n in names if isinstance(n, str | os.PathLike)]


#: First stages trained by gradient descent in the run (a refit on another CPU model ends at other weights), and the
#: fusions that hold them by default.
TRAINED_FIRST_STAGES = frozenset({"sasrec", "zfusion", "fusion"})


def trains_first_stage(config: ExperimentConfig, arm: ArmConfig) -> bool:
    """Whether `arm`'s scores or candidates (under `config`'s protocol) come from a first stage trained in the run:
    the retrieved protocol's retriever, the arm's own retriever, its fusion members or candidate order, or, for an
    LLM or reranker arm fused by its adapter card, the card's members (first stages fit in the run)."""
    refs = {arm.kind}
    protocol = config.protocol
    if protocol.kind == "retrieved":
        refs.add(protocol.retriever)
        refs.update(protocol.retriever_options.get("members", ()) or ())
    refs.update((arm.retriever_options or {}).get("members", ()) or ())
    fusion = arm.fusion
    if isinstance(fusion, Mapping):
        refs.update(fusion.get("members", ()))
    elif (arm.is_llm or arm.kind == "reranker") and fusion is not False:
        return True  # the card's fusion: its members are first stages fit on the run's train split
    if arm.kind == "reranker" and arm.reranker is not None:
        refs.add(str(arm.reranker.get("retriever", "zfusion")))
        refs.add(str(arm.reranker.get("candidate_order") or ""))
    refs.update(v for v in (arm.options or {}).values() if isinstance(v, str))  # e.g. a candidate order's retriever
    return bool(refs & TRAINED_FIRST_STAGES)


def _other_cpu(made_with: Mapping[str, Any] | None) -> str | None:
    """Why a trained first stage refit here may not match the report's (another or an unrecorded CPU model), or
    None on the CPU model the report records."""
    from llmrec.models.machine import cpu_description

    here = cpu_description()
    made_on = (made_with or {}).get("cpu")
    if made_on == here:
        return None
    where = f"the study was made on {made_on}" if made_on else "the study does not record its CPU model"
    return (
        f"{where}, this is {here}: a first stage trained in the run (SASRec) ends at other weights on another CPU "
        "model, so these scores are not comparable here (replay on the study's CPU model, or re-run the study)"
    )


def _replay(
    config: ExperimentConfig,
    dataset: Any,
    records: Sequence[Mapping[str, Any]],
    *,
    users: int,
    llm_users: int,
    untrusted_first_stage: str | None = None,
) -> list[ArmCheck]:
    """Replay `records`' sampled users arm by arm; where `untrusted_first_stage` gives a reason (another CPU model,
    another version of SASRec), the rows that depend on a first stage trained in the run are skipped with that reason
    without being replayed (the refit would end at other weights)."""
    from llmrec.evaluation.arms import build_arm
    from llmrec.evaluation.protocols import build_cases, make_split
    from llmrec.evaluation.runner import RetrieverPool, repo_root
    from llmrec.metrics import target_rank
    from llmrec.models.adapters import AdapterError, resolve_adapter, retired_adapter_message

    by_row: dict[str, dict[str, Mapping[str, Any]]] = {}
    for record in records:
        by_row.setdefault(record["arm"], {})[record["user"]] = record
    split = make_split(dataset, config)
    pool = RetrieverPool(split.train_dataset, progress=False)
    checks: list[ArmCheck] = []
    for arm in config.arms:
        committed = by_row.get(arm.name)
        if committed is None:
            checks.append(ArmCheck(arm.name, problems=["not in the committed per-user results"]))
            continue
        rows = [ArmCheck(arm.name)]
        derived = {suffix: by_row.get(f"{arm.name}{suffix}") for suffix in FUSION_SUFFIXES}
        for suffix, row in derived.items():
            if row is not None:
                rows.append(ArmCheck(f"{arm.name}{suffix}"))
        heavy = _unfetched_heavy_model(arm)
        if untrusted_first_stage is not None and trains_first_stage(config, arm):
            heavy = f"not replayed: {untrusted_first_stage}"  # refitting SASRec (17 min on ML-1M) would show nothing
        if heavy is not None:
            for check in rows:
                check.skipped = heavy
            checks.extend(rows)
            continue
        runnable = arm
        if arm.adapter:  # resolved as the run resolved it (a relative folder against the config's repository)
            try:
                folder = str(resolve_adapter(arm.adapter, base=repo_root(config)))
                # an llm arm runs the folder; a reranker arm resolves its adapter by name, as a user's Reranker does
                runnable = dataclasses.replace(arm, adapter=folder) if arm.kind == "llm" else arm
            except AdapterError as exc:
                retired = retired_adapter_message(str(arm.adapter))
                for check in rows:
                    if retired is not None:
                        check.skipped = f"its adapter is not in this install: {retired}"
                    else:
                        check.problems.append(str(exc))
                checks.extend(rows)
                continue
        sampled = [u for u, r in committed.items() if "scores" in r and r["scored"]]
        chosen = sampled[: llm_users if arm.is_llm else users]
        cases = build_cases(split, config, chosen, pool)
        scorer = build_arm(runnable, seed=config.seed, retriever_factory=pool, dataset=split.train_dataset)
        for case in cases:
            output = scorer(case)
            replays = {arm.name: (output.scores, score_tolerance(arm, output.scores))}
            if output.first_stage_scores is not None:  # retriever scores only, dense's float32 among them
                first_stage = output.first_stage_scores
                replays[f"{arm.name}{FUSION_SUFFIXES[1]}"] = (first_stage, float32_tolerance(first_stage))
            if output.llm_scores is not None:
                replays[f"{arm.name}{FUSION_SUFFIXES[0]}"] = (output.llm_scores, score_tolerance(arm, output.llm_scores))
            for check in rows:
                kept = by_row.get(check.row, {}).get(case.user_id)
                if check.row not in replays or kept is None or "scores" not in kept:
                    continue
                scores, tol = replays[check.row]
                check.users += 1
                check.tolerance = max(check.tolerance, tol)
                if kept["candidates"] != candidates_digest(case.candidates):
                    check.problems.append(f"user {case.user_id}: other candidates than the committed ones")
                    continue
                close, diff = _close(scores, kept["scores"], tol)
                check.max_diff = max(check.max_diff, diff)
                rank = target_rank(scores, case.target_index) if case.target_index is not None else None
                if not close:
                    check.problems.append(f"user {case.user_id}: scores differ by {diff:.3g} (tolerance {tol:.3g})")
                elif rank != kept["rank"]:
                    check.problems.append(f"user {case.user_id}: target rank {rank}, committed {kept['rank']}")
        checks.extend(rows)
    return checks


def iter_problems(checks: Sequence[ArmCheck]) -> Iterator[str]:
    """One line per problem (at most three per row) and per skipped row (its reason), each naming its row."""
    for check in checks:
        if check.skipped is not None:
            yield f"{check.row}: skipped: {check.skipped}"
        for problem in check.problems[:3]:
            yield f"{check.row}: {problem}"
