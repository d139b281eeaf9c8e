"""Offline prompt-evaluation harness: protocols, metrics, baseline and LLM arms, cached runner, reports.

Example:
    >>> from llmrec.evaluation import load_config, run_experiment, write_report  # doctest: +SKIP
    >>> config = load_config("eval/quick.yaml")  # doctest: +SKIP
    >>> summary = write_report(run_experiment(config, users=20))  # doctest: +SKIP
    >>> summary["arms"]["popularity"]["metrics"]["ndcg@10"]  # doctest: +SKIP
"""

from __future__ import annotations

from llmrec.evaluation.cache import ArmCache, arm_fingerprint
from llmrec.evaluation.config import (
    ArmConfig,
    ExperimentConfig,
    ProtocolConfig,
    SliceConfig,
    SplitConfig,
    load_config,
)
from llmrec.evaluation.markdown import render_markdown
from llmrec.evaluation.protocols import EmptySplitError, EvalCase, build_cases, make_split, user_order
from llmrec.evaluation.report import write_report
from llmrec.evaluation.runner import ArmResult, ExperimentResult, UserResult, run_experiment
from llmrec.evaluation.significance import bootstrap_interval, paired_bootstrap
from llmrec.evaluation.summary import Summary, metrics_table, summarize
from llmrec.metrics import (
    hit_at,
    ndcg_at,
    pairwise_auc,
    ranking_auc,
    reciprocal_rank,
    target_rank,
    user_metrics,
)

__all__ = [
    "ArmCache",
    "ArmConfig",
    "ArmResult",
    "EmptySplitError",
    "EvalCase",
    "ExperimentConfig",
    "ExperimentResult",
    "ProtocolConfig",
    "SliceConfig",
    "SplitConfig",
    "Summary",
    "UserResult",
    "arm_fingerprint",
    "bootstrap_interval",
    "build_cases",
    "hit_at",
    "load_config",
    "make_split",
    "metrics_table",
    "ndcg_at",
    "paired_bootstrap",
    "pairwise_auc",
    "ranking_auc",
    "reciprocal_rank",
    "render_markdown",
    "run_experiment",
    "summarize",
    "target_rank",
    "user_metrics",
    "user_order",
    "write_report",
]
