"""`llmrec retrieve DATASET --user ID -k K`: candidates for one user from one retriever."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from llmrec.retrieval.factory import DEFAULT_RETRIEVER, RETRIEVER_NAMES


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "retrieve",
        help="retrieve candidate items for a user",
        description="Retrieve the K best candidate items for a user of DATASET from the user's history in it. "
        "DATASET is a known name (ml-100k), a folder of RecBole atomic files, or an interaction table. Items the "
        "user interacted with are never returned; a user without interactions gets popular items (the output "
        "then says fallback).",
    )
    parser.add_argument("dataset", metavar="DATASET")
    parser.add_argument("--user", required=True, help="user id")
    parser.add_argument("-k", type=int, default=20, help="number of candidates (default 20)")
    parser.add_argument(
        "--retriever",
        default=DEFAULT_RETRIEVER,
        choices=RETRIEVER_NAMES,
        help="default: zfusion (sasrec + ease + dense z-scored, weights fit on the dataset's own validation users; "
        "fit once, then cached); fusion: the same members by reciprocal rank",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--exclude", default="", help="comma-separated item ids to leave out as well")
    dense = parser.add_argument_group("dense retriever")
    dense.add_argument("--model", default="minilm", help="minilm (asset), a local folder or a hub id")
    dense.add_argument(
        "--index", default=None, metavar="PATH", help="saved index folder: load it, or build it there"
    )
    dense.add_argument(
        "--rebuild", action="store_true", help="rebuild the index at --index even if it exists"
    )
    dense.add_argument("--index-kind", default="auto", choices=["auto", "flat", "hnsw", "ivf"])
    parser.add_argument(
        "--history-len",
        type=int,
        default=None,
        help="latest history items used by dense/cooc (default: the retriever's own, 10 for dense, 20 for cooc)",
    )
    parser.add_argument("--columns", default="", help="for a table: column mapping (see `llmrec data stats`)")
    parser.set_defaults(func=run)


def _options(args: argparse.Namespace) -> dict[str, Any]:
    from llmrec.retrieval import IndexConfig

    history = {} if args.history_len is None else {"history_len": args.history_len}
    # only what the user set: a fusion's cached fit is keyed on its members' options
    dense: dict[str, Any] = {"progress": not args.json, **history}
    if args.model != "minilm":
        dense["model"] = args.model
    if args.index_kind != "auto":
        dense["index"] = IndexConfig(kind=args.index_kind)
    if args.index is not None:
        dense.update(index_path=args.index, rebuild=args.rebuild)
    if args.retriever == "dense":
        return dense
    if args.retriever == "cooc":
        return history
    if args.retriever in ("fusion", "zfusion"):
        return {"member_opts": {"dense": dense}}
    return {}


def run(args: argparse.Namespace) -> int:
    from llmrec.cli.data import load_any
    from llmrec.retrieval import build_retriever, check_k, retrieve_for_user
    from llmrec.retrieval.user import user_history

    started = time.perf_counter()
    dataset = load_any(args.dataset, columns=args.columns)
    loaded = time.perf_counter()
    # Fail on a bad user or k before a possibly long index build.
    user_history(dataset, args.user)
    check_k(args.k, len(dataset.items))
    retriever = build_retriever(args.retriever, dataset, **_options(args))
    built = time.perf_counter()
    exclude = [x.strip() for x in args.exclude.split(",") if x.strip()]
    result = retrieve_for_user(retriever, dataset, args.user, args.k, exclude)
    out = {
        "dataset": dataset.name,
        "user": result.user_id,
        "retriever": retriever.name,
        "k": args.k,
        "history_length": result.history_length,
        "fallback": result.fallback,
        "candidates": [
            {"item_id": c.item_id, "score": round(c.score, 6), "source": c.source} for c in result.candidates
        ],
        "load_seconds": round(loaded - started, 4),
        "build_seconds": round(built - loaded, 4),
        "retrieve_ms": round(result.seconds * 1000, 3),
        "total_seconds": round(time.perf_counter() - started, 4),
    }
    if args.json:
        print(json.dumps(out))
        return 0
    note = " (empty history: popularity fallback)" if result.fallback else ""
    print(f"{retriever.name} candidates for user {result.user_id} in {dataset.name}{note}:")
    for rank, c in enumerate(result.candidates, start=1):
        item = dataset.items.get(c.item_id)
        print(f"{rank:>4}  {c.item_id:>8}  {c.score:10.4f}  {item.display_name if item else ''}")
    describe = getattr(retriever, "describe", None)
    if describe is not None:
        print(describe())
    print(
        f"load {out['load_seconds']:.3f} s, build {out['build_seconds']:.3f} s, "
        f"retrieve {out['retrieve_ms']:.2f} ms"
    )
    return 0
