"""Loader for generic interaction tables (CSV, JSON lines, Parquet) read through the `datasets` library."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmrec.data.dataset import Dataset
from llmrec.data.raw_movielens import is_raw_movielens, raw_movielens_error
from llmrec.errors import ConfigError, DataFormatError, LlmrecError
from llmrec.types import Interaction, Item

log = logging.getLogger(__name__)

FORMATS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}


@dataclass(frozen=True)
class ColumnMap:
    """Which table columns hold what. Only `user` and `item` are required.

    Example:
        >>> ColumnMap(user="uid", item="movie", rating="stars", timestamp="ts")
        ColumnMap(user='uid', item='movie', rating='stars', timestamp='ts')
    """

    user: str = "user_id"
    item: str = "item_id"
    rating: str | None = None
    timestamp: str | None = None

    @classmethod
    def parse(cls, spec: str) -> ColumnMap:
        """Parse ``"user=uid,item=iid,rating=r,timestamp=ts"`` (the CLI's ``--columns``)."""
        fields: dict[str, str] = {}
        for part in filter(None, (p.strip() for p in spec.split(","))):
            key, sep, value = part.partition("=")
            if not sep or key not in {"user", "item", "rating", "timestamp"} or not value:
                raise ConfigError(
                    f"bad column mapping {part!r}: expected KEY=COLUMN with KEY one of user, item, rating, timestamp"
                )
            fields[key] = value
        return cls(**fields)


@dataclass(frozen=True)
class ItemColumnMap:
    """Columns of an optional item table: id, title, year and genres (genres split on `genre_sep`)."""

    item: str = "item_id"
    title: str | None = "title"
    year: str | None = None
    genres: str | None = None
    genre_sep: str = "|"


def _read_table(path: Path) -> Any:
    if path.is_dir() and (path / "dataset_info.json").is_file():  # a Hugging Face dataset saved with save_to_disk
        import datasets

        return _one_split(datasets.load_from_disk(str(path)), str(path))
    if not path.is_file():
        raise LlmrecError(f"table {path} does not exist")
    fmt = FORMATS.get(path.suffix.lower())
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    raw = raw_movielens_error(path) if fmt in (None, "csv") else None
    if raw is not None and is_raw_movielens(path, unless=delimiter if fmt else None):
        raise raw
    if fmt is None:
        raise LlmrecError(f"{path}: unknown table format {path.suffix!r}; expected one of {', '.join(FORMATS)}")
    import datasets

    kwargs: dict[str, Any] = {"delimiter": "\t"} if path.suffix.lower() == ".tsv" else {}
    try:
        return datasets.load_dataset(fmt, data_files=str(path), split="train", **kwargs)
    except Exception as exc:  # datasets raises many types for unreadable files; name the file instead
        raise DataFormatError(path, None, f"could not be read as {fmt}: {exc}") from exc


def _one_split(table: Any, where: str) -> Any:
    """A `datasets.Dataset` as is; a `DatasetDict` must hold one split, or a ``train`` split."""
    import datasets

    if isinstance(table, datasets.DatasetDict):
        if "train" in table:
            return table["train"]
        if len(table) == 1:
            return next(iter(table.values()))
        raise LlmrecError(f"{where}: a DatasetDict with splits {sorted(table)}; pass one of them (e.g. ds['train'])")
    if not isinstance(table, datasets.Dataset):
        raise LlmrecError(f"{where}: expected a datasets.Dataset or DatasetDict, got {type(table).__name__}")
    return table


def _require_columns(path: Path, table: Any, wanted: Mapping[str, str | None]) -> None:
    missing = [f"{role}={col!r}" for role, col in wanted.items() if col is not None and col not in table.column_names]
    if missing:
        raise DataFormatError(
            path, 1, f"missing column(s) {', '.join(missing)}; the table has {', '.join(table.column_names)}"
        )


def _number(path: Path, row_number: int, column: str, value: object) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise DataFormatError(path, row_number, f"column {column!r} must be a number, got {value!r}") from None
    if math.isnan(number):
        raise DataFormatError(path, row_number, f"column {column!r} is empty")
    return number


def load_table(
    path: str | Path | Any,
    columns: ColumnMap = ColumnMap(),
    *,
    items_path: str | Path | None = None,
    item_columns: ItemColumnMap = ItemColumnMap(),
    strict: bool = False,
    name: str | None = None,
) -> Dataset:
    """Load an interaction table (and optionally an item table) into a `Dataset`.

    `path` is a CSV/TSV/JSONL/Parquet file, a Hugging Face dataset folder written by ``save_to_disk``, or an
    in-memory ``datasets.Dataset`` / ``DatasetDict`` (its ``train`` split), all read through the same column
    mapping. Row numbers in errors count the header as row 1, as a spreadsheet shows them. Without a timestamp
    column, the row order is the time order.

    Example:
        >>> hf = datasets.Dataset.from_dict({"user_id": ["1"], "item_id": ["50"], "rating": [5], "timestamp": [0]})
        >>> load_table(hf, name="mine").stats()["interactions"]  # doctest: +SKIP
        1
    """
    if isinstance(path, (str, Path)):
        path = Path(path)
        table = _read_table(path)
    else:
        table = _one_split(path, "load_table")
        name = name or "dataset"
        path = Path(name)
    _require_columns(path, table, {"user": columns.user, "item": columns.item, "rating": columns.rating,
                                   "timestamp": columns.timestamp})
    items = _load_item_table(Path(items_path), item_columns) if items_path is not None else None
    interactions: list[Interaction] = []
    dangling = 0
    for n, row in enumerate(table, start=2):
        item_id = str(row[columns.item])
        if items is not None and item_id not in items:
            if strict:
                raise DataFormatError(path, n, f"item {item_id!r} is not in the item table")
            dangling += 1
            continue
        rating = _number(path, n, columns.rating, row[columns.rating]) if columns.rating else None
        timestamp = _number(path, n, columns.timestamp, row[columns.timestamp]) if columns.timestamp else float(n)
        interactions.append(Interaction(str(row[columns.user]), item_id, timestamp, rating))
    if dangling:
        log.warning("%s: dropped %d row(s) naming items missing from the item table", path, dangling)
    if items is None:
        items = {x.item_id: Item(x.item_id, title=x.item_id) for x in interactions}
    return Dataset(name=name or path.stem, items=items, interactions=interactions)


def _load_item_table(path: Path, cols: ItemColumnMap) -> dict[str, Item]:
    table = _read_table(path)
    _require_columns(path, table, {"item": cols.item, "title": cols.title, "year": cols.year, "genres": cols.genres})
    items: dict[str, Item] = {}
    for n, row in enumerate(table, start=2):
        item_id = str(row[cols.item])
        year = int(_number(path, n, cols.year, row[cols.year])) if cols.year and row[cols.year] is not None else None
        genres = tuple(g.strip() for g in str(row[cols.genres]).split(cols.genre_sep) if g.strip()) if cols.genres else ()
        title = str(row[cols.title]) if cols.title and row[cols.title] is not None else item_id
        items[item_id] = Item(item_id, title=title, year=year, genres=genres)
    return items
