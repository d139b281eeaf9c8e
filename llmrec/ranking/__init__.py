"""LLM scoring of candidates: listwise verbalizer, pointwise yes/no (prefix-cached), generative lists; the
`Reranker` facade with sliding windows and position-bias bootstrapping.

Example:
    >>> from llmrec.ranking import Reranker, RerankerConfig  # doctest: +SKIP
    >>> Reranker(dataset, RerankerConfig(mode="pointwise")).rank(history, k=10)  # doctest: +SKIP
"""

from __future__ import annotations

from llmrec.models.adapters import DEFAULT_ADAPTER, DEFAULT_ADAPTERS
from llmrec.prompts import MODES
from llmrec.ranking.base import (
    SCORE_KINDS,
    ContextLengthError,
    NonFiniteLogitsError,
    RankingError,
    Scorer,
    ScoreResult,
)
from llmrec.ranking.config import DEFAULT_TEMPLATES, RerankerConfig
from llmrec.ranking.factory import make_scorer
from llmrec.ranking.generative import GenerativeScorer, ParsedRanking, parse_ranking
from llmrec.ranking.listwise import ListwiseScorer
from llmrec.ranking.pointwise import PointwiseScorer
from llmrec.ranking.reranker import Reranker
from llmrec.ranking.result import RankedList

__all__ = [
    "DEFAULT_ADAPTER",
    "DEFAULT_ADAPTERS",
    "DEFAULT_TEMPLATES",
    "MODES",
    "SCORE_KINDS",
    "ContextLengthError",
    "GenerativeScorer",
    "ListwiseScorer",
    "NonFiniteLogitsError",
    "ParsedRanking",
    "PointwiseScorer",
    "RankedList",
    "RankingError",
    "Reranker",
    "RerankerConfig",
    "ScoreResult",
    "Scorer",
    "make_scorer",
    "parse_ranking",
]
