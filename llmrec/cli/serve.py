"""`llmrec serve [--config FILE]`: the reranker as an HTTP service (see `llmrec.serve`)."""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve the reranker over HTTP (POST /v1/rank, /v1/rerank; /metrics; an inspector page at /)",
        description="Load the dataset, the first stage and the reranker once, then answer ranking requests over "
        "HTTP, batching concurrent requests into shared forward passes. Settings come from a YAML file "
        "(llmrec.serve.ServeConfig: dataset, adapters, batching window, queue bound, timeouts, API key); the "
        "options below override it. SIGTERM drains: requests in flight finish, new ones get 503.",
    )
    parser.add_argument("--config", metavar="FILE", help="a serve YAML file (default: the built-in defaults)")
    parser.add_argument("--dataset", help="dataset name or folder (default: the config's, else ml-100k)")
    parser.add_argument("--adapter", action="append", metavar="NAME", help="an adapter to serve (repeatable; the "
                        "first is the default; default: the default adapter)")  # fmt: skip
    parser.add_argument("--host", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default 8000)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from llmrec.serve import ServeConfig
    from llmrec.serve.server import serve

    config = ServeConfig.load(args.config) if args.config else ServeConfig()
    overrides: dict[str, Any] = {
        key: value
        for key, value in (("dataset", args.dataset), ("host", args.host), ("port", args.port),
                           ("adapters", list(args.adapter) if args.adapter else None))
        if value is not None
    }  # fmt: skip
    if overrides:
        config = replace(config, **overrides)
    serve(config)
    return 0
