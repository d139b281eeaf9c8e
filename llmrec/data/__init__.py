"""Data layer: typed records, loaders (RecBole atomic files, generic tables), positives and splits."""

from __future__ import annotations

from pathlib import Path

from llmrec.assets import ensure_asset
from llmrec.data.atomic import load_atomic
from llmrec.data.dataset import Dataset, PositivePolicy
from llmrec.data.matrix import InteractionMatrix
from llmrec.data.raw_movielens import raw_movielens_error
from llmrec.data.splits import (
    Split,
    SplitLeakError,
    SplitSettings,
    check_training_split,
    leave_one_out,
    time_split,
)
from llmrec.data.tables import ColumnMap, ItemColumnMap, load_table
from llmrec.errors import LlmrecError

# Datasets that `load_dataset` can fetch by name (each is an asset in llmrec.assets).
DATASET_ASSETS = ("ml-100k", "ml-1m")

__all__ = [
    "ColumnMap",
    "DATASET_ASSETS",
    "Dataset",
    "InteractionMatrix",
    "ItemColumnMap",
    "PositivePolicy",
    "Split",
    "SplitLeakError",
    "SplitSettings",
    "check_training_split",
    "leave_one_out",
    "load_atomic",
    "load_dataset",
    "load_table",
    "resolve_dataset_dir",
    "time_split",
]


def resolve_dataset_dir(name_or_path: str | Path) -> Path:
    """The folder of atomic files for a dataset name (fetched on first use) or an existing folder path."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if str(name_or_path) in DATASET_ASSETS:
        return ensure_asset(str(name_or_path))
    raw = raw_movielens_error(path)
    if raw is not None:
        raise raw
    raise LlmrecError(
        f"dataset {str(name_or_path)!r} is neither a folder nor a known dataset name "
        f"(known: {', '.join(DATASET_ASSETS)})"
    )


def load_dataset(name_or_path: str | Path, *, strict: bool = False) -> Dataset:
    """Load a dataset by name (``"ml-100k"``, fetched into the cache on first use) or from a folder of atomic files.

    Example:
        >>> ds = load_dataset("ml-100k")  # doctest: +SKIP
        >>> len(ds.history("196"))  # doctest: +SKIP
        39
    """
    folder = resolve_dataset_dir(name_or_path)
    return load_atomic(folder, strict=strict, name=None if Path(name_or_path).is_dir() else str(name_or_path))
