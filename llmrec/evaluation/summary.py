"""The summary of an experiment: what ``metrics.json`` holds, typed, computed from the runner's per-user results.

The summary of an arm holds its ranking metrics (means over its users), bootstrap confidence intervals, slice
metrics, cost metrics and a paired comparison with the baseline arm on the users both evaluated. It ends with a
recommendation computed from those numbers: the best arm on the headline metric, the arms that are statistically
tied with it, and the cheapest of those.

The summary is plain JSON-ready data (`Summary` is a TypedDict, so it is a dict at run time); the renderers
(`llmrec.evaluation.markdown`, `llmrec.evaluation.plots`) read only it, never the runner's results.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

from llmrec.evaluation.cache import behaviour_versions
from llmrec.evaluation.config import ExperimentConfig
from llmrec.evaluation.provenance import provenance
from llmrec.evaluation.runner import ArmResult, ExperimentResult, UserResult
from llmrec.evaluation.significance import bootstrap_interval, bootstrap_pooled_auc, paired_bootstrap
from llmrec.metrics import ndcg_at, pairwise_auc, user_metrics

RANKING_METRICS = ("ndcg@1", "ndcg@5", "ndcg@10", "hr@5", "hr@10", "recall@5", "recall@10", "mrr", "auc")
COST_METRICS = ("prompt_tokens", "forward_passes", "latency_s", "parse_failure_rate")
#: Metrics compared against the baseline within a slice (every ranking metric for ``all``).
SLICE_COMPARED_METRICS = ("ndcg@10", "hr@10", "mrr")
#: Metrics of the configured paired comparisons (``comparisons`` in the experiment config).
PAIRED_METRICS = ("ndcg@10", "hr@10", "mrr", "auc")
#: Slice names as people read them, in report order.
SLICE_TITLES = {
    "all": "all users",
    "cold_items": "cold items",
    "short_history": "short histories",
    "target_retrieved": "target retrieved",
}
#: How the per-user metrics compared against the baseline are spelled in report headers.
DELTA_TITLES = {"auc": "AUC", "ndcg@10": "NDCG@10"}

#: ``{"mean", "low", "high"}`` (`llmrec.evaluation.significance.Interval.as_dict`).
IntervalDict = dict[str, float]
#: ``{"diff", "low", "high", "p_value", "users", "significant"}`` (`PairedComparison.as_dict`).
ComparisonDict = dict[str, float | int | bool]


class SliceSummary(TypedDict):
    users: int
    metrics: dict[str, float]


class FullCatalogueSummary(TypedDict):
    """A retriever arm ranking the whole catalogue: HR@20/50/100 and NDCG@10, with CIs."""

    users: int
    metrics: dict[str, float]
    ci: dict[str, IntervalDict]


class _ArmSummaryBase(TypedDict):
    config: dict[str, Any]
    users: int
    computed: int
    from_cache: int
    metrics: dict[str, float]
    ci: dict[str, IntervalDict]
    slices: dict[str, SliceSummary]
    ndcg_curve: list[float]


class ArmSummary(_ArmSummaryBase, total=False):
    """One arm. ``vs_baseline*`` only on arms other than the baseline; ``full_catalogue`` only on retriever arms."""

    vs_baseline: dict[str, ComparisonDict]
    vs_baseline_slices: dict[str, dict[str, ComparisonDict]]
    full_catalogue: FullCatalogueSummary


class SharedUsers(TypedDict):
    """Every arm's metrics on the users all arms evaluated (arms with a user cap ran on a prefix)."""

    users: int
    arms: dict[str, dict[str, float]]


class PairedSummary(TypedDict):
    """A configured comparison: arm minus versus, on the users both evaluated."""

    arm: str
    versus: str
    users: int
    metrics: dict[str, ComparisonDict]
    #: per slice (cold items, short histories, target retrieved): users in it and NDCG@10 difference.
    slices: dict[str, SlicePairedSummary]


class SlicePairedSummary(TypedDict):
    """A configured comparison within one slice of the users both arms evaluated."""

    users: int
    metrics: dict[str, ComparisonDict]


class Recommendation(TypedDict):
    metric: str
    best: str | None
    tied: list[str]
    pick: str | None
    reason: str


class Summary(TypedDict):
    """Everything ``metrics.json`` holds, in file order."""

    experiment: str
    description: str
    dataset: str
    split: dict[str, Any]
    protocol: dict[str, Any]
    slices: dict[str, Any]
    seed: int
    users_sampled: int
    users_available: int
    baseline: str | None
    bootstrap_samples: int
    confidence: float
    headline_metric: str
    provenance: dict[str, Any]
    arms: dict[str, ArmSummary]
    shared_users: SharedUsers
    comparisons: list[PairedSummary]
    recommendation: Recommendation


def headline_metric(protocol_kind: str) -> str:
    """The metric the recommendation is made on: AUC under the pointwise protocol, NDCG@10 otherwise."""
    return "pooled_auc" if protocol_kind == "pointwise" else "ndcg@10"


def delta_metric(protocol_kind: str) -> str:
    """The per-user metric arms are compared on (against the baseline, and for ties with the best arm): AUC under
    the pointwise protocol (two candidates per user, where NDCG@10 is only a rescaled AUC), NDCG@10 otherwise."""
    return "auc" if protocol_kind == "pointwise" else "ndcg@10"


# -- the summary ----------------------------------------------------------------------------------------------------


def summarize(result: ExperimentResult) -> Summary:
    """Everything metrics.json holds (see the module docstring)."""
    cfg = result.config
    base = result.arms.get(cfg.baseline or "")
    base_rows = {u.user_id: m for u, m in zip(base.users, _per_user(base.users))} if base else {}
    max_k = max((u.n_candidates for a in result.arms.values() for u in a.users), default=0)
    arms: dict[str, ArmSummary] = {}
    for name, arm in result.arms.items():
        arms[name] = _arm_summary(result, arm, max_k)
        if base is not None and name != cfg.baseline:
            arms[name]["vs_baseline"], arms[name]["vs_baseline_slices"] = _vs_baseline(arm, base_rows, cfg)
        if arm.full_catalogue_ranks is not None:
            arms[name]["full_catalogue"] = full_catalogue_summary(arm.full_catalogue_ranks, cfg)
    shared = shared_users(result)
    return {
        "experiment": cfg.name,
        "description": cfg.description,
        "dataset": cfg.dataset,
        "split": dataclasses.asdict(cfg.split),
        "protocol": cfg.protocol.as_dict(),
        "slices": dataclasses.asdict(cfg.slices),
        "seed": cfg.seed,
        "users_sampled": result.users_sampled,
        "users_available": result.users_available,
        "baseline": cfg.baseline,
        "bootstrap_samples": cfg.bootstrap_samples,
        "confidence": cfg.confidence,
        "headline_metric": headline_metric(cfg.protocol.kind),
        "provenance": provenance(result.dataset_fingerprint or "", behaviour_versions()),
        "arms": arms,
        "shared_users": shared,
        "comparisons": paired_comparisons(result),
        "recommendation": recommend(result, shared),
    }


def _arm_summary(result: ExperimentResult, arm: ArmResult, max_k: int) -> ArmSummary:
    """An arm's own numbers: metrics, CIs, slices and NDCG@k curve (no comparison with other arms)."""
    cfg = result.config
    rows = _per_user(arm.users)
    metrics = _means(rows, RANKING_METRICS)
    metrics["pooled_auc"] = _pooled_auc(arm.users)
    metrics.update(_costs(arm.users))
    entry: ArmSummary = {
        "config": _arm_config(result, arm),
        "users": len(arm.users),
        "computed": arm.computed,
        "from_cache": arm.reused,
        "metrics": metrics,
        "ci": {},
        "slices": {},
        "ndcg_curve": ndcg_curve(arm.users, max_k),
    }
    if rows:
        for m in RANKING_METRICS:
            entry["ci"][m] = bootstrap_interval(
                [r[m] for r in rows], samples=cfg.bootstrap_samples, confidence=cfg.confidence, seed=cfg.seed
            ).as_dict()
    if not math.isnan(metrics["pooled_auc"]):
        pos, neg = _auc_scores(arm.users)
        entry["ci"]["pooled_auc"] = bootstrap_pooled_auc(
            pos, neg, samples=cfg.bootstrap_samples, confidence=cfg.confidence, seed=cfg.seed
        ).as_dict()
    for s in _slice_names(arm):
        members = [(u, r) for u, r in zip(arm.users, rows) if u.slices[s]]
        sm = _means([r for _, r in members], RANKING_METRICS)
        sm["pooled_auc"] = _pooled_auc([u for u, _ in members])
        entry["slices"][s] = {"users": len(members), "metrics": sm}
    return entry


def _vs_baseline(
    arm: ArmResult, base_rows: Mapping[str, Mapping[str, float]], cfg: ExperimentConfig
) -> tuple[dict[str, ComparisonDict], dict[str, dict[str, ComparisonDict]]]:
    """``vs_baseline`` (all users) and ``vs_baseline_slices``: paired differences with the baseline arm on the
    users both evaluated."""
    overall: dict[str, ComparisonDict] = {}
    per_slice: dict[str, dict[str, ComparisonDict]] = {}
    rows = _per_user(arm.users)
    with_base = [(u, r) for u, r in zip(arm.users, rows) if u.user_id in base_rows]
    for s in ["all", *[x for x in _slice_names(arm) if x != "all"]]:
        pairs = [(r, base_rows[u.user_id]) for u, r in with_base if u.slices.get(s, False)]
        if not pairs:
            continue
        comparisons = _paired(pairs, RANKING_METRICS if s == "all" else SLICE_COMPARED_METRICS, cfg)
        if s == "all":
            overall = comparisons
        else:
            per_slice[s] = comparisons
    return overall, per_slice


def shared_users(result: ExperimentResult) -> SharedUsers:
    """Every arm's metric means (and costs) on the users that all arms evaluated."""
    shared = (
        set.intersection(*(set(u.user_id for u in a.users) for a in result.arms.values()))
        if result.arms
        else set()
    )
    out: SharedUsers = {"users": len(shared), "arms": {}}
    for name, arm in result.arms.items():
        users = [u for u in arm.users if u.user_id in shared]
        means = _means(_per_user(users), RANKING_METRICS)
        means["pooled_auc"] = _pooled_auc(users)
        means.update(_costs(users))
        out["arms"][name] = means
    return out


def paired_comparisons(result: ExperimentResult) -> list[PairedSummary]:
    """The configured comparisons (arm, versus) on the users both arms evaluated; pairs without one are skipped."""
    cfg = result.config
    out: list[PairedSummary] = []
    for a, b in cfg.comparisons:
        if a not in result.arms or b not in result.arms:
            continue
        other = {u.user_id: u for u in result.arms[b].users}
        user_pairs = [(u, other[u.user_id]) for u in result.arms[a].users if u.user_id in other]
        if not user_pairs:
            continue
        rows = list(zip(_per_user([x for x, _ in user_pairs]), _per_user([y for _, y in user_pairs]), strict=True))
        entry: PairedSummary = {
            "arm": a, "versus": b, "users": len(user_pairs), "metrics": _paired(rows, PAIRED_METRICS, cfg),
            "slices": {},
        }  # fmt: skip
        for s in (x for x in _slice_names(result.arms[a]) if x != "all"):
            members = [r for (x, _), r in zip(user_pairs, rows) if x.slices.get(s, False)]
            if members:
                entry["slices"][s] = {"users": len(members), "metrics": _paired(members, SLICE_COMPARED_METRICS, cfg)}
        out.append(entry)
    return out


def _paired(
    rows: Sequence[tuple[Mapping[str, float], Mapping[str, float]]], metrics: Sequence[str], cfg: ExperimentConfig
) -> dict[str, ComparisonDict]:
    """Paired bootstrap differences (first minus second) of each metric over per-user metric pairs."""
    return {
        m: paired_bootstrap(
            [x[m] for x, _ in rows], [y[m] for _, y in rows],
            samples=cfg.bootstrap_samples, confidence=cfg.confidence, seed=cfg.seed,
        ).as_dict()
        for m in metrics
    }  # fmt: skip


def recommend(result: ExperimentResult, shared: SharedUsers) -> Recommendation:
    """Best arm on the headline metric over the users every arm evaluated (`shared`), the arms statistically tied
    with it (the paired CI of the difference covers 0), and the one to pick: the best, unless a tied arm is
    clearly cheaper (half the latency or less, and at least 10 ms per user less)."""
    cfg = result.config
    metric = headline_metric(cfg.protocol.kind)
    arms = shared["arms"]
    scored = {n: m[metric] for n, m in arms.items() if not math.isnan(m[metric])}
    if not scored:
        return {"metric": metric, "best": None, "pick": None, "tied": [], "reason": "no arm produced scores"}
    best = max(scored, key=lambda n: scored[n])
    best_rows = {u.user_id: u for u in result.arms[best].users}
    tied = []
    per_user_metric = delta_metric(cfg.protocol.kind)
    for name, arm in result.arms.items():
        if name == best or name not in scored:
            continue
        pairs = [(best_rows[u.user_id], u) for u in arm.users if u.user_id in best_rows]
        if not pairs:
            continue
        cmp = paired_bootstrap(
            [user_metrics(b.rank, b.n_candidates)[per_user_metric] for b, _ in pairs],
            [user_metrics(o.rank, o.n_candidates)[per_user_metric] for _, o in pairs],
            samples=cfg.bootstrap_samples,
            confidence=cfg.confidence,
            seed=cfg.seed,
        )
        if not cmp.significant:
            tied.append(name)
    # A tied arm replaces the best only when it is clearly cheaper: at most half the latency and 10 ms less per
    # user (sub-millisecond differences between baselines are noise, not a reason to switch).
    best_cost = arms[best]["latency_s"]
    cheaper = [n for n in tied if arms[n]["latency_s"] <= 0.5 * best_cost and best_cost - arms[n]["latency_s"] >= 0.01]
    pick = min(cheaper, key=lambda n: (arms[n]["latency_s"], -scored[n])) if cheaper else best
    if pick == best and not tied:
        reason = (
            f"{best} has the highest {metric} ({scored[best]:.4f}) and every other arm is significantly below it "
            f"(paired bootstrap, {cfg.confidence:.0%} CI)."
        )
    elif pick == best:
        reason = (
            f"{best} has the highest {metric} ({scored[best]:.4f}); {', '.join(tied)} "
            f"{'is' if len(tied) == 1 else 'are'} statistically tied with it (paired bootstrap, "
            f"{cfg.confidence:.0%} CI) but not clearly cheaper."
        )
    else:
        reason = (
            f"{best} has the highest {metric} ({scored[best]:.4f}), but {pick} ({scored[pick]:.4f}) is "
            f"statistically tied with it on the same users and costs less "
            f"({arms[pick]['latency_s'] * 1000:.1f} ms vs {arms[best]['latency_s'] * 1000:.1f} ms "
            f"per user)."
        )
    reason += f" Compared on the {shared['users']} users every arm evaluated."
    return {"metric": metric, "best": best, "tied": tied, "pick": pick, "reason": reason}


def full_catalogue_summary(ranks: Mapping[str, int | None], cfg: Any) -> FullCatalogueSummary:
    """HR@20/50/100 and NDCG@10 of a retriever ranking the whole catalogue (history excluded), with CIs."""
    per_user = {
        "ndcg@10": [ndcg_at(r, 10) for r in ranks.values()],
        **{f"hr@{k}": [1.0 if r is not None and r <= k else 0.0 for r in ranks.values()] for k in (20, 50, 100)},
    }
    out: FullCatalogueSummary = {"users": len(ranks), "metrics": {}, "ci": {}}
    for metric, values in per_user.items():
        out["metrics"][metric] = float(sum(values) / len(values)) if values else math.nan
        if values:
            out["ci"][metric] = bootstrap_interval(
                values, samples=cfg.bootstrap_samples, confidence=cfg.confidence, seed=cfg.seed
            ).as_dict()
    return out


def metrics_table(summary: Summary) -> dict[str, dict[str, float]]:
    """``{arm: {metric: value}}``: what ``llmrec eval --json`` prints under ``arms``."""
    return {name: dict(arm["metrics"]) for name, arm in summary["arms"].items()}


def ndcg_curve(users: Sequence[UserResult], max_k: int) -> list[float]:
    """Mean NDCG@k for k = 1..max_k."""
    if not users:
        return []
    return [sum(ndcg_at(u.rank, k) for u in users) / len(users) for k in range(1, max_k + 1)]


# -- per-user numbers -----------------------------------------------------------------------------------------------


def _per_user(users: Sequence[UserResult]) -> list[dict[str, float]]:
    return [user_metrics(u.rank, u.n_candidates) for u in users]


def _means(rows: Sequence[Mapping[str, float]], keys: Sequence[str]) -> dict[str, float]:
    return {k: (sum(r[k] for r in rows) / len(rows) if rows else math.nan) for k in keys}


def _slice_names(arm: ArmResult) -> list[str]:
    return list(arm.users[0].slices) if arm.users else []


def _auc_scores(users: Sequence[UserResult]) -> tuple[list[float], list[list[float]]]:
    """Each scored user's target score and negative scores (users without a target or scores left out)."""
    pos: list[float] = []
    neg: list[list[float]] = []
    for u in users:
        if u.target_index is None or not u.scores:
            continue
        pos.append(u.scores[u.target_index])
        neg.append([s for n, s in enumerate(u.scores) if n != u.target_index])
    return pos, neg


def _pooled_auc(users: Sequence[UserResult]) -> float:
    pos, neg = _auc_scores(users)
    flat = [s for n in neg for s in n]
    return pairwise_auc(pos, flat) if pos and flat else math.nan


def _costs(users: Sequence[UserResult]) -> dict[str, float]:
    scored = [u for u in users if u.scored] or list(users)
    n = max(1, len(scored))
    passes = sum(u.forward_passes for u in scored)
    return {
        "prompt_tokens": sum(u.prompt_tokens for u in scored) / n,
        "forward_passes": passes / n,
        "latency_s": sum(u.latency_s for u in scored) / n,
        "parse_failure_rate": (sum(u.parse_failures for u in scored) / passes) if passes else 0.0,
    }


def _arm_config(result: ExperimentResult, arm: ArmResult) -> dict[str, Any]:
    cfg = result.config
    resolved = arm.config.resolved()
    retriever = {"popularity": "popularity", "cooc": "cooc", "dense": "dense"}.get(arm.config.kind)
    if arm.config.kind == "candidate_order" or (arm.config.is_llm and cfg.protocol.kind == "retrieved"):
        retriever = cfg.protocol.retriever if cfg.protocol.kind == "retrieved" else None
    return {
        **resolved,
        "protocol": cfg.protocol.kind,
        "retriever": retriever,
        "model": resolved.get("model"),
        "adapter": resolved.get("adapter"),
        "template": resolved.get("template"),
        "mode": resolved.get("mode"),
        "knowledge": bool(resolved.get("knowledge")),
        "users_evaluated": len(arm.users),
    }
