"""LLM arms: build a `llmrec.ranking.Reranker` from an arm config and rerank one case's candidates with it.

The harness ranks through the pipeline users call: settings resolved from the adapter card, candidate order,
score fusion with first-stage retrievers and the LLM depth all happen inside `Reranker.rank`; the harness only
reads the ranked list (its fused scores, and the LLM and first-stage scores it carries for the report's rows).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from llmrec.errors import ConfigError
from llmrec.evaluation.config import ArmConfig
from llmrec.evaluation.protocols import ArmOutput, EvalCase

#: Reranker settings an arm sets with its own fields; `options` may not set them a second time.
_ARM_OWNED = {
    "model": "model",
    "adapter": "adapter",
    "mode": "mode",
    "template": "template",
    "knowledge": "knowledge",
    "permutations": "permutations",
    "fusion": "fusion",
    "llm_depth": "fusion.llm_depth",
}


def reranker_config(arm: ArmConfig) -> Any:
    """The `RerankerConfig` an LLM arm describes (arm fields + `options`; no adapter means the bare model)."""
    from llmrec.models import ModelConfig
    from llmrec.models.machine import pinned_dtype
    from llmrec.ranking import RerankerConfig

    if arm.kind == "reranker":
        # as a user builds it; the runner's leak guard checked the users this arm is evaluated on
        config = RerankerConfig.from_dict({"merge_adapter": False, **dict(arm.reranker or {}), "check_split": False})
        return replace(config, model=replace(config.model, dtype=pinned_dtype(config.model.dtype)))
    options = dict(arm.options)
    clash = sorted(k for k in options if k in _ARM_OWNED)
    if clash:
        raise ConfigError(
            f"arm {arm.name!r}: options {clash} are arm fields; set "
            f"{', '.join(repr(_ARM_OWNED[k]) for k in clash)} on the arm instead"
        )
    return RerankerConfig.from_dict(
        {
            "model": ModelConfig(str(arm.model), quantization=str(arm.quantization), dtype=pinned_dtype(str(arm.dtype))),
            "adapter": arm.adapter,
            "mode": arm.mode,
            "template": arm.template,
            "knowledge": bool(arm.knowledge),
            "permutations": int(arm.permutations or 1),
            # the arm's weights, or false, or (none given) the card's, as a Reranker resolves them
            "fusion": True if arm.fusion is None else arm.fusion,
            "check_split": False,  # the runner's leak guard checked the users this arm is evaluated on
            "force_llm": True,  # an llm arm measures its LLM, also where a card's fusion gives it weight 0
            "merge_adapter": False,  # attached, as the committed reports were made (an arm's options may merge)
            **options,
        }
    )


def build_reranker(arm: ArmConfig, dataset: Any, retrievers: Callable[[str], Any] | None = None) -> Any:
    """The Reranker of an LLM arm over `dataset` (the train split: catalogue + KG, no held-out interactions);
    `retrievers` hands it the retrievers the harness already fit on that split, by name."""
    from llmrec.ranking import Reranker

    return Reranker(dataset, reranker_config(arm), retrievers=retrievers)


def rank_case(reranker: Any, case: EvalCase) -> ArmOutput:
    """Rerank the case's candidates; scores come back in candidate order with the reranker's costs."""
    start = time.perf_counter()
    ranked = reranker.rank(list(case.history), list(case.candidates))
    latency = time.perf_counter() - start
    by_id = dict(zip(ranked.item_ids, ranked.scores))
    missing = [c for c in case.candidates if c not in by_id]
    if missing:
        raise ConfigError(
            f"the reranker returned no score for candidate(s) {missing[:5]} of user {case.user_id!r}"
        )
    fused = ranked.fusion is not None
    return ArmOutput(
        scores=tuple(float(by_id[c]) for c in case.candidates),
        prompt_tokens=int(ranked.prompt_tokens),
        forward_passes=int(ranked.forward_passes),
        parse_failures=int(ranked.parse_failures),
        latency_s=latency,
        llm_scores=tuple(float(ranked.llm_scores.get(c, math.nan)) for c in case.candidates) if fused else None,
        first_stage_scores=tuple(float(ranked.first_stage_scores[c]) for c in case.candidates) if fused else None,
    )
