"""llmrec: LLM prompt-based reranking for recommendation.

Two stages: a retriever (sentence embeddings + FAISS) proposes candidates from a user's history, and a decoder LLM
with LoRA adapters reranks them from prompts that verbalise the history and knowledge-graph facts.
"""

from __future__ import annotations

__version__ = "0.1.0"
