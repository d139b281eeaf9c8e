"""Loader for RecBole atomic files: ``<name>.inter .item .user .kg .link``, tab-separated with ``field:type`` headers.

Only ``.inter`` is required. Every malformed line raises `DataFormatError` naming the file, the line and what was
expected; ids that point nowhere (an interaction with an item missing from ``.item``) are counted and logged, or
raise when ``strict=True``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from llmrec.data.dataset import Dataset
from llmrec.data.raw_movielens import raw_movielens_error
from llmrec.errors import DataFormatError, LlmrecError
from llmrec.types import Interaction, Item, Triple, User

log = logging.getLogger(__name__)

FIELD_TYPES = ("token", "token_seq", "float", "float_seq")

# Accepted column names for item metadata, first match wins.
TITLE_FIELDS = ("movie_title", "title", "name", "item_name")
YEAR_FIELDS = ("release_year", "year")
GENRE_FIELDS = ("class", "genre", "genres", "categories", "category")


@dataclass(frozen=True)
class _Column:
    name: str
    type: str


class _AtomicFile:
    """One atomic file: parsed header plus an iterator over (line number, {field: raw string}) rows."""

    def __init__(self, path: Path, required: tuple[str, ...]) -> None:
        self.path = path
        with open(path, encoding="utf-8") as handle:
            header = handle.readline().rstrip("\r\n")
        self.columns = [self._parse_header_field(part) for part in header.split("\t")]
        names = [c.name for c in self.columns]
        missing = [r for r in required if r not in names]
        if missing:
            raise DataFormatError(
                path, 1, f"header lacks required field(s) {', '.join(missing)}; it has {', '.join(names)}"
            )
        self.names = names

    def _parse_header_field(self, part: str) -> _Column:
        name, sep, ftype = part.strip().partition(":")
        if not sep or not name or ftype not in FIELD_TYPES:
            raise DataFormatError(
                self.path, 1, f"header column {part!r} is not 'name:type' with type one of {', '.join(FIELD_TYPES)}"
            )
        return _Column(name, ftype)

    def rows(self) -> Iterator[tuple[int, dict[str, str]]]:
        width = len(self.columns)
        with open(self.path, encoding="utf-8") as handle:
            handle.readline()
            for lineno, line in enumerate(handle, start=2):
                line = line.rstrip("\r\n")
                if not line:
                    continue
                parts = line.split("\t")
                if len(parts) != width:
                    raise DataFormatError(
                        self.path,
                        lineno,
                        f"expected {width} tab-separated columns ({', '.join(self.names)}), got {len(parts)}",
                    )
                yield lineno, dict(zip(self.names, parts))

    def number(self, row: dict[str, str], field: str, lineno: int) -> float:
        raw = row[field]
        try:
            return float(raw)
        except ValueError:
            raise DataFormatError(self.path, lineno, f"column {field!r} must be a number, got {raw!r}") from None


def find_atomic_files(folder: Path) -> tuple[str, dict[str, Path]]:
    """The dataset name and its atomic files (by suffix) in `folder`. Raises if there is no single ``.inter``."""
    if not folder.is_dir():
        raise LlmrecError(f"dataset folder {folder} does not exist")
    inters = sorted(folder.glob("*.inter"))
    if not inters:
        raw = raw_movielens_error(folder)
        if raw is not None:
            raise raw
        raise LlmrecError(f"{folder} holds no RecBole '.inter' file (expected <name>.inter with a 'field:type' header)")
    if len(inters) > 1:
        raise LlmrecError(f"{folder} holds several .inter files ({', '.join(p.name for p in inters)}); keep one")
    name = inters[0].stem
    files = {suffix: folder / f"{name}.{suffix}" for suffix in ("inter", "item", "user", "kg", "link")}
    return name, {s: p for s, p in files.items() if p.is_file()}


def load_atomic(folder: str | Path, *, strict: bool = False, name: str | None = None) -> Dataset:
    """Load a folder of RecBole atomic files into a `Dataset`.

    Args:
        folder: folder holding ``<name>.inter`` and optionally ``.item .user .kg .link``.
        strict: raise on dangling ids (interactions or links naming an item missing from ``.item``) instead of
            dropping them with a counted warning.
        name: dataset name; defaults to the stem of the ``.inter`` file.

    Example:
        >>> ds = load_atomic(ensure_asset("ml-100k"))  # doctest: +SKIP
        >>> ds.stats()["interactions"]  # doctest: +SKIP
        100000
    """
    stem, files = find_atomic_files(Path(folder))
    items = _load_items(files["item"], strict) if "item" in files else None
    interactions = _load_interactions(files["inter"], items, strict)
    if items is None:  # no .item file: the catalogue is what the interactions name
        items = {x.item_id: Item(x.item_id, title=x.item_id) for x in interactions}
    users = _load_users(files["user"]) if "user" in files else {}
    for user_id in {x.user_id for x in interactions} - users.keys():
        users[user_id] = User(user_id)
    triples = _load_triples(files["kg"]) if "kg" in files else []
    links = _load_links(files["link"], items, strict) if "link" in files else {}
    return Dataset(
        name=name or stem, items=items, interactions=interactions, users=users, triples=triples, links=links
    )


def _first_present(names: list[str], candidates: tuple[str, ...]) -> str | None:
    return next((c for c in candidates if c in names), None)


MISSING_MARKERS = frozenset({"", "unknown", "unkonwn", "na", "n/a", "nan", "none", "null", "?"})


def _load_items(path: Path, strict: bool) -> dict[str, Item]:
    f = _AtomicFile(path, ("item_id",))
    title_field = _first_present(f.names, TITLE_FIELDS)
    year_field = _first_present(f.names, YEAR_FIELDS)
    genre_field = _first_present(f.names, GENRE_FIELDS)
    items: dict[str, Item] = {}
    bad_years = 0
    for lineno, row in f.rows():
        item_id = row["item_id"]
        if item_id in items:
            raise DataFormatError(path, lineno, f"item {item_id!r} is listed twice")
        year = None
        raw = row[year_field].strip() if year_field else ""
        if raw.lower() not in MISSING_MARKERS:
            try:
                year = int(float(raw))
            except ValueError:
                if strict:
                    raise DataFormatError(path, lineno, f"column {year_field!r} must be a year, got {raw!r}") from None
                bad_years += 1
        title = row[title_field].strip() if title_field else ""
        genres = tuple(row[genre_field].split()) if genre_field else ()
        items[item_id] = Item(item_id, title=title or item_id, year=year, genres=genres)
    if bad_years:
        log.info("%s: %d item(s) have a year that is not a number; treated as unknown (strict=True: error)",
                    path, bad_years)
    return items


def _load_interactions(path: Path, items: dict[str, Item] | None, strict: bool) -> list[Interaction]:
    f = _AtomicFile(path, ("user_id", "item_id"))
    has_rating = "rating" in f.names
    has_time = "timestamp" in f.names
    interactions: list[Interaction] = []
    dangling = 0
    for lineno, row in f.rows():
        item_id = row["item_id"]
        if items is not None and item_id not in items:
            if strict:
                raise DataFormatError(path, lineno, f"item {item_id!r} is not in the .item file")
            dangling += 1
            continue
        rating = f.number(row, "rating", lineno) if has_rating else None
        timestamp = f.number(row, "timestamp", lineno) if has_time else float(lineno)
        interactions.append(Interaction(row["user_id"], item_id, timestamp, rating))
    if dangling:
        log.warning("%s: dropped %d interaction(s) naming items missing from the .item file "
                    "(strict=True makes this an error)", path, dangling)
    return interactions


def _load_users(path: Path) -> dict[str, User]:
    f = _AtomicFile(path, ("user_id",))
    return {
        row["user_id"]: User(row["user_id"], {k: v for k, v in row.items() if k != "user_id"})
        for _, row in f.rows()
    }


def _load_triples(path: Path) -> list[Triple]:
    f = _AtomicFile(path, ("head_id", "relation_id", "tail_id"))
    source = path.name
    return [Triple(row["head_id"], row["relation_id"], row["tail_id"], source) for _, row in f.rows()]


def _load_links(path: Path, items: dict[str, Item], strict: bool) -> dict[str, str]:
    f = _AtomicFile(path, ("item_id", "entity_id"))
    links: dict[str, str] = {}
    dangling = 0
    for lineno, row in f.rows():
        if row["item_id"] not in items:
            if strict:
                raise DataFormatError(path, lineno, f"linked item {row['item_id']!r} is not in the catalogue")
            dangling += 1
            continue
        links[row["item_id"]] = row["entity_id"]
    if dangling:
        log.warning("%s: ignored %d link(s) to items missing from the catalogue", path, dangling)
    return links
