"""`llmrec data stats DATASET`: load a dataset and print its statistics and load time."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from llmrec.data import ColumnMap, Dataset, load_dataset, load_table
from llmrec.data.tables import FORMATS


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="inspect datasets", description="Inspect datasets.")
    actions = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    stats = actions.add_parser(
        "stats",
        help="print counts of users, items, interactions and KG triples",
        description="Load a dataset and print its statistics. DATASET is a known name (ml-100k, ml-1m, fetched on "
        "first use), a folder of RecBole atomic files, or a CSV/JSONL/Parquet interaction table.",
    )
    stats.add_argument("dataset", metavar="DATASET")
    stats.add_argument("--json", action="store_true", help="print one JSON object")
    stats.add_argument("--strict", action="store_true", help="fail on dangling ids instead of dropping them")
    stats.add_argument(
        "--columns",
        default="",
        help="for a table: column mapping, e.g. user=uid,item=iid,rating=stars,timestamp=ts",
    )
    stats.set_defaults(func=run_stats)


def load_any(dataset: str, *, strict: bool = False, columns: str = "") -> Dataset:
    """A dataset from a name, a folder of atomic files, a table file or a saved Hugging Face dataset folder (the
    last two with a column mapping)."""
    path = Path(dataset)
    saved_hf = path.is_dir() and (path / "dataset_info.json").is_file()  # a datasets save_to_disk folder
    if saved_hf or (path.suffix.lower() in FORMATS and not path.is_dir()):
        return load_table(path, ColumnMap.parse(columns) if columns else ColumnMap(), strict=strict)
    return load_dataset(dataset, strict=strict)


def run_stats(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    ds = load_any(args.dataset, strict=args.strict, columns=args.columns)
    stats: dict[str, object] = {"dataset": ds.name, **ds.stats()}
    stats["load_seconds"] = round(time.perf_counter() - started, 3)
    if args.json:
        print(json.dumps(stats))
    else:
        width = max(len(k) for k in stats)
        for key, value in stats.items():
            print(f"{key:<{width}}  {value}")
    return 0
