"""What KG relations mean for recommendation: which attribute an item gains through a triple, and how to say it.

A triple touches an item either as ``item --r--> x`` (outgoing) or ``x --r--> item`` (incoming). Freebase stores
most facts both ways (``film.film.directed_by`` and ``film.director.film``), so both directions map to one *kind*
("director") and the pair is counted once. When ``x`` is itself an item, the triple is a direct item-item link
(sequel / prequel). Relations not in the table still work: their kind is the relation name, spoken generically.
"""

from __future__ import annotations

from dataclasses import dataclass

OUT, IN = "out", "in"


@dataclass(frozen=True)
class Kind:
    """How one kind of connection is weighted and verbalised.

    Attributes:
        name: the kind's id, e.g. ``director``.
        noun / plural: for sentences such as "same director as X" / "2 directors in common with X".
        weight: multiplies the usefulness score; 0 drops the kind entirely (too common to inform, e.g. language).
        aggregate: attributes shared by many items (genre, decade): summarised per candidate as "Comedy, like 7
            of 20 history items" instead of one sentence per history item.
        link_phrase: direct item-item kinds: the phrase before the linked item, e.g. "sequel to".
    """

    name: str
    noun: str
    plural: str
    weight: float = 1.0
    aggregate: bool = False
    link_phrase: str = ""


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind("director", "director", "directors", 1.6),
        Kind("writer", "writer", "writers", 1.3),
        Kind("actor", "actor", "actors", 1.0),
        Kind("producer", "producer", "producers", 0.9),
        Kind("subject", "subject", "subjects", 1.0),
        Kind("production_company", "production company", "production companies", 0.6),
        Kind("cinematographer", "cinematographer", "cinematographers", 0.6),
        Kind("kg_genre", "genre", "genres", 0.3, aggregate=True),
        Kind("award_won", "award won", "awards won", 0.4),
        Kind("award_nomination", "award nomination", "award nominations", 0.3),
        Kind("language", "language", "languages", 0.0),
        Kind("country", "country", "countries", 0.0),
        Kind("content_rating", "content rating", "content ratings", 0.0),
        Kind("genre", "genre", "genres", 0.35, aggregate=True),
        Kind("decade", "decade", "decades", 0.1, aggregate=True),
        Kind("sequel_to", "sequel", "sequels", 3.0, link_phrase="sequel to"),
        Kind("prequel_of", "prequel", "prequels", 3.0, link_phrase="prequel of"),
    )
}

# (relation, direction as seen from the item) -> kind. "out": item is the head; "in": item is the tail.
RELATION_KINDS: dict[tuple[str, str], str] = {
    ("film.film.directed_by", OUT): "director",
    ("film.director.film", IN): "director",
    ("film.film.written_by", OUT): "writer",
    ("film.writer.film", IN): "writer",
    ("film.film.actor", OUT): "actor",
    ("film.actor.film", IN): "actor",
    ("film.film.produced_by", OUT): "producer",
    ("film.producer.film", IN): "producer",
    ("film.film.subjects", OUT): "subject",
    ("film.film_subject.films", IN): "subject",
    ("film.film.production_companies", OUT): "production_company",
    ("film.production_company.films", IN): "production_company",
    ("film.film.cinematography", OUT): "cinematographer",
    ("film.cinematographer.film", IN): "cinematographer",
    ("film.film.genre", OUT): "kg_genre",
    ("film.film_genre.films_in_this_genre", IN): "kg_genre",
    ("film.film.award_won", OUT): "award_won",
    ("film.film.award_nomination", OUT): "award_nomination",
    ("film.film.language", OUT): "language",
    ("film.film.country", OUT): "country",
    ("film.film.rating", OUT): "content_rating",
    ("film.content_rating.film", IN): "content_rating",
    # (a film.film.sequel b): b is a's sequel, so a is the prequel of b and b is a sequel to a.
    ("film.film.sequel", OUT): "prequel_of",
    ("film.film.sequel", IN): "sequel_to",
    ("film.film.prequel", OUT): "sequel_to",
    ("film.film.prequel", IN): "prequel_of",
    # Triples derived from item metadata (see KnowledgeGraph.from_dataset).
    ("genre", OUT): "genre",
    ("decade", OUT): "decade",
}

# Relation names used for triples derived from item metadata.
METADATA_RELATIONS = ("genre", "decade")


def kind_for(relation: str, direction: str) -> Kind:
    """The kind of connection a triple with `relation` gives an item on the `direction` side.

    Unknown relations get a generic kind named after the relation (its last dotted part, underscores as spaces),
    weight 1; the incoming direction of an unknown relation is a separate kind (``~relation``).
    """
    known = RELATION_KINDS.get((relation, direction))
    if known is not None:
        return KINDS[known]
    key = relation if direction == OUT else f"~{relation}"
    cached = _GENERIC.get(key)
    if cached is None:
        words = relation.rsplit(".", 1)[-1].replace("_", " ").strip() or relation
        noun = words if direction == OUT else f"{words} (inverse)"
        cached = Kind(key, noun, noun, 1.0, link_phrase=f"linked by {noun} to")
        _GENERIC[key] = cached
    return cached


_GENERIC: dict[str, Kind] = {}
