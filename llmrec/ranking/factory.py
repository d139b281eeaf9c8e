"""The one path from a scoring mode and its options to a `Scorer`: used by `Reranker` and training validation.

Scores are read from logits, so a half-precision model gets a float32 output head here
(`llmrec.models.heads.float32_output_head`): bfloat16 logits would quantise a yes/no margin to steps of 1/8.

Callers pass their choices explicitly (the reranker its configured batch size and prefix cache; validation its
training batch size, at least 8 candidate suffixes per pointwise pass), so each keeps its own behaviour while the
mapping from mode to scorer lives here once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from llmrec.errors import ConfigError
from llmrec.models.heads import float32_output_head
from llmrec.prompts.templates import MODES
from llmrec.ranking.base import Scorer
from llmrec.ranking.generative import GenerativeScorer
from llmrec.ranking.listwise import ListwiseScorer
from llmrec.ranking.pointwise import PointwiseScorer

if TYPE_CHECKING:
    from llmrec.models import LoadedModel


def make_scorer(
    mode: str,
    lm: LoadedModel,
    *,
    batch_size: int,
    prefix_cache: bool = True,
    max_new_tokens: int | None = None,
    titles: Mapping[str, str] | None = None,
) -> Scorer:
    """The scorer of `mode` over a loaded model.

    Args:
        mode: ``listwise`` | ``pointwise`` | ``generative``.
        lm: the loaded model (with its tokenizer).
        batch_size: listwise: prompts per forward pass; pointwise: candidate suffixes per pass (unused by
            generative scoring).
        prefix_cache: pointwise: encode the shared prefix once.
        max_new_tokens: generative: tokens to generate (None = 4 per candidate + 8).
        titles: generative: item titles, to read titles the model writes instead of labels.

    Example:
        >>> scorer = make_scorer("pointwise", lm, batch_size=8)  # doctest: +SKIP
    """
    if mode not in MODES:
        raise ConfigError(f"scoring mode must be one of {', '.join(MODES)}, got {mode!r}")
    float32_output_head(lm.model)
    if mode == "listwise":
        return ListwiseScorer(lm, batch_size=batch_size)
    if mode == "pointwise":
        return PointwiseScorer(lm, batch_size=batch_size, use_prefix_cache=prefix_cache)
    return GenerativeScorer(lm, max_new_tokens=max_new_tokens, titles=titles)
