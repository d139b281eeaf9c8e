"""llmrec: LLM prompt-based reranking for recommendation.

Two stages: a first stage (SASRec, EASE and dense sentence embeddings in a FAISS index, z-score fused with weights fit
on the dataset's own validation users) proposes candidates from a user's history, and a decoder LLM with LoRA
adapters reranks them from prompts that verbalise the history, knowledge-graph facts and collaborative evidence
(skipped where validation gave the LLM no weight).

Example:
    >>> from llmrec import Reranker, load_dataset  # doctest: +SKIP
    >>> Reranker(load_dataset("ml-100k")).rank(["50", "172", "181"], k=5).item_ids  # doctest: +SKIP

The names below are imported on first use, so ``import llmrec`` stays light (no torch, no transformers).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Public name -> the module that defines it.
_EXPORTS = {
    "load_dataset": "llmrec.data",
    "Dataset": "llmrec.data",
    "ModelConfig": "llmrec.models",
    "Reranker": "llmrec.ranking",
    "RerankerConfig": "llmrec.ranking",
    "RankedList": "llmrec.ranking",
}

__all__ = [
    "Dataset",
    "ModelConfig",
    "RankedList",
    "Reranker",
    "RerankerConfig",
    "__version__",
    "load_dataset",
]

if TYPE_CHECKING:
    from llmrec.data import Dataset, load_dataset
    from llmrec.models import ModelConfig
    from llmrec.ranking import RankedList, Reranker, RerankerConfig


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'llmrec' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
