"""The knowledge graph: the triple store (`llmrec.knowledge.store`) fused from a dataset and extra sources, with
collaborative evidence and fact selection on top.

The store below holds and indexes triples; selection, alignment checks, extra sources and interaction evidence
read it; this module is the one that puts them together, so none of them imports it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from llmrec.errors import ConfigError
from llmrec.knowledge.checks import check_alignment
from llmrec.knowledge.interactions import InteractionEvidence
from llmrec.knowledge.selection import Fact, select_facts
from llmrec.knowledge.sources import KnowledgeSource
from llmrec.knowledge.store import ITEM_ENTITY_PREFIX, METADATA_SOURCE, Attribute, TripleStore
from llmrec.types import Item, Triple

if TYPE_CHECKING:
    from llmrec.data.dataset import Dataset

__all__ = ["ITEM_ENTITY_PREFIX", "METADATA_SOURCE", "MISALIGNED_ACTIONS", "Attribute", "KnowledgeGraph"]

log = logging.getLogger(__name__)

MISALIGNED_ACTIONS = ("warn", "drop", "error", "ignore")


class KnowledgeGraph(TripleStore):
    """Triples with provenance, item -> entity links and entity names, fused from several sources.

    Build it with `KnowledgeGraph.from_dataset(dataset, extra_sources=...)`, or empty and fill it with
    `add_triples` / `add_links` / `add_names` (see `TripleStore`). Changes show up at the next lookup.

    Example:
        >>> kg = KnowledgeGraph.from_dataset(load_dataset("ml-100k"))  # doctest: +SKIP
        >>> [a.kind.name for a in kg.attributes("1")][:3]  # doctest: +SKIP
        ['actor', 'actor', 'actor']
    """

    # -- building -------------------------------------------------------------------------------------------------

    @classmethod
    def from_dataset(
        cls,
        dataset: Dataset,
        extra_sources: Sequence[KnowledgeSource] = (),
        *,
        metadata: bool = True,
        source_name: str = "kg",
        on_misaligned: str = "warn",
        triples: bool = True,
        interactions: bool = False,
    ) -> KnowledgeGraph:
        """Fuse the dataset's own KG, triples derived from item metadata and any extra sources.

        Args:
            dataset: its ``triples``, ``links`` and ``entity_names`` are taken as they are (a triple's own
                ``source`` is kept when set).
            extra_sources: more triples, each with its own link table and names (see `KnowledgeSource`).
            metadata: add ``genre`` and ``decade`` triples from item metadata (source ``metadata``), linked through
                one synthetic entity per item.
            source_name: provenance for the dataset's triples that carry no source.
            triples: take the dataset's KG and item metadata (False: an empty graph, e.g. with `interactions` only,
                to show collaborative evidence without KG facts).
            interactions: add collaborative evidence built from the dataset's interactions (provenance
                ``interactions``; pass the train split, never data holding evaluation targets).
            on_misaligned: what to do when `check_alignment` finds the dataset's item -> entity links misaligned
                (its facts would describe other items than the ones named): ``warn`` (log, keep them), ``drop``
                (log, leave the dataset's own KG out; metadata and extra sources stay), ``error`` (raise
                ConfigError) or ``ignore`` (do not check).

        Raises:
            ConfigError: an extra source's link table links none of the dataset's items, or the links are
                misaligned and `on_misaligned` is ``error``.
        """
        if on_misaligned not in MISALIGNED_ACTIONS:
            raise ConfigError(
                f"on_misaligned must be one of {', '.join(MISALIGNED_ACTIONS)}, got {on_misaligned!r}"
            )
        kg = cls()
        if interactions:
            kg.add_interaction_evidence(dataset)
        if not triples:
            return kg
        own = [t if t.source else Triple(t.head, t.relation, t.tail, source_name) for t in dataset.triples]
        kg.add_triples(own)
        kg.add_links(dataset.links, source=source_name)
        kg.add_names(dataset.entity_names)
        linked = sum(1 for i in dataset.links if i in dataset.items)
        if dataset.triples and not linked:
            log.warning(
                "the KG of dataset %r links none of its %d items: KG facts will be empty",
                dataset.name,
                len(dataset.items),
            )
        if on_misaligned != "ignore" and dataset.triples and linked:
            report = check_alignment(kg, dataset)
            if report.suspicious:
                message = (
                    f"the item -> entity links of dataset {dataset.name!r} look misaligned: only "
                    f"{100 * (report.title_overlap or 0.0):.0f}% of {report.sequel_pairs} sequel/prequel pairs share "
                    f"a title word (e.g. {'; '.join(report.examples[:2])}), so its KG facts describe other items "
                    "than the ones they name"
                )
                if on_misaligned == "error":
                    raise ConfigError(message)
                if on_misaligned == "drop":
                    for own_source in sorted({t.source for t in own}):
                        kg.remove_triples(source=own_source)
                    kg.remove_links(source_name)
                    message += "; left the dataset's own KG out (on_misaligned='drop')"
                log.warning(message)
        if metadata:
            kg.add_metadata(dataset.items.values())
        for extra in extra_sources:
            extra.add_to(kg, dataset)
        return kg

    def add_interaction_evidence(self, dataset: Dataset, **options: Any) -> None:
        """Fuse collaborative evidence from `dataset`'s interactions into the graph (see `InteractionEvidence`)."""
        self.evidence = InteractionEvidence.fit(dataset, **options)
        self._changed()

    # -- facts ----------------------------------------------------------------------------------------------------

    def select_facts(
        self,
        history: Sequence[str],
        candidates: Sequence[str],
        *,
        max_per_candidate: int = 3,
        budget: int | None = None,
        count_tokens: Callable[[str], int] | None = None,
        items: Mapping[str, Item] | None = None,
        **options: Any,
    ) -> dict[str, list[Fact]]:
        """Connections between each candidate and the history, best first, capped per candidate and by a token
        budget over all candidates. See `llmrec.knowledge.selection.select_facts`."""
        return select_facts(
            self,
            history,
            candidates,
            max_per_candidate=max_per_candidate,
            budget=budget,
            count_tokens=count_tokens,
            items=items,
            **options,
        )
