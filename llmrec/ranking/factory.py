"""The one path from a scoring mode and its options to a `Scorer`: used by `Reranker` and training validation.

Callers pass their choices explicitly (the reranker its configured batch size and prefix cache; validation its
training batch size, at least 8 candidate suffixes per pointwise pass), so each keeps its own behaviour while the
mapping from mode to scorer lives here once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from llmrec.errors import ConfigError
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
    if mode == "listwise":
        return ListwiseScorer(lm, batch_size=batch_size)
    if mode == "pointwise":
        return PointwiseScorer(lm, batch_size=batch_size, use_prefix_cache=prefix_cache)
    if mode == "generative":
        return GenerativeScorer(lm, max_new_tokens=max_new_tokens, titles=titles)
    raise ConfigError(f"scoring mode must be one of {', '.join(MODES)}, got {mode!r}")
