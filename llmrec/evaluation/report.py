"""The report folder: ``metrics.json`` (the summary), ``report.md``, the PNG plots and ``users.jsonl.gz``.

`llmrec.evaluation.summary` computes the typed summary from the runner's results (with its provenance: commit,
dataset fingerprint, library versions); `llmrec.evaluation.markdown` and `llmrec.evaluation.plots` render it;
`llmrec.evaluation.verify` owns the per-user results file. This module writes them.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from llmrec.evaluation.markdown import render_markdown
from llmrec.evaluation.plots import write_plots
from llmrec.evaluation.provenance import check_pinnable
from llmrec.evaluation.runner import ExperimentResult
from llmrec.evaluation.summary import Summary, summarize
from llmrec.evaluation.verify import write_user_results
from llmrec.io import atomic_write_text

log = logging.getLogger(__name__)


def write_report(
    result: ExperimentResult, folder: str | Path | None = None, *, plots: bool = True, allow_dirty: bool = False
) -> Summary:
    """Write metrics.json, report.md, the plots and users.jsonl.gz into `folder` (default
    ``config.results_path()``).

    Raises:
        DirtyTreeError: `folder` lies in the llmrec checkout, whose sources have uncommitted changes (the report
            would name a commit that did not make it), unless `allow_dirty`.
    """
    out = Path(folder) if folder is not None else result.config.results_path()
    summary = summarize(result)
    check_pinnable(out, summary["provenance"], allow_dirty=allow_dirty)
    out.mkdir(parents=True, exist_ok=True)
    write_user_results(result, summary, out)
    written = write_plots(summary, out) if plots else []
    atomic_write_text(out / "metrics.json", json.dumps(jsonable(summary), indent=2, sort_keys=False) + "\n")
    atomic_write_text(out / "report.md", render_markdown(summary, written))
    log.info("report written to %s", out)
    return summary


def jsonable(value: Any) -> Any:
    """`value` with NaN as None (JSON has no NaN), mappings and sequences converted throughout."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value
