"""The triple store under the knowledge graph: triples from several sources fused through link tables, indexed
both ways.

Storage is columnar (four int32 arrays: head, relation, tail, source, plus a liveness mask), with entity,
relation and source names interned once. The head and tail indexes are CSR arrays built lazily with numpy on the
first lookup after a change, so adding or removing triples is cheap and takes effect at the next lookup (the next
ranking call) without rebuilding anything else. About 20 bytes per triple plus the interned strings: ml-100k's
92K triples take ~2 MB, a few million triples stay well under a gigabyte.

The store only holds and looks up; what reads it (fact selection, alignment checks, extra sources, collaborative
evidence) sits above it, and `llmrec.knowledge.graph.KnowledgeGraph` puts them together on top.
"""

from __future__ import annotations

import logging
import math
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llmrec.errors import ConfigError
from llmrec.knowledge.relations import IN, OUT, Kind, kind_for
from llmrec.types import Item, Triple

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

ITEM_ENTITY_PREFIX = "llmrec:item/"
METADATA_SOURCE = "metadata"


@dataclass(frozen=True)
class Attribute:
    """One thing an item has through the KG: a (kind, entity) pair, with the source(s) that said so."""

    kind: Kind
    entity: str
    sources: tuple[str, ...]


class _Interner:
    """Strings <-> dense ints."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.names: list[str] = []

    def __call__(self, name: str) -> int:
        got = self.ids.get(name)
        if got is None:
            got = self.ids[name] = len(self.names)
            self.names.append(name)
        return got

    def __len__(self) -> int:
        return len(self.names)


class TripleStore:
    """Triples with provenance, item -> entity links and entity names, indexed for lookups.

    Fill it with `add_triples` / `add_links` / `add_names` / `add_metadata`; changes show up at the next lookup.
    Most code builds the `llmrec.knowledge.graph.KnowledgeGraph` subclass, which adds building from a dataset and
    fact selection.
    """

    def __init__(self) -> None:
        self._entities = _Interner()
        self._relations = _Interner()
        self._sources = _Interner()
        self._head = array("i")
        self._rel = array("i")
        self._tail = array("i")
        self._src = array("i")
        self._alive = bytearray()
        self._n_alive = 0
        self._item_entities: dict[str, list[tuple[int, str]]] = {}  # item -> [(entity id, link source)]
        self._entity_items: dict[int, list[str]] = {}
        self.names: dict[str, str] = {}
        self.version = 0
        self._index: tuple[Any, Any, Any, Any] | None = None
        self._attr_cache: dict[str, tuple[Attribute, ...]] = {}
        self._degree_cache: dict[tuple[str, str], int] = {}
        #: Collaborative evidence from interactions (`llmrec.knowledge.interactions.InteractionEvidence`), whose
        #: facts are selected with the KG's; None until `KnowledgeGraph.add_interaction_evidence`.
        self.evidence: Any = None

    # -- building -------------------------------------------------------------------------------------------------

    def add_metadata(self, items: Iterable[Item], source: str = METADATA_SOURCE) -> int:
        """Add ``genre`` and ``decade`` triples for `items` (through one synthetic entity per item)."""
        triples: list[Triple] = []
        links: dict[str, str] = {}
        for item in items:
            ent = f"{ITEM_ENTITY_PREFIX}{item.item_id}"
            links[item.item_id] = ent
            for genre in item.genres:
                triples.append(Triple(ent, "genre", f"genre:{genre}", source))
                self.names.setdefault(f"genre:{genre}", genre)
            if item.year is not None:
                decade = f"{item.year // 10 * 10}s"
                triples.append(Triple(ent, "decade", f"decade:{decade}", source))
                self.names.setdefault(f"decade:{decade}", decade)
        self.add_links(links, source=source)
        return self.add_triples(triples)

    def add_triples(self, triples: Iterable[Triple]) -> int:
        """Add triples (duplicates from different sources are kept: provenance is per triple). Returns the count."""
        n = 0
        ent, rel, src = self._entities, self._relations, self._sources
        for t in triples:
            if not (t.head and t.relation and t.tail):
                raise ConfigError(f"triple with an empty field: {t!r}")
            self._head.append(ent(t.head))
            self._rel.append(rel(t.relation))
            self._tail.append(ent(t.tail))
            self._src.append(src(t.source or "unknown"))
            n += 1
        self._alive.extend(b"\x01" * n)
        self._n_alive += n
        if n:
            self._changed()
        return n

    def remove_triples(
        self, *, source: str | None = None, where: Callable[[Triple], bool] | None = None
    ) -> int:
        """Remove every triple from `source` and/or matching `where`. Returns how many were removed."""
        if source is None and where is None:
            raise ConfigError("remove_triples needs a source or a where predicate")
        src_id = self._sources.ids.get(source, -1) if source is not None else None
        if src_id == -1:
            return 0
        removed = 0
        for i in range(len(self._alive)):
            if not self._alive[i] or (src_id is not None and self._src[i] != src_id):
                continue
            if where is not None and not where(self._triple(i)):
                continue
            self._alive[i] = 0
            removed += 1
        self._n_alive -= removed
        if removed:
            self._changed()
        return removed

    def add_links(self, links: Mapping[str, str], source: str = "kg") -> int:
        """Link items to entities (an item may have entities in several sources). Returns links added."""
        n = 0
        for item_id, entity in links.items():
            eid = self._entities(str(entity))
            entry = (eid, source)
            held = self._item_entities.setdefault(str(item_id), [])
            if any(e == eid for e, _ in held):
                continue
            held.append(entry)
            self._entity_items.setdefault(eid, []).append(str(item_id))
            n += 1
        if n:
            self._changed()
        return n

    def remove_links(self, source: str) -> int:
        """Remove every item -> entity link that `source` added. Returns how many were removed."""
        removed = 0
        for item_id in list(self._item_entities):
            held = self._item_entities[item_id]
            keep = [(e, s) for e, s in held if s != source]
            for eid, _ in (x for x in held if x[1] == source):
                items = self._entity_items.get(eid, [])
                if item_id in items:
                    items.remove(item_id)
                if not items:
                    self._entity_items.pop(eid, None)
            removed += len(held) - len(keep)
            if keep:
                self._item_entities[item_id] = keep
            else:
                del self._item_entities[item_id]
        if removed:
            self._changed()
        return removed

    def add_names(self, names: Mapping[str, str]) -> None:
        """Human-readable names of entities (facts use them when present)."""
        self.names.update({str(k): str(v) for k, v in names.items() if str(v).strip()})
        self._changed()

    def _changed(self) -> None:
        self.version += 1
        self._index = None
        self._attr_cache.clear()
        self._degree_cache.clear()

    # -- lookups --------------------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._n_alive

    def _triple(self, i: int) -> Triple:
        names = self._entities.names
        return Triple(
            names[self._head[i]], self._relations.names[self._rel[i]], names[self._tail[i]],
            self._sources.names[self._src[i]],
        )  # fmt: skip

    def triples(self) -> Iterator[Triple]:
        """Every live triple, in insertion order."""
        for i in range(len(self._alive)):
            if self._alive[i]:
                yield self._triple(i)

    def _build_index(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        import numpy as np

        if self._index is None:
            n_ent = len(self._entities)
            alive = np.flatnonzero(np.frombuffer(bytes(self._alive), dtype=np.uint8))
            head = np.frombuffer(self._head, dtype=np.int32)[alive] if len(alive) else np.zeros(0, np.int32)
            tail = np.frombuffer(self._tail, dtype=np.int32)[alive] if len(alive) else np.zeros(0, np.int32)
            parts = []
            for col in (head, tail):
                order = alive[np.argsort(col, kind="stable")].astype(np.int64)
                ptr = np.zeros(n_ent + 1, dtype=np.int64)
                np.cumsum(np.bincount(col, minlength=n_ent), out=ptr[1:])
                parts.extend([order, ptr])
            self._index = (parts[0], parts[1], parts[2], parts[3])
        return self._index

    def _touching(self, eid: int) -> Iterator[tuple[int, str]]:
        """(triple index, direction as seen from `eid`) for every live triple touching entity `eid`."""
        out_order, out_ptr, in_order, in_ptr = self._build_index()
        if eid >= len(out_ptr) - 1:
            return
        for i in out_order[out_ptr[eid] : out_ptr[eid + 1]]:
            yield int(i), OUT
        for i in in_order[in_ptr[eid] : in_ptr[eid + 1]]:
            yield int(i), IN

    def neighbours(self, entity: str) -> list[Triple]:
        """Live triples with `entity` as head or tail (head side first)."""
        eid = self._entities.ids.get(entity)
        return [] if eid is None else [self._triple(i) for i, _ in self._touching(eid)]

    def entities_of(self, item_id: str) -> list[str]:
        """KG entities the item is linked to (one per source that knows it)."""
        return [self._entities.names[e] for e, _ in self._item_entities.get(str(item_id), ())]

    def items_of(self, entity: str) -> list[str]:
        """Items linked to `entity`."""
        eid = self._entities.ids.get(entity)
        return list(self._entity_items.get(eid, ())) if eid is not None else []

    def attributes(self, item_id: str) -> tuple[Attribute, ...]:
        """What the item has through the KG: one `Attribute` per distinct (kind, other entity), sources merged.

        Kinds with weight 0 (language, country, ...) are left out. Sorted by kind then entity (deterministic).
        """
        item_id = str(item_id)
        cached = self._attr_cache.get(item_id)
        if cached is not None:
            return cached
        found: dict[tuple[str, str], tuple[Kind, set[str]]] = {}
        names = self._entities.names
        for eid, _ in self._item_entities.get(item_id, ()):
            for i, direction in self._touching(eid):
                other = self._tail[i] if direction == OUT else self._head[i]
                if other == eid:
                    continue
                kind = kind_for(self._relations.names[self._rel[i]], direction)
                if kind.weight <= 0:
                    continue
                key = (kind.name, names[other])
                if key not in found:
                    found[key] = (kind, set())
                found[key][1].add(self._sources.names[self._src[i]])
        attrs = tuple(
            Attribute(kind, entity, tuple(sorted(srcs)))
            for (_, entity), (kind, srcs) in sorted(found.items())
        )
        self._attr_cache[item_id] = attrs
        return attrs

    def degree(self, kind: str, entity: str) -> int:
        """How many items have attribute (`kind`, `entity`) (at least 1)."""
        key = (kind, entity)
        cached = self._degree_cache.get(key)
        if cached is not None:
            return cached
        eid = self._entities.ids.get(entity)
        items: set[str] = set()
        if eid is not None:
            for i, direction in self._touching(eid):
                other = self._tail[i] if direction == OUT else self._head[i]
                # the item is on the other side, so its direction is the opposite of ours
                seen_from_item = IN if direction == OUT else OUT
                if kind_for(self._relations.names[self._rel[i]], seen_from_item).name == kind:
                    items.update(self._entity_items.get(other, ()))
        self._degree_cache[key] = max(1, len(items))
        return self._degree_cache[key]

    def n_linked_items(self) -> int:
        return len(self._item_entities)

    def rarity(self, kind: str, entity: str) -> float:
        """``log(1 + linked items / degree)``: high for entities few items share (a director of 3 films)."""
        return math.log1p(max(1, self.n_linked_items()) / self.degree(kind, entity))

    def name_of(self, entity: str) -> str | None:
        """The entity's name if any source gave one."""
        return self.names.get(entity)

    def linked_item(self, entity: str) -> str | None:
        """The first item linked to `entity`, if it is an item's entity."""
        eid = self._entities.ids.get(entity)
        items = self._entity_items.get(eid, ()) if eid is not None else ()
        return items[0] if items else None

    def stats(self) -> dict[str, object]:
        """Counts: live triples, per source, entities, relations, linked items."""
        per_source: dict[str, int] = {}
        for i in range(len(self._alive)):
            if self._alive[i]:
                name = self._sources.names[self._src[i]]
                per_source[name] = per_source.get(name, 0) + 1
        return {
            "triples": self._n_alive,
            "triples_per_source": per_source,
            "entities": len(self._entities),
            "relations": len(self._relations),
            "linked_items": self.n_linked_items(),
            "named_entities": len(self.names),
            "interaction_evidence": self.evidence is not None,
        }
