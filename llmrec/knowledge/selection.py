"""Fact selection: which KG connections between a candidate and the user's history are worth showing the model.

With opaque entity ids (Freebase ``m.0bln8``), the useful facts are connections: the candidate shares a director,
writer, actors ... with a history item, is a sequel or prequel of one, or shares genres with many of them. Facts
are scored by usefulness, ``kind weight x rarity of the shared entities x recency of the history item``, so a
shared director of three films beats a shared genre of four hundred, and a link to last week's movie beats one to
a movie from two years ago. Selection is deterministic: ties break on kind and sentence text.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from llmrec.errors import ConfigError
from llmrec.knowledge.relations import Kind
from llmrec.types import Item

if TYPE_CHECKING:
    from llmrec.knowledge.store import Attribute, TripleStore

#: Bump when fact selection or verbalisation says other things about the same KG: evaluation caches key on it.
FACTS_VERSION = 1
MAX_NAMED_ITEMS = 2  # history items named in one sentence
MAX_NAMED_ENTITIES = 3


@dataclass(frozen=True)
class Fact:
    """One verbalised connection between a candidate and the history.

    Attributes:
        candidate: the candidate item id.
        kind: the connection kind (``director``, ``actor``, ``sequel_to``, ``genre`` ...).
        sentence: what the model reads, e.g. "same director as Fargo (1996)".
        score: usefulness; higher first.
        history_items: the history item ids it connects to (most recent first).
        entities: the shared KG entities (or the linked item's entity for direct links).
        sources: provenance of the triples behind it.
        tokens: its cost in tokens (sentence plus separator), as counted at selection time.
    """

    candidate: str
    kind: str
    sentence: str
    score: float
    history_items: tuple[str, ...]
    entities: tuple[str, ...]
    sources: tuple[str, ...]
    tokens: int = 0


def _approx_tokens(text: str) -> int:
    return len(text) // 4 + 1


def item_name(item_id: str, items: Mapping[str, Item] | None) -> str:
    """An item's display name (title and year) when its metadata is known, else its id."""
    if items is not None and item_id in items:
        return items[item_id].display_name
    return item_id


def _items_phrase(hs: Sequence[str], items: Mapping[str, Item] | None) -> str:
    shown = [item_name(h, items) for h in hs[:MAX_NAMED_ITEMS]]
    more = len(hs) - len(shown)
    if more > 0:
        return f"{', '.join(shown)} and {more} more"
    return " and ".join(shown)


def _entity_phrase(kg: TripleStore, kind: Kind, entities: Sequence[str]) -> str | None:
    """ "director Joel Coen" style text when every entity has a name, else None."""
    names = [kg.name_of(e) for e in entities]
    if not all(names):
        return None
    shown = [str(n) for n in names[:MAX_NAMED_ENTITIES]]
    more = len(names) - len(shown)
    text = ", ".join(shown) + (f" +{more} more" if more > 0 else "")
    return f"{kind.noun if len(entities) == 1 else kind.plural} {text}"


def verbalise_shared(
    kg: TripleStore,
    kind: Kind,
    entities: Sequence[str],
    hs: Sequence[str],
    items: Mapping[str, Item] | None,
) -> str:
    """A sentence for entities of one kind shared with history items `hs` (most recent first)."""
    who = _items_phrase(hs, items)
    named = _entity_phrase(kg, kind, entities)
    if named is not None:
        return f"{named}, as in {who}"
    if len(entities) == 1:
        return f"same {kind.noun} as {who}"
    return f"{len(entities)} {kind.plural} in common with {who}"


def verbalise_link(kind: Kind, h: str, items: Mapping[str, Item] | None) -> str:
    """A sentence for a direct link to history item `h` ("sequel to Toy Story (1995)")."""
    phrase = kind.link_phrase or f"linked ({kind.noun}) to"
    return f"{phrase} {item_name(h, items)}"


def verbalise_aggregate(
    kg: TripleStore, kind: Kind, entities: Sequence[str], n_items: int, n_history: int
) -> str:
    """A sentence for common attributes (genres, decade) shared with `n_items` of the history."""
    named = _entity_phrase(kg, kind, entities)
    what = (
        named
        if named is not None
        else (f"a {kind.noun}" if len(entities) == 1 else f"{len(entities)} {kind.plural}")
    )
    return f"shares {what} with {n_items} of the {n_history} history items"


def select_facts(
    kg: TripleStore,
    history: Sequence[str],
    candidates: Sequence[str],
    *,
    max_per_candidate: int = 3,
    budget: int | None = None,
    count_tokens: Callable[[str], int] | None = None,
    items: Mapping[str, Item] | None = None,
    recency_half_life: float = 20.0,
    kind_decay: float = 0.5,
    separator: str = "; ",
    user_items: Collection[str] = (),
) -> dict[str, list[Fact]]:
    """Select and verbalise the facts connecting each candidate to the history.

    Args:
        kg: the knowledge graph.
        history: item ids, oldest first (repeats count once, at their latest position).
        candidates: candidate item ids; the budget is shared in this order (round-robin: every candidate's best
            fact first, then every candidate's second best, ...), so no candidate starves the others.
        max_per_candidate: most facts per candidate.
        budget: most tokens over all facts (each costs its sentence plus `separator`); None means no limit.
        count_tokens: the model tokenizer's counter; without one, a rough 4-characters-per-token estimate.
        items: item metadata for the names in sentences (ids are used without it).
        recency_half_life: a history item this many positions before the newest one counts half as much.
        kind_decay: each fact already chosen for a candidate multiplies the score of further facts of the same
            kind by this (so three facts are not all "same genre as ...").
        user_items: the user's own items in the interactions behind the graph's collaborative evidence
            (``kg.evidence``), left out of it; see `llmrec.knowledge.interactions`.

    Returns:
        ``{candidate id: [Fact, ...]}`` best first, for every candidate (an empty list when nothing connects).
    """
    if max_per_candidate < 0:
        raise ConfigError(f"max_per_candidate must be >= 0, got {max_per_candidate}")
    if budget is not None and budget < 0:
        raise ConfigError(f"budget must be >= 0 or None, got {budget}")
    if recency_half_life <= 0:
        raise ConfigError(f"recency_half_life must be > 0, got {recency_half_life}")
    if not 0.0 <= kind_decay <= 1.0:
        raise ConfigError(f"kind_decay must be in [0, 1], got {kind_decay}")
    counter = count_tokens or _approx_tokens
    position = {str(h): n for n, h in enumerate(history)}
    n_hist = len(history)
    recency = {h: 0.5 ** ((n_hist - 1 - p) / recency_half_life) for h, p in position.items()}
    by_recency = sorted(position, key=lambda h: (-position[h], h))

    # attribute (kind, entity) -> history items having it, most recent first; entity -> history item it links
    held: dict[tuple[str, str], list[str]] = {}
    for h in by_recency:
        for a in kg.attributes(h):
            held.setdefault((a.kind.name, a.entity), []).append(h)
    history_entity: dict[str, str] = {}
    for h in by_recency:
        for e in kg.entities_of(h):
            history_entity.setdefault(e, h)

    ranked: dict[str, list[Fact]] = {}
    for c in dict.fromkeys(str(c) for c in candidates):
        facts = _candidate_facts(kg, c, held, history_entity, recency, n_hist, items)
        if kg.evidence is not None:
            facts += kg.evidence.facts(c, by_recency, recency=recency, items=items, user_items=user_items)
        ranked[c] = _diverse(facts, max_per_candidate, kind_decay)

    chosen: dict[str, list[Fact]] = {c: [] for c in ranked}
    spent = 0
    for rank in range(max_per_candidate):
        for c, facts in ranked.items():
            if rank >= len(facts):
                continue
            fact = facts[rank]
            cost = counter(fact.sentence + separator)
            if budget is not None and spent + cost > budget:
                continue
            spent += cost
            chosen[c].append(_with_tokens(fact, cost))
    return chosen


def _diverse(facts: list[Fact], limit: int, kind_decay: float) -> list[Fact]:
    """Greedy pick of `limit` facts, best first, discounting kinds already picked."""
    pool = sorted(facts, key=lambda f: (-f.score, f.kind, f.sentence))
    chosen: list[Fact] = []
    per_kind: dict[str, int] = {}
    while pool and len(chosen) < limit:
        best = max(
            range(len(pool)),
            key=lambda n: (pool[n].score * kind_decay ** per_kind.get(pool[n].kind, 0), -n),
        )
        fact = pool.pop(best)
        per_kind[fact.kind] = per_kind.get(fact.kind, 0) + 1
        chosen.append(fact)
    return chosen


def _with_tokens(fact: Fact, tokens: int) -> Fact:
    return Fact(
        fact.candidate,
        fact.kind,
        fact.sentence,
        fact.score,
        fact.history_items,
        fact.entities,
        fact.sources,
        tokens,
    )


def _candidate_facts(
    kg: TripleStore,
    c: str,
    held: Mapping[tuple[str, str], list[str]],
    history_entity: Mapping[str, str],
    recency: Mapping[str, float],
    n_hist: int,
    items: Mapping[str, Item] | None,
) -> list[Fact]:
    facts: list[Fact] = []
    shared: dict[tuple[str, str], list[Attribute]] = {}  # (kind, history item) -> shared attributes
    aggregated: dict[str, list[Attribute]] = {}
    for a in kg.attributes(c):
        linked = history_entity.get(a.entity)
        if linked is not None and linked != c and not a.kind.aggregate:
            facts.append(
                Fact(
                    c, a.kind.name, verbalise_link(a.kind, linked, items), 5.0 * a.kind.weight * recency[linked],
                    (linked,), (a.entity,), a.sources,
                )
            )  # fmt: skip
            continue
        hs = [h for h in held.get((a.kind.name, a.entity), ()) if h != c]
        if not hs:
            continue
        if a.kind.aggregate:
            aggregated.setdefault(a.kind.name, []).append(a)
        else:
            for h in hs:
                shared.setdefault((a.kind.name, h), []).append(a)

    # The same entities shared with several history items make one sentence naming them (most recent first).
    merged: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    kinds: dict[str, Kind] = {}
    attrs: dict[tuple[str, tuple[str, ...]], list[Attribute]] = {}
    for (kind_name, h), found in shared.items():
        key = (kind_name, tuple(sorted(a.entity for a in found)))
        merged.setdefault(key, []).append(h)
        attrs[key] = found
        kinds[kind_name] = found[0].kind
    for (kind_name, entities), hs in merged.items():
        kind = kinds[kind_name]
        hs.sort(key=lambda h: (-recency[h], h))
        # mean rarity, growing slowly with the count: 6 shared award nominations are not worth 6 directors
        rarity = (
            sum(kg.rarity(kind_name, e) for e in entities)
            / len(entities)
            * (1 + 0.5 * math.log2(len(entities)))
        )
        score = kind.weight * rarity * recency[hs[0]] * (1.0 + 0.25 * (len(hs) - 1))
        sources = tuple(sorted({s for a in attrs[(kind_name, entities)] for s in a.sources}))
        facts.append(
            Fact(
                c,
                kind_name,
                verbalise_shared(kg, kind, entities, hs, items),
                score,
                tuple(hs),
                entities,
                sources,
            )
        )

    # Common attributes are a summary: one sentence per candidate at most (the best kind), over 2+ items.
    summaries: list[Fact] = []
    for kind_name, found in aggregated.items():
        kind = found[0].kind
        found = sorted(found, key=lambda a: (-len(held[(kind_name, a.entity)]), a.entity))
        hs = sorted(
            {h for a in found for h in held[(kind_name, a.entity)] if h != c}, key=lambda h: (-recency[h], h)
        )
        share = len(hs) / max(1, n_hist)
        entities = tuple(a.entity for a in found)
        sources = tuple(sorted({s for a in found for s in a.sources}))
        if len(hs) < 2:
            continue
        summaries.append(
            Fact(
                c, kind_name, verbalise_aggregate(kg, kind, entities, len(hs), n_hist), 3.0 * kind.weight * share,
                tuple(hs), entities, sources,
            )
        )  # fmt: skip
    if summaries:
        facts.append(min(summaries, key=lambda f: (-f.score, f.kind)))
    return facts
