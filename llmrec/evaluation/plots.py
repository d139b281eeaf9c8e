"""The report's PNG plots, drawn from the summary (`llmrec.evaluation.summary.Summary`) with matplotlib (Agg)."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

from llmrec.evaluation.summary import SLICE_TITLES, SliceSummary, Summary
from llmrec.io import atomic_write_bytes

#: The metrics of ``metrics.png``, one panel each.
PLOT_METRICS = ("ndcg@10", "hr@10", "mrr", "auc")


def write_plots(summary: Summary, folder: Path) -> list[str]:
    """metrics.png (metric by arm with CIs), ndcg_at_k.png (NDCG@k curves), slices.png (NDCG@10 by slice)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = [
        _save(_metric_bars(summary, plt), folder / "metrics.png", plt),
        _save(_ndcg_curves(summary, plt), folder / "ndcg_at_k.png", plt),
    ]
    slices = _slice_bars(summary, plt)
    if slices is not None:
        written.append(_save(slices, folder / "slices.png", plt))
    return written


def _metric_bars(summary: Summary, plt: Any) -> Any:
    """One horizontal bar panel per metric: arms as bars with their CI (gray = baseline, orange = LLM)."""
    arms = summary["arms"]
    names = list(arms)
    colors = [
        "tab:gray" if n == summary["baseline"] else ("tab:orange" if arms[n]["config"]["kind"] == "llm" else "tab:blue")
        for n in names
    ]
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
    return fig


def _ndcg_curves(summary: Summary, plt: Any) -> Any:
    """NDCG@k against k, one line per arm."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for n, arm in summary["arms"].items():
        curve = arm["ndcg_curve"]
        if curve:
            ax.plot(range(1, len(curve) + 1), curve, marker=".", label=n)
    ax.set_xlabel("k")
    ax.set_ylabel("NDCG@k")
    ax.set_title(f"{summary['experiment']}: NDCG@k")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _slice_bars(summary: Summary, plt: Any) -> Any | None:
    """NDCG@10 by slice, grouped bars per arm; None when no arm has slices."""
    arms = summary["arms"]
    names = list(arms)
    slice_names = [s for s in SLICE_TITLES if any(s in arms[n]["slices"] for n in names)]
    if not slice_names:
        return None
    import numpy as np

    fig, ax = plt.subplots(figsize=(max(7, 1.1 * len(names) * len(slice_names) / 2), 4.5))
    width = 0.8 / max(1, len(names))
    x = np.arange(len(slice_names))
    for i, n in enumerate(names):
        vals = [_slice_value(arms[n]["slices"].get(s), "ndcg@10") for s in slice_names]
        ax.bar(x + i * width - 0.4 + width / 2, vals, width, label=n)
    ax.set_xticks(x)
    ax.set_xticklabels(
        [f"{SLICE_TITLES[s]}\n({_slice_users(arms[names[0]]['slices'].get(s))} users)" for s in slice_names]
    )
    ax.set_ylabel("NDCG@10")
    ax.set_title(f"{summary['experiment']}: NDCG@10 by slice")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    return fig


def _slice_value(info: SliceSummary | None, metric: str) -> float:
    return info["metrics"].get(metric, math.nan) if info else math.nan


def _slice_users(info: SliceSummary | None) -> int:
    return info["users"] if info else 0


def _save(fig: Any, path: Path, plt: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return str(path)
