"""`llmrec fetch NAME`: bring an asset into the cache ($LLMREC_HOME)."""

from __future__ import annotations

import argparse

from llmrec.assets import ASSETS, fetch


def register(subparsers: argparse._SubParsersAction) -> None:
    names = ", ".join(ASSETS)
    parser = subparsers.add_parser(
        "fetch",
        help="fetch an asset (dataset or model) into the cache",
        description=f"Fetch an asset into $LLMREC_HOME (default ~/.cache/llmrec). Assets: {names}, or 'all' "
        f"(all but the multi-GB {', '.join(n for n, s in ASSETS.items() if not s.in_all)}, fetched by name only).",
    )
    parser.add_argument("name", choices=[*ASSETS, "all"], metavar="NAME", help=f"one of {names}, all")
    parser.add_argument("--force", action="store_true", help="fetch again even if already in the cache")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    names = [n for n, spec in ASSETS.items() if spec.in_all] if args.name == "all" else [args.name]
    for name in names:
        print(f"{name}: {fetch(name, force=args.force)}")
    return 0
