"""The `llmrec` command line: parse arguments, build configs, call the library. No logic of its own.

Each subcommand lives in its own module here and exposes ``register(subparsers)``, which adds its parser and
sets ``func`` to a callable taking the parsed arguments and returning an exit status.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from llmrec import __version__
from llmrec.errors import LlmrecError

# Subcommand modules, in the order `llmrec --help` lists them.
COMMANDS = ["demo", "fetch", "data", "retrieve", "prompt", "rank", "eval", "train", "serve"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llmrec",
        description="LLM prompt-based reranking for recommendation: retrieve, rerank with an LLM, evaluate.",
    )
    parser.add_argument("--version", action="version", version=f"llmrec {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"llmrec.cli.{name}").register(subparsers)
    return parser


#: Third-party loggers whose records below ERROR only show with ``--verbose``: faiss's loader reports every
#: instruction set it tries; bitsandbytes warns on every import that its optional CPU kernels package is missing
#: (it then uses its plain CPU code: nothing to act on for full-precision or GPU runs).
_CHATTY = ("faiss", "bitsandbytes", "sentence_transformers", "transformers", "accelerate", "peft", "urllib3")


class _QuietThirdParty(logging.Filter):
    """Lets through llmrec's records from INFO up, and other libraries' from WARNING up (chatty ones: ERROR)."""

    def filter(self, record: logging.LogRecord) -> bool:
        name = record.name
        if name == "llmrec" or name.startswith("llmrec."):
            return True
        if any(name == c or name.startswith(c + ".") for c in _CHATTY):
            return record.levelno >= logging.ERROR
        return record.levelno >= logging.WARNING


def _configure_logging(verbose: bool) -> None:
    """stderr logging: llmrec's progress at INFO; with `verbose` everything down to DEBUG."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if verbose:
        return
    # Weight-loading progress bars of transformers / huggingface_hub (a second each); set before they import.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _QuietThirdParty) for f in handler.filters):
            handler.addFilter(_QuietThirdParty())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `llmrec` console script. Bad input exits with status 2 and a one-line message."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(bool(args.verbose))
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except LlmrecError as exc:
        print(f"llmrec {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"llmrec {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
