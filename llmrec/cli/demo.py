"""`llmrec demo`: the main job on the embedded defaults (what the README's first command runs)."""

from __future__ import annotations

import argparse
import time

from llmrec.data import load_dataset


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the main job on the embedded defaults (ml-100k)",
        description="Fetch ml-100k (first run only) and print its statistics.",
    )
    parser.add_argument("--dataset", default="ml-100k", help="dataset name or folder (default: ml-100k)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    ds = load_dataset(args.dataset)
    print(f"dataset {ds.name}: loaded in {time.perf_counter() - started:.2f} s")
    for key, value in ds.stats().items():
        print(f"  {key:<13} {value}")
    return 0
