"""Candidate retrieval: the first stage, from a user's history to the K items worth showing to the LLM.

Every retriever follows the `Retriever` protocol (``name``, ``retrieve(history, k, exclude)``,
``score(history, item_ids)``). Heavy libraries (faiss, sentence-transformers, scipy) load only when used.

Example:
    >>> from llmrec.retrieval import build_retriever  # doctest: +SKIP
    >>> dense = build_retriever("dense", split.train_dataset)  # doctest: +SKIP
    >>> dense.retrieve(history=["50", "172"], k=20)  # doctest: +SKIP
"""

from __future__ import annotations

from llmrec.retrieval.base import FALLBACK_SOURCE, CatalogueRetriever, Retriever, check_k, retrieve_many
from llmrec.retrieval.cooccurrence import CooccurrenceRetriever
from llmrec.retrieval.dense import DenseRetriever
from llmrec.retrieval.embeddings import ItemEncoder, embed_items, item_text
from llmrec.retrieval.factory import (
    DEFAULT_RETRIEVER,
    RETRIEVER_NAMES,
    RETRIEVERS,
    RetrieverSpec,
    build_retriever,
    retriever_names,
)
from llmrec.retrieval.index import IndexConfig, IndexMismatchError, VectorIndex
from llmrec.retrieval.popularity import PopularityRetriever
from llmrec.retrieval.rrf import FusionRetriever
from llmrec.retrieval.user import UserRetrieval, retrieve_for_user
from llmrec.retrieval.zscore import ZScoreFusionRetriever

__all__ = [
    "DEFAULT_RETRIEVER",
    "FALLBACK_SOURCE",
    "RETRIEVERS",
    "RETRIEVER_NAMES",
    "CatalogueRetriever",
    "CooccurrenceRetriever",
    "DenseRetriever",
    "FusionRetriever",
    "IndexConfig",
    "IndexMismatchError",
    "ItemEncoder",
    "PopularityRetriever",
    "Retriever",
    "RetrieverSpec",
    "UserRetrieval",
    "VectorIndex",
    "ZScoreFusionRetriever",
    "build_retriever",
    "check_k",
    "embed_items",
    "item_text",
    "retrieve_for_user",
    "retrieve_many",
    "retriever_names",
]
