"""Summaries and the report folder: ``metrics.json``, ``report.md`` (arms as rows) and PNG plots.

The summary of an arm holds its ranking metrics (means over its users), bootstrap confidence intervals, slice
metrics, cost metrics and a paired comparison with the baseline arm on the users both evaluated. The report
ends with a recommendation computed from those numbers: the best arm on the headline metric, the arms that are
statistically tied with it, and the cheapest of those.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from llmrec.evaluation.cache import code_version
from llmrec.evaluation.runner import ArmResult, ExperimentResult, UserResult
from llmrec.evaluation.significance import bootstrap_interval, bootstrap_pooled_auc, paired_bootstrap
from llmrec.metrics import ndcg_at, pairwise_auc, user_metrics

log = logging.getLogger(__name__)

RANKING_METRICS = ("ndcg@1", "ndcg@5", "ndcg@10", "hr@5", "hr@10", "recall@5", "recall@10", "mrr", "auc")
TABLE_METRICS = ("ndcg@1", "ndcg@5", "ndcg@10", "hr@5", "hr@10", "mrr", "auc")
COST_METRICS = ("prompt_tokens", "forward_passes", "latency_s", "parse_failure_rate")
PLOT_METRICS = ("ndcg@10", "hr@10", "mrr", "auc")
SLICE_TITLES = {
    "all": "all users",
    "cold_items": "cold items",
    "short_history": "short histories",
    "target_retrieved": "target retrieved",
}


def headline_metric(protocol_kind: str) -> str:
    """The metric the recommendation is made on: AUC under the pointwise protocol, NDCG@10 otherwise."""
    return "pooled_auc" if protocol_kind == "pointwise" else "ndcg@10"


#: How the per-user metrics compared against the baseline are spelled in report headers.
DELTA_TITLES = {"auc": "AUC", "ndcg@10": "NDCG@10"}


def delta_metric(protocol_kind: str) -> str:
    """The per-user metric arms are compared on (against the baseline, and for ties with the best arm): AUC under
    the pointwise protocol (two candidates per user, where NDCG@10 is only a rescaled AUC), NDCG@10 otherwise."""
    return "auc" if protocol_kind == "pointwise" else "ndcg@10"


def _per_user(users: Sequence[UserResult]) -> list[dict[str, float]]:
    return [user_metrics(u.rank, u.n_candidates) for u in users]


def _means(rows: Sequence[Mapping[str, float]], keys: Sequence[str]) -> dict[str, float]:
    return {k: (sum(r[k] for r in rows) / len(rows) if rows else math.nan) for k in keys}


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


def _pooled_auc_text(arm: Mapping[str, Any]) -> str:
    """``0.7050 [0.6650, 0.7440] (300)``: an arm's pooled AUC with its CI (when known) and user count."""
    ci = arm.get("ci", {}).get("pooled_auc")
    interval = f" [{_fmt(ci['low'])}, {_fmt(ci['high'])}]" if ci else ""
    return f"{_fmt(arm['metrics']['pooled_auc'])}{interval} ({arm['users']})"


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


def ndcg_curve(users: Sequence[UserResult], max_k: int) -> list[float]:
    """Mean NDCG@k for k = 1..max_k."""
    if not users:
        return []
    return [sum(ndcg_at(u.rank, k) for u in users) / len(users) for k in range(1, max_k + 1)]


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


def summarize(result: ExperimentResult) -> dict[str, Any]:
    """Everything metrics.json holds (see the module docstring)."""
    cfg = result.config
    seed = cfg.seed
    out: dict[str, Any] = {
        "experiment": cfg.name,
        "description": cfg.description,
        "dataset": cfg.dataset,
        "split": dataclasses.asdict(cfg.split),
        "protocol": {
            **dataclasses.asdict(cfg.protocol),
            "retriever_options": dict(cfg.protocol.retriever_options),
        },
        "slices": dataclasses.asdict(cfg.slices),
        "seed": seed,
        "users_sampled": result.users_sampled,
        "users_available": result.users_available,
        "baseline": cfg.baseline,
        "bootstrap_samples": cfg.bootstrap_samples,
        "confidence": cfg.confidence,
        "headline_metric": headline_metric(cfg.protocol.kind),
        "code_version": code_version(),
        "arms": {},
    }
    base = result.arms.get(cfg.baseline or "")
    base_rows = {u.user_id: m for u, m in zip(base.users, _per_user(base.users))} if base else {}
    max_k = max((u.n_candidates for a in result.arms.values() for u in a.users), default=0)
    for name, arm in result.arms.items():
        rows = _per_user(arm.users)
        metrics = _means(rows, RANKING_METRICS)
        metrics["pooled_auc"] = _pooled_auc(arm.users)
        metrics.update(_costs(arm.users))
        entry: dict[str, Any] = {
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
                    [r[m] for r in rows], samples=cfg.bootstrap_samples, confidence=cfg.confidence, seed=seed
                ).as_dict()
        if not math.isnan(metrics["pooled_auc"]):
            pos, neg = _auc_scores(arm.users)
            entry["ci"]["pooled_auc"] = bootstrap_pooled_auc(
                pos, neg, samples=cfg.bootstrap_samples, confidence=cfg.confidence, seed=seed
            ).as_dict()
        slice_names = list(arm.users[0].slices) if arm.users else []
        for s in slice_names:
            members = [(u, r) for u, r in zip(arm.users, rows) if u.slices[s]]
            sm = _means([r for _, r in members], RANKING_METRICS)
            sm["pooled_auc"] = _pooled_auc([u for u, _ in members])
            entry["slices"][s] = {"users": len(members), "metrics": sm}
        if base is not None and name != cfg.baseline:
            entry["vs_baseline"] = {}
            entry["vs_baseline_slices"] = {}
            with_base = [(u, r) for u, r in zip(arm.users, rows) if u.user_id in base_rows]
            for s in ["all", *[x for x in slice_names if x != "all"]]:
                pairs = [(r, base_rows[u.user_id]) for u, r in with_base if u.slices.get(s, False)]
                if not pairs:
                    continue
                comparisons = {}
                for m in RANKING_METRICS if s == "all" else ("ndcg@10", "hr@10", "mrr"):
                    comparisons[m] = paired_bootstrap(
                        [a[m] for a, _ in pairs],
                        [b[m] for _, b in pairs],
                        samples=cfg.bootstrap_samples,
                        confidence=cfg.confidence,
                        seed=seed,
                    ).as_dict()
                if s == "all":
                    entry["vs_baseline"] = comparisons
                else:
                    entry["vs_baseline_slices"][s] = comparisons
        if arm.full_catalogue_ranks is not None:
            entry["full_catalogue"] = full_catalogue_summary(arm.full_catalogue_ranks, cfg)
        out["arms"][name] = entry
    shared = (
        set.intersection(*(set(u.user_id for u in a.users) for a in result.arms.values()))
        if result.arms
        else set()
    )
    out["shared_users"] = {"users": len(shared), "arms": {}}
    for name, arm in result.arms.items():
        shared_users = [u for u in arm.users if u.user_id in shared]
        means = _means(_per_user(shared_users), RANKING_METRICS)
        means["pooled_auc"] = _pooled_auc(shared_users)
        means.update(_costs(shared_users))
        out["shared_users"]["arms"][name] = means
    out["comparisons"] = []
    for a, b in cfg.comparisons:
        if a not in result.arms or b not in result.arms:
            continue
        other = {u.user_id: u for u in result.arms[b].users}
        user_pairs = [(u, other[u.user_id]) for u in result.arms[a].users if u.user_id in other]
        if not user_pairs:
            continue
        entry = {"arm": a, "versus": b, "users": len(user_pairs), "metrics": {}}
        for metric in ("ndcg@10", "hr@10", "mrr", "auc"):
            entry["metrics"][metric] = paired_bootstrap(
                [user_metrics(x.rank, x.n_candidates)[metric] for x, _ in user_pairs],
                [user_metrics(y.rank, y.n_candidates)[metric] for _, y in user_pairs],
                samples=cfg.bootstrap_samples,
                confidence=cfg.confidence,
                seed=seed,
            ).as_dict()
        out["comparisons"].append(entry)
    out["recommendation"] = recommend(result, out)
    return out


def recommend(result: ExperimentResult, summary: Mapping[str, Any]) -> dict[str, Any]:
    """Best arm on the headline metric over the users every arm evaluated, the arms statistically tied with it
    (the paired CI of the difference covers 0), and the one to pick: the best, unless a tied arm is clearly
    cheaper (half the latency or less, and at least 10 ms per user less)."""
    cfg = result.config
    metric = headline_metric(cfg.protocol.kind)
    arms = {n: {"metrics": m} for n, m in summary["shared_users"]["arms"].items()}
    scored = {n: a["metrics"][metric] for n, a in arms.items() if not math.isnan(a["metrics"][metric])}
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
    best_cost = arms[best]["metrics"]["latency_s"]
    cheaper = [
        n
        for n in tied
        if arms[n]["metrics"]["latency_s"] <= 0.5 * best_cost
        and best_cost - arms[n]["metrics"]["latency_s"] >= 0.01
    ]
    pick = min(cheaper, key=lambda n: (arms[n]["metrics"]["latency_s"], -scored[n])) if cheaper else best
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
            f"({arms[pick]['metrics']['latency_s'] * 1000:.1f} ms vs {arms[best]['metrics']['latency_s'] * 1000:.1f} ms "
            f"per user)."
        )
    reason += f" Compared on the {summary['shared_users']['users']} users every arm evaluated."
    return {"metric": metric, "best": best, "tied": tied, "pick": pick, "reason": reason}


def full_catalogue_summary(ranks: Mapping[str, int | None], cfg: Any) -> dict[str, Any]:
    """HR@20/50/100 and NDCG@10 of a retriever ranking the whole catalogue (history excluded), with CIs."""
    per_user = {
        "ndcg@10": [ndcg_at(r, 10) for r in ranks.values()],
        **{f"hr@{k}": [1.0 if r is not None and r <= k else 0.0 for r in ranks.values()] for k in (20, 50, 100)},
    }
    out: dict[str, Any] = {"users": len(ranks), "metrics": {}, "ci": {}}
    for metric, values in per_user.items():
        out["metrics"][metric] = float(sum(values) / len(values)) if values else math.nan
        if values:
            out["ci"][metric] = bootstrap_interval(
                values, samples=cfg.bootstrap_samples, confidence=cfg.confidence, seed=cfg.seed
            ).as_dict()
    return out


def metrics_table(summary: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """``{arm: {metric: value}}``: what ``llmrec eval --json`` prints under ``arms``."""
    return {name: dict(arm["metrics"]) for name, arm in summary["arms"].items()}


def _fmt(value: float, digits: int = 4) -> str:
    return (
        "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"
    )


def render_markdown(summary: Mapping[str, Any], plots: Sequence[str] = ()) -> str:
    """The report: settings, the main table (arms as rows), comparisons with the baseline, slices, plots."""
    p = summary["protocol"]
    base = summary["baseline"]
    conf = f"{summary['confidence']:.0%}"
    lines = [f"# Evaluation report: {summary['experiment']}", ""]
    if summary.get("description"):
        lines += [summary["description"].strip(), ""]
    proto = {
        "sampled": f"sampled: target + {p['negatives']} unseen items sampled uniformly (seeded, shuffled)",
        "retrieved": f"retrieved: the {p['retriever']} retriever's top-{p['k']} (target may be absent = miss)",
        "pointwise": f"pointwise: target + {p['negatives']} unseen item(s), each scored on its own (AUC)",
    }[p["kind"]]
    s = summary["split"]
    lines += [
        f"- Dataset: `{summary['dataset']}`, split: {s['kind']} ({s['target']} target = each user's last "
        f"interaction with rating >= {s['positive_min_rating']}); retrievers fit on the train split only; "
        "history = all the user's interactions before the target.",
        f"- Protocol: {proto}.",
        f"- Users: {summary['users_sampled']} of {summary['users_available']} with a target "
        f"(seeded sample, seed {summary['seed']}); arms with a user cap are evaluated on the first N of that "
        "same seeded order, so every comparison is paired on shared users.",
        f"- Baseline for comparisons: `{base}`. Confidence intervals: {conf} percentile bootstrap over users "
        f"({summary['bootstrap_samples']} resamples), paired for differences.",
        f"- Code version (hash of the llmrec retrieval/knowledge/prompt/ranking/model source): "
        f"`{summary['code_version']}`.",
        "",
    ]
    rec = summary.get("recommendation") or {}
    if rec.get("pick"):
        lines += ["## Which arm to pick", "", f"**{rec['pick']}**. {rec['reason']}", ""]
    lines += ["## Results (all users)", ""]
    delta = delta_metric(p["kind"])
    header = [
        "arm",
        "users",
        *TABLE_METRICS,
        f"Δ{DELTA_TITLES[delta]} vs {base} [{conf} CI]",
        "tokens/user",
        "s/user",
        "parse fail",
    ]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, arm in summary["arms"].items():
        m = arm["metrics"]
        vs = arm.get("vs_baseline", {}).get(delta)
        delta_text = (
            "—"
            if vs is None
            else f"{vs['diff']:+.4f} [{vs['low']:+.4f}, {vs['high']:+.4f}]"
            + (" *" if vs["significant"] else "")
        )
        row = [f"`{name}`", str(arm["users"]), *(_fmt(m[k]) for k in TABLE_METRICS), delta_text]
        row += [f"{m['prompt_tokens']:.0f}", f"{m['latency_s']:.3f}", f"{m['parse_failure_rate']:.3f}"]
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "`*`: the confidence interval of the difference excludes zero.", ""]
    full = {name: arm["full_catalogue"] for name, arm in summary["arms"].items() if "full_catalogue" in arm}
    if full:
        lines += [
            "## First stage over the whole catalogue",
            "",
            "Retriever arms rank every item not in the user's history (not only the protocol's candidates): the "
            f"share of targets in the top 20/50/100, and NDCG@10 ({conf} CI of HR@50).",
            "",
            "| arm | users | HR@20 | HR@50 | HR@100 | NDCG@10 |",
            "|---|---|---|---|---|---|",
        ]
        for name, info in full.items():
            m, ci = info["metrics"], info["ci"].get("hr@50")
            hr50 = _fmt(m["hr@50"]) + (f" [{ci['low']:.3f}, {ci['high']:.3f}]" if ci else "")
            lines.append(
                f"| `{name}` | {info['users']} | {_fmt(m['hr@20'])} | {hr50} | {_fmt(m['hr@100'])} | "
                f"{_fmt(m['ndcg@10'])} |"
            )
        lines.append("")
    if p["kind"] == "retrieved":
        lines += [
            "## Users whose target was retrieved",
            "",
            "The same metrics on the users whose target is among the retrieved candidates: what reranking can "
            f"change (Δ vs `{base}` with {conf} CI).",
            "",
        ]
        header = ["arm", "users", *TABLE_METRICS, "ΔNDCG@10"]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for name, arm in summary["arms"].items():
            info = arm["slices"].get("target_retrieved")
            if not info:
                continue
            vs = arm.get("vs_baseline_slices", {}).get("target_retrieved", {}).get("ndcg@10")
            delta = (
                "—"
                if vs is None
                else f"{vs['diff']:+.4f} [{vs['low']:+.4f}, {vs['high']:+.4f}]"
                + (" *" if vs["significant"] else "")
            )
            m = info["metrics"]
            lines.append(
                "| "
                + " | ".join([f"`{name}`", str(info["users"]), *(_fmt(m[k]) for k in TABLE_METRICS), delta])
                + " |"
            )
        lines.append("")
    if summary.get("comparisons"):
        lines += [
            "## Paired comparisons",
            "",
            f"Difference (arm − versus) on the users both evaluated, {conf} CI.",
            "",
        ]
        lines += [
            "| arm | versus | users | ΔNDCG@10 | ΔHR@10 | ΔMRR | ΔAUC (per user) |",
            "|---|---|---|---|---|---|---|",
        ]
        for c in summary["comparisons"]:
            cells = []
            for m in ("ndcg@10", "hr@10", "mrr", "auc"):
                v = c["metrics"][m]
                cells.append(
                    f"{v['diff']:+.4f} [{v['low']:+.4f}, {v['high']:+.4f}]"
                    + (" *" if v["significant"] else "")
                )
            lines.append(f"| `{c['arm']}` | `{c['versus']}` | {c['users']} | " + " | ".join(cells) + " |")
        lines.append("")
    shared = summary.get("shared_users") or {}
    if shared and len({a["users"] for a in summary["arms"].values()}) > 1:
        lines += [
            f"## Results on the {shared['users']} users every arm evaluated",
            "",
            "Arms with a user cap ran on a prefix of the seeded user order; this table puts every arm on the same "
            "users (the comparisons above are paired on shared users too).",
            "",
        ]
        header = ["arm", *TABLE_METRICS, "s/user"]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for name, m in shared["arms"].items():
            lines.append(
                "| "
                + " | ".join([f"`{name}`", *(_fmt(m[k]) for k in TABLE_METRICS), f"{m['latency_s']:.3f}"])
                + " |"
            )
        lines.append("")
    if p["kind"] == "pointwise" or any(
        not math.isnan(a["metrics"]["pooled_auc"]) for a in summary["arms"].values()
    ):
        lines += [
            f"Pooled AUC (all targets vs all negatives, TALLRec style; {summary['confidence']:.0%} bootstrap CI "
            "over users; users): "
            + ", ".join(f"`{n}` {_pooled_auc_text(a)}" for n, a in summary["arms"].items()),
            "",
        ]
    slice_names = [
        sn for sn in SLICE_TITLES if sn != "all" and any(sn in a["slices"] for a in summary["arms"].values())
    ]
    if slice_names:
        sl = summary["slices"]
        lines += [
            "## Slices (NDCG@10; Δ vs baseline with CI)",
            "",
            f"Cold items: targets with <= {sl['cold_item_max_train']} train interactions. Short histories: "
            f"<= {sl['short_history_max']} items before the target.",
            "",
        ]
        header = ["arm", *(f"{SLICE_TITLES[sn]} (users)" for sn in slice_names)]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for name, arm in summary["arms"].items():
            cells = [f"`{name}`"]
            for sn in slice_names:
                info = arm["slices"].get(sn)
                if not info:
                    cells.append("—")
                    continue
                cell = f"{_fmt(info['metrics']['ndcg@10'])} ({info['users']})"
                vs = arm.get("vs_baseline_slices", {}).get(sn, {}).get("ndcg@10")
                if vs is not None:
                    cell += f" Δ {vs['diff']:+.3f} [{vs['low']:+.3f}, {vs['high']:+.3f}]"
                cells.append(cell)
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    lines += [
        "## Arms",
        "",
        "| arm | kind | model | adapter | template | mode | KG | retriever |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, arm in summary["arms"].items():
        c = arm["config"]
        lines.append(
            f"| `{name}` | {c['kind']} | {c.get('model') or '—'} | {c.get('adapter') or '—'} | "
            f"{c.get('template') or '—'} | {c.get('mode') or '—'} | {'yes' if c.get('knowledge') else 'no'} | "
            f"{c.get('retriever') or '—'} |"
        )
    lines.append("")
    if plots:
        lines += ["## Plots", ""]
        lines += [f"![{Path(pl).stem}]({Path(pl).name})" for pl in plots]
        lines.append("")
    lines += [
        "Metrics: NDCG@k and HR@k (= Recall@k with one held-out item) from the target's rank among the candidates; "
        "MRR = mean 1/rank; AUC = mean share of other candidates ranked below the target; ties broken by the "
        "(shuffled) candidate order. Costs are per evaluated user: prompt tokens, forward passes, wall-clock "
        "latency of scoring, and parse failures per forward pass.",
        "",
    ]
    return "\n".join(lines)


def write_plots(summary: Mapping[str, Any], folder: Path) -> list[str]:
    """metrics.png (metric by arm with CIs), ndcg_at_k.png (NDCG@k curves), slices.png (NDCG@10 by slice)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = summary["arms"]
    names = list(arms)
    base = summary["baseline"]
    colors = [
        "tab:gray" if n == base else ("tab:orange" if arms[n]["config"]["kind"] == "llm" else "tab:blue")
        for n in names
    ]
    written = []

    fig, axes = plt.subplots(1, len(PLOT_METRICS), figsize=(4.2 * len(PLOT_METRICS), 0.45 * len(names) + 2.2))
    for ax, metric in zip(axes, PLOT_METRICS):
        vals = [arms[n]["metrics"][metric] for n in names]
        ci = [arms[n]["ci"].get(metric) for n in names]
        lo = [v - c["low"] if c else 0 for v, c in zip(vals, ci)]
        hi = [c["high"] - v if c else 0 for v, c in zip(vals, ci)]
        ys = list(range(len(names)))[::-1]
        ax.barh(ys, vals, xerr=[lo, hi], color=colors, capsize=3)
        ax.set_yticks(ys)
        ax.set_yticklabels(names if metric == PLOT_METRICS[0] else [""] * len(names))
        ax.set_title(metric.upper().replace("HR", "HR"))
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(
        f"{summary['experiment']}: metric by arm ({summary['confidence']:.0%} bootstrap CI; gray = baseline, orange = LLM)"
    )
    fig.tight_layout()
    written.append(_save(fig, folder / "metrics.png", plt))

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for n in names:
        curve = arms[n]["ndcg_curve"]
        if curve:
            ax.plot(range(1, len(curve) + 1), curve, marker=".", label=n)
    ax.set_xlabel("k")
    ax.set_ylabel("NDCG@k")
    ax.set_title(f"{summary['experiment']}: NDCG@k")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    written.append(_save(fig, folder / "ndcg_at_k.png", plt))

    slice_names = [s for s in SLICE_TITLES if any(s in arms[n]["slices"] for n in names)]
    if slice_names:
        import numpy as np

        fig, ax = plt.subplots(figsize=(max(7, 1.1 * len(names) * len(slice_names) / 2), 4.5))
        width = 0.8 / max(1, len(names))
        x = np.arange(len(slice_names))
        for i, n in enumerate(names):
            vals = [
                arms[n]["slices"].get(s, {}).get("metrics", {}).get("ndcg@10", np.nan) for s in slice_names
            ]
            ax.bar(x + i * width - 0.4 + width / 2, vals, width, label=n)
        ax.set_xticks(x)
        ax.set_xticklabels(
            [
                f"{SLICE_TITLES[s]}\n({arms[names[0]]['slices'].get(s, {}).get('users', 0)} users)"
                for s in slice_names
            ]
        )
        ax.set_ylabel("NDCG@10")
        ax.set_title(f"{summary['experiment']}: NDCG@10 by slice")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8, ncol=2)
        fig.tight_layout()
        written.append(_save(fig, folder / "slices.png", plt))
    return written


def _save(fig: Any, path: Path, plt: Any) -> str:
    import io

    from llmrec.io import atomic_write_bytes

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return str(path)


def write_report(
    result: ExperimentResult, folder: str | Path | None = None, *, plots: bool = True
) -> dict[str, Any]:
    """Write metrics.json, report.md and the plots into `folder` (default ``config.results_path()``)."""
    from llmrec.io import atomic_write_text

    out = Path(folder) if folder is not None else result.config.results_path()
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(result)
    written = write_plots(summary, out) if plots else []
    atomic_write_text(out / "metrics.json", json.dumps(jsonable(summary), indent=2, sort_keys=False) + "\n")
    atomic_write_text(out / "report.md", render_markdown(summary, written))
    log.info("report written to %s", out)
    return summary


def jsonable(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value
