"""LLM arms: build a `llmrec.ranking.Reranker` from an arm config and rerank one case's candidates with it."""

from __future__ import annotations

from typing import Any

from llmrec.errors import ConfigError
from llmrec.evaluation.arms import ArmOutput
from llmrec.evaluation.config import ArmConfig
from llmrec.evaluation.protocols import EvalCase


def build_reranker(arm: ArmConfig, dataset: Any) -> Any:
    """The Reranker an LLM arm describes, over `dataset` (the train split: items + KG, no test interactions)."""
    try:
        from llmrec.ranking import Reranker, RerankerConfig  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            f"arm {arm.name!r} needs llmrec.ranking.Reranker, which is not available: {exc}"
        ) from None
    raise ConfigError("LLM arms are not wired yet")


def rank_case(reranker: Any, case: EvalCase) -> ArmOutput:
    raise ConfigError("LLM arms are not wired yet")
