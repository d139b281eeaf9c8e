"""Candidate retrieval: the first stage, from a user's history to the K items worth showing to the LLM.

Every retriever follows the `Retriever` protocol (``name``, ``retrieve(history, k, exclude)``,
``score(history, item_ids)``).
"""

from __future__ import annotations

from llmrec.retrieval.base import FALLBACK_SOURCE, CatalogueRetriever, Retriever, check_k
from llmrec.retrieval.popularity import PopularityRetriever

__all__ = [
    "FALLBACK_SOURCE",
    "CatalogueRetriever",
    "PopularityRetriever",
    "Retriever",
    "check_k",
]
