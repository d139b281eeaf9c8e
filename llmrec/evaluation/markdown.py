"""``report.md``: the summary (`llmrec.evaluation.summary.Summary`) as a Markdown report, arms as rows.

One function per section, in report order; each returns its lines (none when the section does not apply).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from llmrec.evaluation.summary import (
    DELTA_TITLES,
    PAIRED_METRICS,
    SLICE_TITLES,
    ArmSummary,
    ComparisonDict,
    Summary,
    delta_metric,
)

#: Columns of the result tables.
TABLE_METRICS = ("ndcg@1", "ndcg@5", "ndcg@10", "hr@5", "hr@10", "mrr", "auc")


def render_markdown(summary: Summary, plots: Sequence[str] = ()) -> str:
    """The report: settings, the main table (arms as rows), comparisons with the baseline, slices, plots."""
    sections = (
        _settings(summary),
        _pick(summary),
        _results(summary),
        _full_catalogue(summary),
        _target_retrieved(summary),
        _paired_comparisons(summary),
        _shared_users(summary),
        _pooled_auc(summary),
        _slices(summary),
        _arms(summary),
        _plots(plots),
        _footer(),
    )
    return "\n".join(line for section in sections for line in section)


def _settings(summary: Summary) -> list[str]:
    p = summary["protocol"]
    lines = [f"# Evaluation report: {summary['experiment']}", ""]
    if summary.get("description"):
        lines += [summary["description"].strip(), ""]
    proto = {
        "sampled": f"sampled: target + {p['negatives']} unseen items sampled uniformly (seeded, shuffled)",
        "retrieved": f"retrieved: the {p['retriever']} retriever's top-{p['k']} (target may be absent = miss)",
        "pointwise": f"pointwise: target + {p['negatives']} unseen item(s), each scored on its own (AUC)",
    }[p["kind"]]
    s = summary["split"]
    return lines + [
        f"- Dataset: `{summary['dataset']}`, split: {s['kind']} ({s['target']} target = each user's last "
        f"interaction with rating >= {s['positive_min_rating']}); retrievers fit on the train split only; "
        "history = all the user's interactions before the target.",
        f"- Protocol: {proto}.",
        f"- Users: {summary['users_sampled']} of {summary['users_available']} with a target "
        f"(seeded sample, seed {summary['seed']}); arms with a user cap are evaluated on the first N of that "
        "same seeded order, so every comparison is paired on shared users.",
        f"- Baseline for comparisons: `{summary['baseline']}`. Confidence intervals: {_conf(summary)} percentile "
        f"bootstrap over users ({summary['bootstrap_samples']} resamples), paired for differences.",
        _provenance(summary),
        "",
    ]


def _provenance(summary: Summary) -> str:
    """One line: the commit that made the report (or the old source hash of a report made before commits were
    recorded), the dataset's content fingerprint and the main library versions."""
    record = summary.get("provenance")
    if not isinstance(record, Mapping):
        return (
            "- Code version (hash of the llmrec source, made before reports recorded their commit): "
            f"`{summary.get('code_version')}`."
        )
    commit = record.get("commit")
    made = f"commit `{commit[:12]}`" if commit else "an llmrec install outside git"
    changed = record.get("uncommitted_changes") or []
    if changed:
        shown = ", ".join(changed[:3]) + (", ..." if len(changed) > 3 else "")
        made += f" with uncommitted changes to {len(changed)} file(s) ({shown})"
    libs = record.get("libraries", {})
    versions = ", ".join(f"{k} {libs[k]}" for k in ("llmrec", "torch", "transformers", "peft") if k in libs)
    return (
        f"- Made by {made} ({versions}); dataset content `{record.get('dataset_fingerprint')}`. "
        "`llmrec eval CONFIG --verify` replays a sample of users against `users.jsonl.gz`."
    )


def _pick(summary: Summary) -> list[str]:
    rec = summary.get("recommendation") or {}
    if not rec.get("pick"):
        return []
    return ["## Which arm to pick", "", f"**{rec['pick']}**. {rec['reason']}", ""]


def _results(summary: Summary) -> list[str]:
    base, conf = summary["baseline"], _conf(summary)
    delta = delta_metric(summary["protocol"]["kind"])
    header = [
        "arm",
        "users",
        *TABLE_METRICS,
        f"Δ{DELTA_TITLES[delta]} vs {base} [{conf} CI]",
        "tokens/user",
        "s/user",
        "parse fail",
    ]
    lines = ["## Results (all users)", "", *_table_head(header)]
    for name, arm in summary["arms"].items():
        m = arm["metrics"]
        row = [f"`{name}`", str(arm["users"]), *(_fmt(m[k]) for k in TABLE_METRICS)]
        row.append(_delta(arm.get("vs_baseline", {}).get(delta)))
        row += [f"{m['prompt_tokens']:.0f}", f"{m['latency_s']:.3f}", f"{m['parse_failure_rate']:.3f}"]
        lines.append(_row(row))
    return lines + ["", "`*`: the confidence interval of the difference excludes zero.", ""]


def _full_catalogue(summary: Summary) -> list[str]:
    full = {name: arm["full_catalogue"] for name, arm in summary["arms"].items() if "full_catalogue" in arm}
    if not full:
        return []
    lines = [
        "## First stage over the whole catalogue",
        "",
        "Retriever arms rank every item not in the user's history (not only the protocol's candidates): the "
        f"share of targets in the top 20/50/100, and NDCG@10 ({_conf(summary)} CI of HR@50).",
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
    return lines + [""]


def _target_retrieved(summary: Summary) -> list[str]:
    if summary["protocol"]["kind"] != "retrieved":
        return []
    lines = [
        "## Users whose target was retrieved",
        "",
        "The same metrics on the users whose target is among the retrieved candidates: what reranking can "
        f"change (Δ vs `{summary['baseline']}` with {_conf(summary)} CI).",
        "",
        *_table_head(["arm", "users", *TABLE_METRICS, "ΔNDCG@10"]),
    ]
    for name, arm in summary["arms"].items():
        info = arm["slices"].get("target_retrieved")
        if not info:
            continue
        vs = arm.get("vs_baseline_slices", {}).get("target_retrieved", {}).get("ndcg@10")
        m = info["metrics"]
        lines.append(_row([f"`{name}`", str(info["users"]), *(_fmt(m[k]) for k in TABLE_METRICS), _delta(vs)]))
    return lines + [""]


def _paired_comparisons(summary: Summary) -> list[str]:
    if not summary.get("comparisons"):
        return []
    lines = [
        "## Paired comparisons",
        "",
        f"Difference (arm − versus) on the users both evaluated, {_conf(summary)} CI.",
        "",
        "| arm | versus | users | ΔNDCG@10 | ΔHR@10 | ΔMRR | ΔAUC (per user) |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in summary["comparisons"]:
        cells = [_delta(c["metrics"][m]) for m in PAIRED_METRICS]
        lines.append(f"| `{c['arm']}` | `{c['versus']}` | {c['users']} | " + " | ".join(cells) + " |")
    slice_names = [sn for sn in SLICE_TITLES if any(sn in c.get("slices", {}) for c in summary["comparisons"])]
    if slice_names:
        lines += [
            "",
            "Within slices (ΔNDCG@10, users):",
            "",
            *_table_head(["arm", "versus", *(SLICE_TITLES[sn] for sn in slice_names)]),
        ]
        for c in summary["comparisons"]:
            cells = [f"`{c['arm']}`", f"`{c['versus']}`"]
            for sn in slice_names:
                info = c.get("slices", {}).get(sn)
                cells.append(f"{_delta(info['metrics']['ndcg@10'])} ({info['users']})" if info else "—")
            lines.append(_row(cells))
    return lines + [""]


def _shared_users(summary: Summary) -> list[str]:
    shared = summary.get("shared_users")
    if not shared or len({a["users"] for a in summary["arms"].values()}) <= 1:
        return []
    lines = [
        f"## Results on the {shared['users']} users every arm evaluated",
        "",
        "Arms with a user cap ran on a prefix of the seeded user order; this table puts every arm on the same "
        "users (the comparisons above are paired on shared users too).",
        "",
        *_table_head(["arm", *TABLE_METRICS, "s/user"]),
    ]
    for name, m in shared["arms"].items():
        lines.append(_row([f"`{name}`", *(_fmt(m[k]) for k in TABLE_METRICS), f"{m['latency_s']:.3f}"]))
    return lines + [""]


def _pooled_auc(summary: Summary) -> list[str]:
    arms = summary["arms"]
    if summary["protocol"]["kind"] != "pointwise" and all(
        math.isnan(a["metrics"]["pooled_auc"]) for a in arms.values()
    ):
        return []
    return [
        f"Pooled AUC (all targets vs all negatives, TALLRec style; {summary['confidence']:.0%} bootstrap CI "
        "over users; users): " + ", ".join(f"`{n}` {_pooled_auc_text(a)}" for n, a in arms.items()),
        "",
    ]


def _pooled_auc_text(arm: ArmSummary) -> str:
    """``0.7050 [0.6650, 0.7440] (300)``: an arm's pooled AUC with its CI (when known) and user count."""
    ci = arm.get("ci", {}).get("pooled_auc")
    interval = f" [{_fmt(ci['low'])}, {_fmt(ci['high'])}]" if ci else ""
    return f"{_fmt(arm['metrics']['pooled_auc'])}{interval} ({arm['users']})"


def _slices(summary: Summary) -> list[str]:
    arms = summary["arms"]
    slice_names = [sn for sn in SLICE_TITLES if sn != "all" and any(sn in a["slices"] for a in arms.values())]
    if not slice_names:
        return []
    sl = summary["slices"]
    lines = [
        "## Slices (NDCG@10; Δ vs baseline with CI)",
        "",
        f"Cold items: targets with <= {sl['cold_item_max_train']} train interactions. Short histories: "
        f"<= {sl['short_history_max']} items before the target.",
        "",
        *_table_head(["arm", *(f"{SLICE_TITLES[sn]} (users)" for sn in slice_names)]),
    ]
    for name, arm in arms.items():
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
        lines.append(_row(cells))
    return lines + [""]


def _arms(summary: Summary) -> list[str]:
    lines = [
        "## Arms",
        "",
        "| arm | kind | model | adapter | template | mode | KG | retriever | score |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, arm in summary["arms"].items():
        c = arm["config"]
        lines.append(
            f"| `{name}` | {c['kind']} | {c.get('model') or '—'} | {c.get('adapter') or '—'} | "
            f"{c.get('template') or '—'} | {c.get('mode') or '—'} | {'yes' if c.get('knowledge') else 'no'} | "
            f"{c.get('retriever') or '—'} | {_score_text(c) if c['kind'] == 'llm' else '—'} |"
        )
    lines.append("")
    return lines


def _llm_depth(config: Mapping[str, Any]) -> int | None:
    """The LLM depth of an arm's score fusion (None: no fusion, or the LLM scores every candidate)."""
    fusion = config.get("fusion")
    return fusion.get("llm_depth") if isinstance(fusion, Mapping) else None


def _score_text(config: Mapping[str, Any]) -> str:
    """How an LLM arm's scores are formed: the LLM alone, or its z-score fusion with first-stage members."""
    fusion = config.get("fusion")
    if not isinstance(fusion, Mapping):  # fusion false, or an adapter card without fusion weights
        return "LLM alone"
    members = ", ".join(f"{m} {w:g}" for m, w in zip(fusion["members"], fusion["weights"], strict=False))
    if not fusion["llm_weight"]:
        return f"members alone (z-scored: {members})"
    depth = _llm_depth(config)
    top = f"; LLM on the members' top {depth}" if depth is not None else ""
    return f"z-fused: LLM {fusion['llm_weight']:g}, {members}{top}"


def _plots(plots: Sequence[str]) -> list[str]:
    if not plots:
        return []
    return ["## Plots", "", *(f"![{Path(pl).stem}]({Path(pl).name})" for pl in plots), ""]


def _footer() -> list[str]:
    return [
        "Metrics: NDCG@k and HR@k (= Recall@k with one held-out item) from the target's rank among the candidates; "
        "MRR = mean 1/rank; AUC = mean share of other candidates ranked below the target; ties broken by the "
        "(shuffled) candidate order. Costs are per evaluated user: prompt tokens, forward passes, wall-clock "
        "latency of scoring, and parse failures per forward pass.",
        "",
    ]


# -- cells ----------------------------------------------------------------------------------------------------------


def _conf(summary: Summary) -> str:
    return f"{summary['confidence']:.0%}"


def _fmt(value: Any, digits: int = 4) -> str:
    return (
        "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"
    )


def _delta(vs: ComparisonDict | None) -> str:
    """A paired difference with its CI, starred when the CI excludes zero; ``—`` when there is none."""
    if vs is None:
        return "—"
    return f"{vs['diff']:+.4f} [{vs['low']:+.4f}, {vs['high']:+.4f}]" + (" *" if vs["significant"] else "")


def _table_head(header: Sequence[str]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"
