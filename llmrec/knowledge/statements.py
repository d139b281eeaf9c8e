"""True and corrupted statements about catalogue items, read from the knowledge graph: what the catalogue-knowledge
probe (`llmrec.evaluation.probe`) asks a base model.

Each probe relation says one kind of fact in one sentence:

- *shared* relations (director, writer, producer, actor): two items share an entity of a KG kind,
  "Fargo (1996) was directed by the director of Raising Arizona (1987).";
- *link* relations (sequel): a direct item-item link, "Toy Story 2 (1999) is a sequel to Toy Story (1995).";
- *attribute* relations (genre, decade): an item has a named value, "Fargo (1996) belongs to the Crime genre.".

A true statement is one the KG says; its corrupted twin is the same sentence with one item replaced by another
catalogue item for which the KG says the fact is false (for a link, in neither direction). Items are named as
the reader sees them, so a name shared by several items (a film listed twice, a remake's title without its year)
counts as true only when it holds for every item of that name, and as false only when it holds for none.
Statements are drawn with a seeded generator: the same KG, relation, count and seed give the same statements.

Example:
    >>> kg = KnowledgeGraph.from_dataset(dataset)  # doctest: +SKIP
    >>> drawn = probe_statements(kg, dataset.items, "director", pairs=100, seed=0)  # doctest: +SKIP
    >>> drawn.statements[0].text, drawn.statements[0].true  # doctest: +SKIP
    ('Fargo (1996) was directed by the director of Raising Arizona (1987).', True)
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from llmrec.errors import ConfigError
from llmrec.knowledge.selection import item_name
from llmrec.types import Item

if TYPE_CHECKING:
    from llmrec.knowledge.store import TripleStore

#: Bump when the same KG, relation, count and seed give other statements (probe reports record it).
STATEMENTS_VERSION = 1
FORMS = ("shared", "link", "attribute")
#: Attribute values that say nothing (ml-100k's "unknown" genre).
_EMPTY_VALUES = frozenset({"unknown", ""})
#: Random draws of a replacement item before the remaining catalogue is scanned in a seeded order.
_DRAWS = 200


@dataclass(frozen=True)
class ProbeRelation:
    """One kind of fact the probe states.

    Attributes:
        name: the relation's name in a probe config (``director``).
        kind: the KG kind (`llmrec.knowledge.relations.KINDS`) whose attributes make the statement true.
        form: ``shared`` (two items share an entity of `kind`), ``link`` (the first item is linked to the second
            by `kind`) or ``attribute`` (the item has the named entity of `kind`).
        sentence: the statement, with ``{a}`` and ``{b}`` (two items) or ``{a}`` and ``{value}``.
        with_year: name items by title and year; False: by title only (the year would give a decade away).
    """

    name: str
    kind: str
    form: str
    sentence: str
    with_year: bool = True


RELATIONS: dict[str, ProbeRelation] = {
    r.name: r
    for r in (
        ProbeRelation("director", "director", "shared", "{a} was directed by the director of {b}."),
        ProbeRelation("writer", "writer", "shared", "{a} was written by a writer of {b}."),
        ProbeRelation("producer", "producer", "shared", "{a} was produced by a producer of {b}."),
        ProbeRelation("actor", "actor", "shared", "{a} and {b} have an actor in common."),
        ProbeRelation("sequel", "sequel_to", "link", "{a} is a sequel to {b}."),
        ProbeRelation("genre", "genre", "attribute", "{a} belongs to the {value} genre."),
        ProbeRelation("decade", "decade", "attribute", "The movie {a} was released in the {value}.", False),
    )
}


@dataclass(frozen=True)
class Statement:
    """One probe statement.

    Attributes:
        relation: the probe relation's name.
        pair: index of the (true, corrupted) pair it belongs to.
        true: whether the KG says it.
        items: the item ids in the sentence, in slot order (``{a}``, ``{b}``; one item for attributes).
        value: attribute relations: the KG entity stated (``genre:Crime``); None otherwise.
        text: the sentence.
    """

    relation: str
    pair: int
    true: bool
    items: tuple[str, ...]
    value: str | None
    text: str


@dataclass(frozen=True)
class DrawnStatements:
    """The statements of one relation: pairs ``(true, corrupted)`` in draw order, and how many true ones the KG
    held (`available`) before `pairs` were drawn."""

    relation: str
    statements: tuple[Statement, ...]
    available: int


def relation(name: str) -> ProbeRelation:
    """The probe relation called `name`.

    Raises:
        ConfigError: an unknown name, listing the known ones.
    """
    found = RELATIONS.get(name)
    if found is None:
        raise ConfigError(f"unknown probe relation {name!r}; known: {', '.join(RELATIONS)}")
    return found


class _Facts:
    """One relation's facts over the catalogue, by item and by the names items are shown with."""

    def __init__(self, kg: TripleStore, items: Mapping[str, Item], rel: ProbeRelation) -> None:
        self.rel = rel
        self.items = items
        self.ids = sorted(items)
        self.values: dict[str, frozenset[str]] = {}
        for item_id in self.ids:
            found = [a.entity for a in kg.attributes(item_id) if a.kind.name == rel.kind]
            if rel.form == "attribute":
                found = [e for e in found if (kg.name_of(e) or "").strip().lower() not in _EMPTY_VALUES]
            self.values[item_id] = frozenset(found)
        # link relations hold an item's own entities to compare with another item's links
        self.own = {i: frozenset(kg.entities_of(i)) for i in self.ids} if rel.form == "link" else {}
        self.by_name: dict[str, list[str]] = {}
        for item_id in self.ids:
            self.by_name.setdefault(self.name(item_id), []).append(item_id)
        self.entity_names = {e: kg.name_of(e) or e for vs in self.values.values() for e in vs}

    def name(self, item_id: str) -> str:
        if self.rel.with_year:
            return item_name(item_id, self.items)
        return self.items[item_id].title

    def holds(self, a: str, b: str) -> bool:
        """Item-level truth: (a, b) for two-item relations, (a, value entity) for attributes."""
        if self.rel.form == "attribute":
            return b in self.values[a]
        if a == b:
            return False
        if self.rel.form == "shared":
            return bool(self.values[a] & self.values[b])
        return bool(self.values[a] & self.own[b])  # a is linked (e.g. a sequel) to b

    def _groups(self, slots: tuple[str, ...], value: str | None) -> list[tuple[str, str]]:
        """Every item-level reading of a statement whose items are shown by name."""
        firsts = self.by_name[self.name(slots[0])]
        if value is not None:
            return [(x, value) for x in firsts]
        return list(itertools.product(firsts, self.by_name[self.name(slots[1])]))

    def surely_true(self, slots: tuple[str, ...], value: str | None) -> bool:
        if value is None and self.name(slots[0]) == self.name(slots[1]):
            return False  # the same name twice says nothing
        return all(self.holds(x, y) for x, y in self._groups(slots, value))

    def surely_false(self, slots: tuple[str, ...], value: str | None) -> bool:
        if value is None and self.name(slots[0]) == self.name(slots[1]):
            return False
        groups = self._groups(slots, value)
        if self.rel.form == "link":  # "c is a sequel to b" is no clean falsehood when b is a sequel to c
            groups += [(y, x) for x, y in groups]
        return not any(self.holds(x, y) for x, y in groups)

    def text(self, slots: tuple[str, ...], value: str | None) -> str:
        if value is not None:
            return self.rel.sentence.format(a=self.name(slots[0]), value=self.entity_names[value])
        return self.rel.sentence.format(a=self.name(slots[0]), b=self.name(slots[1]))

    def true_facts(self) -> list[tuple[tuple[str, ...], str | None]]:
        """Every true (items, value) the KG holds, deduplicated, in a fixed order."""
        found: set[tuple[tuple[str, ...], str | None]] = set()
        if self.rel.form == "attribute":
            for item_id in self.ids:
                found.update(((item_id,), v) for v in self.values[item_id])
        elif self.rel.form == "shared":
            holders: dict[str, list[str]] = {}
            for item_id in self.ids:
                for v in self.values[item_id]:
                    holders.setdefault(v, []).append(item_id)
            for members in holders.values():
                found.update((pair, None) for pair in itertools.combinations(sorted(members), 2))
        else:
            owner: dict[str, list[str]] = {}
            for item_id in self.ids:
                for e in self.own[item_id]:
                    owner.setdefault(e, []).append(item_id)
            for item_id in self.ids:
                for e in self.values[item_id]:
                    found.update(((item_id, b), None) for b in owner.get(e, ()) if b != item_id)
        return sorted(f for f in found if self.surely_true(*f))


def probe_statements(
    kg: TripleStore,
    items: Mapping[str, Item],
    name: str,
    *,
    pairs: int,
    seed: int,
    min_pairs: int = 1,
    dataset: str = "the dataset",
) -> DrawnStatements:
    """Draw up to `pairs` true statements of relation `name` and one corrupted twin of each.

    Args:
        kg: the knowledge graph (with item metadata for ``genre`` and ``decade``).
        items: the catalogue (names and candidates for replacement).
        name: a relation of `RELATIONS`.
        pairs: most (true, corrupted) pairs; fewer when the KG holds fewer true statements.
        seed: seeds which true statements are drawn, which slot is replaced and by what.
        min_pairs: fewer true statements than this is an error.
        dataset: the dataset's name, for messages.

    Raises:
        ConfigError: an unknown relation; a KG without facts of the relation's kind (naming the kinds it has);
            fewer than `min_pairs` true statements; no catalogue item makes a statement false.
    """
    rel = relation(name)
    facts = _Facts(kg, items, rel)
    if not any(facts.values.values()):
        kinds = sorted({a.kind.name for i in facts.ids for a in kg.attributes(i)})
        raise ConfigError(
            f"the KG of {dataset} has no {rel.kind!r} facts, so relation {name!r} cannot be probed "
            f"(its items have: {', '.join(kinds) or 'no KG facts at all'})"
        )
    true = facts.true_facts()
    if len(true) < min_pairs:
        raise ConfigError(
            f"relation {name!r}: the KG of {dataset} holds only {len(true)} true statement(s), fewer than "
            f"protocol.min_pairs = {min_pairs}; leave the relation out or lower min_pairs"
        )
    rng = random.Random(f"llmrec-probe:{seed}:{name}")
    chosen = rng.sample(true, min(pairs, len(true)))
    out: list[Statement] = []
    for n, (slots, value) in enumerate(chosen):
        if value is None and rng.random() < 0.5 and rel.form == "shared":
            slots = (slots[1], slots[0])  # a symmetric fact: either item may come first
        slot = 0 if value is not None else rng.randrange(2)
        corrupted = _replace(facts, slots, value, slot, rng)
        out.append(Statement(name, n, True, slots, value, facts.text(slots, value)))
        out.append(Statement(name, n, False, corrupted, value, facts.text(corrupted, value)))
    return DrawnStatements(name, tuple(out), len(true))


def _replace(
    facts: _Facts, slots: tuple[str, ...], value: str | None, slot: int, rng: random.Random
) -> tuple[str, ...]:
    """`slots` with the item at `slot` replaced by a catalogue item that makes the statement false."""

    def swapped(c: str) -> tuple[str, ...]:
        return tuple(c if n == slot else s for n, s in enumerate(slots))

    ok: Callable[[str], bool] = lambda c: c not in slots and facts.surely_false(swapped(c), value)  # noqa: E731
    for _ in range(_DRAWS):
        c = rng.choice(facts.ids)
        if ok(c):
            return swapped(c)
    rest = list(facts.ids)
    rng.shuffle(rest)
    for c in rest:
        if ok(c):
            return swapped(c)
    raise ConfigError(
        f"relation {facts.rel.name!r}: no catalogue item makes {facts.text(slots, value)!r} false"
    )
