"""`llmrec demo`: the main job on the embedded defaults (what the README's first command runs).

It is `llmrec rank ml-100k --user 196 --top 10` with a short preface: the dataset's statistics and the user's
latest interactions, so a new user sees what goes in and what comes out.
"""

from __future__ import annotations

import argparse
import time

from llmrec.data import load_dataset

DEMO_USER = "196"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the main job on the embedded defaults (ml-100k, SmolLM2, KG listwise reranking)",
        description="Fetch ml-100k and SmolLM2 (first run only), then retrieve 20 candidates for a sample user and "
        "rerank them with the LLM from a prompt holding the user's history and knowledge-graph connections.",
    )
    parser.add_argument("--user", default=DEMO_USER, help=f"user to rank for (default {DEMO_USER})")
    parser.add_argument("--mode", default="listwise", choices=["listwise", "pointwise", "generative"])
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from llmrec.cli import build_parser
    from llmrec.cli.rank import rank_loaded

    started = time.perf_counter()
    ds = load_dataset("ml-100k")
    stats = ds.stats()
    print(
        f"ml-100k: {stats['users']} users, {stats['items']} items, {stats['interactions']} interactions, "
        f"{stats['kg_triples']} KG triples, {stats['linked_items']} linked items "
        f"(loaded in {time.perf_counter() - started:.2f} s)"
    )
    history = ds.history(args.user)
    print(f"user {args.user}: {len(history)} interactions; the latest five:")
    for x in history[-5:]:
        print(f"    {ds.item(x.item_id).display_name}  (rated {x.rating:g})" if x.rating is not None
              else f"    {ds.item(x.item_id).display_name}")
    print()
    rank_args = build_parser().parse_args(["rank", "ml-100k", "--user", args.user, "--mode", args.mode, "--top", "10"])
    return rank_loaded(ds, rank_args, started)  # the dataset is loaded once, for the preface and the ranking
