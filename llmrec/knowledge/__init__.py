"""Knowledge graph: a fused, indexed triple store, fact selection for (history, candidates) and verbalisation.

Example:
    >>> from llmrec.knowledge import KnowledgeGraph
    >>> kg = KnowledgeGraph.from_dataset(dataset)  # doctest: +SKIP
    >>> kg.select_facts(history_ids, candidate_ids, max_per_candidate=3, budget=300)  # doctest: +SKIP
"""

from __future__ import annotations

from llmrec.knowledge.graph import Attribute, KnowledgeGraph
from llmrec.knowledge.relations import KINDS, Kind, kind_for
from llmrec.knowledge.selection import Fact, select_facts
from llmrec.knowledge.sources import KnowledgeSource, read_pairs, read_triples

__all__ = [
    "KINDS",
    "Attribute",
    "Fact",
    "Kind",
    "KnowledgeGraph",
    "KnowledgeSource",
    "kind_for",
    "read_pairs",
    "read_triples",
    "select_facts",
]
