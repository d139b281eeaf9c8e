"""Recognise raw MovieLens files (``ratings.dat``: ``1::1193::5::978300760``, no header) passed as a dataset.

llmrec reads RecBole atomic files and CSV/TSV/JSONL/Parquet tables, not MovieLens' own ``::``-separated format.
Rather than fail with a generic "no .inter file" or "unknown format", the loaders raise `raw_movielens_error`,
which names the separator and the two ways forward: the built-in ``ml-1m`` dataset, or a one-line conversion to a
TSV table loaded through `llmrec.data.load_table` / ``--columns``.
"""

from __future__ import annotations

from pathlib import Path

from llmrec.errors import DataFormatError

SEPARATOR = "::"
RATINGS_HEADER = ("user_id", "item_id", "rating", "timestamp")


def _first_line(path: Path) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.strip():
                    return line.strip()
    except OSError:
        return ""
    return ""


def is_raw_movielens(path: Path, *, unless: str | None = None) -> bool:
    """Whether `path` is a file whose first line is ``::``-separated (MovieLens ``.dat`` style).

    `unless`: a delimiter whose presence in that line means the file is a proper table after all (a CSV whose
    text happens to hold ``::``).
    """
    if not path.is_file():
        return False
    line = _first_line(path)
    return len(line.split(SEPARATOR)) >= 3 and not (unless and unless in line)


def raw_movielens_error(path: str | Path) -> DataFormatError | None:
    """The error to raise for a raw MovieLens file, or a folder holding some; None when `path` is neither.

    Example:
        >>> raise raw_movielens_error("ml-1m/ratings.dat")  # doctest: +SKIP
        DataFormatError: ml-1m/ratings.dat:1: raw MovieLens format: columns separated by '::' with no header line ...
    """
    path = Path(path)
    if path.is_dir():
        raw = sorted(p for p in path.iterdir() if p.is_file() and is_raw_movielens(p))
        if not raw:
            return None
        ratings = next((p for p in raw if p.name == "ratings.dat"), path / "ratings.dat")
        what, line = f"holds raw MovieLens files ({', '.join(p.name for p in raw)})", None
    elif is_raw_movielens(path):
        ratings = path.parent / "ratings.dat" if path.name in ("movies.dat", "users.dat") else path
        what, line = "raw MovieLens format", 1
    else:
        return None
    tsv = ratings.with_suffix(".tsv")
    header = "\\t".join(RATINGS_HEADER)
    return DataFormatError(
        path,
        line,
        f"{what}: columns separated by {SEPARATOR!r} with no header line, which llmrec does not read. "
        "For MovieLens-1M use the built-in dataset 'ml-1m' (`llmrec fetch ml-1m`, load_dataset(\"ml-1m\"), "
        "`dataset: ml-1m` in a config). Otherwise convert the ratings to a tab-separated table with a header and "
        f"load that: (printf '{header}\\n'; sed 's/::/\\t/g' {ratings}) > {tsv} ; then "
        f"`llmrec data stats {tsv} --columns rating=rating,timestamp=timestamp`, or in Python "
        f"load_table(\"{tsv}\", ColumnMap(rating=\"rating\", timestamp=\"timestamp\"))",
    )
