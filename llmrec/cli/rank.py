"""`llmrec rank DATASET --user ID`: history -> retrieve candidates -> KG + prompt -> LLM -> ranked list."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import warnings
from typing import TYPE_CHECKING, Any

from llmrec.errors import ConfigError, LlmrecWarning, LlmSkippedWarning, OlderCardWarning
from llmrec.models.adapters import DEFAULT_ADAPTERS
from llmrec.models.config import DTYPES, QUANTIZATIONS
from llmrec.prompts import MODES
from llmrec.ranking.config import DEFAULT_TEMPLATES
from llmrec.ranking.order import ORDER_SOURCES
from llmrec.retrieval.factory import DEFAULT_RETRIEVER, RETRIEVER_NAMES

if TYPE_CHECKING:
    from llmrec.data import Dataset

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "rank",
        help="rank candidate items for a user with the LLM",
        description="Rank items for a user of DATASET: retrieve candidates from the user's history, build the "
        "prompt (with knowledge-graph facts), score with the LLM and print the ranked list. DATASET is a known "
        "name (ml-100k), a folder of RecBole atomic files, or an interaction table.",
    )
    parser.add_argument("dataset", metavar="DATASET")
    parser.add_argument("--user", required=True, help="user id")
    parser.add_argument(
        "--mode", choices=MODES, default=None, help="scoring mode (default: the adapter's, else the template's; pointwise with the default adapter)"
    )
    parser.add_argument(
        "--template",
        default=None,
        help="template name or path (default per mode: "
        + ", ".join(f"{m}: {t}" for m, t in DEFAULT_TEMPLATES.items())
        + ")",
    )
    adapter = parser.add_mutually_exclusive_group()
    adapter.add_argument(
        "--adapter",
        default=None,
        metavar="NAME|PATH",
        help="a shipped adapter's name or an adapter folder (default for smollm2: "
        + ", ".join(f"{m}: {a}" for m, a in DEFAULT_ADAPTERS.items())
        + "); without --mode/--template, ranks in the mode and template the adapter was trained with",
    )
    adapter.add_argument("--no-adapter", action="store_true", help="use the bare base model")
    parser.add_argument(
        "--model", default="smollm2", help="smollm2 (asset), a local model folder or a hub id"
    )
    parser.add_argument(
        "--quantization", default="none", choices=QUANTIZATIONS, help="default: none"
    )
    parser.add_argument(
        "--dtype",
        default="auto",
        choices=DTYPES,
        help="weights of unquantised layers (default auto: on a CPU bfloat16 only where a one-time benchmark, cached "
        "in LLMREC_HOME, measures it faster than float32, else float32; LLMREC_MEASURE_DTYPE=0 keeps float32; "
        "bfloat16 on a GPU); bfloat16 scores are read through a float32 output head",
    )
    parser.add_argument(
        "--merge-adapter",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="merge the adapter into the model's weights once loaded (default: yes): about 10%% faster scoring, "
        "same ranking up to float rounding",
    )
    parser.add_argument(
        "-k",
        "--candidates",
        type=int,
        default=20,
        dest="n_candidates",
        help="candidates to retrieve (default 20)",
    )
    parser.add_argument(
        "--items", default="", help="comma-separated candidate ids to rank instead of retrieving"
    )
    parser.add_argument("--top", type=int, default=None, help="print only the best N")
    parser.add_argument(
        "--retriever",
        default=DEFAULT_RETRIEVER,
        choices=RETRIEVER_NAMES,
        help="first stage (default zfusion: sasrec + ease + dense z-scored, weights fit on the dataset's own "
        "validation users; fusion: the same by reciprocal rank)",
    )
    parser.add_argument(
        "--candidate-order",
        default=None,
        choices=list(ORDER_SOURCES),
        help="how candidates are listed in the prompt: as retrieved/given, or best-first by a retriever "
        "(default: the order the adapter was trained with)",
    )
    parser.add_argument(
        "--window", type=int, default=None, help="candidates per prompt (default: the template's maximum)"
    )
    parser.add_argument(
        "--permutations", type=int, default=1, help="position-bias bootstrap orders (default 1: off)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-knowledge", action="store_true", help="do not show KG facts")
    parser.add_argument(
        "--no-fusion",
        action="store_true",
        help="rank by the LLM score alone (default: fused with the first stage when the adapter card has weights)",
    )
    parser.add_argument(
        "--fusion",
        default=None,
        metavar="MEMBER=W,...,llm=W",
        help="fuse with these first-stage retrievers and weights instead of the card's, e.g. zfusion=1,llm=0.5 "
        "(the LLM on top of the default first stage's own score) or sasrec=1,ease=1,llm=0.15",
    )
    parser.add_argument(
        "--force-llm",
        action="store_true",
        help="run the LLM even where the adapter card's fusion gives it weight 0 (by default the LLM is then "
        "skipped and the candidates keep the first stage's order)",
    )
    parser.add_argument(
        "--llm-depth",
        type=int,
        default=None,
        metavar="K",
        help="with score fusion: the LLM scores only the K best candidates of the first-stage members' fusion, "
        "the rest follow in that order (default: the card's setting, else every candidate)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--columns", default="", help="for a table: column mapping (see `llmrec data stats`)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from llmrec.cli.data import load_any

    started = time.perf_counter()
    return rank_loaded(load_any(args.dataset, columns=args.columns), args, started)


def _report(caught: list[warnings.WarningMessage]) -> None:
    """llmrec's own warnings as one stderr line each (with the flags that address them); other libraries'
    warnings from loading the model go to the debug log, once each."""
    seen: set[str] = set()
    for w in caught:
        text = str(w.message)
        if text in seen:
            continue
        seen.add(text)
        if issubclass(w.category, (OlderCardWarning, LlmSkippedWarning)):
            print(f"note: {text}", file=sys.stderr)
        elif issubclass(w.category, LlmrecWarning):
            print(f"warning: {text} (--adapter NAME|PATH, --no-adapter)", file=sys.stderr)
        else:
            log.debug("%s: %s", w.category.__name__, text)


def parse_fusion(spec: str) -> dict[str, Any]:
    """``MEMBER=W,...,llm=W`` (the `--fusion` option) as a score-fusion mapping: members, weights, llm_weight.

    Raises:
        ConfigError: a part is not NAME=NUMBER, a name repeats, or there is no ``llm`` weight or no member.
    """
    members: list[str] = []
    weights: list[float] = []
    llm_weight: float | None = None
    for part in (p.strip() for p in spec.split(",")):
        name, sep, value = (x.strip() for x in part.partition("="))
        try:
            weight = float(value) if sep and name else None
        except ValueError:
            weight = None
        if weight is None:
            raise ConfigError(f"--fusion {spec!r}: {part!r} is not NAME=WEIGHT (e.g. fusion=1,llm=0.5)")
        if name in members or (name == "llm" and llm_weight is not None):
            raise ConfigError(f"--fusion {spec!r}: {name!r} is given twice")
        if name == "llm":
            llm_weight = weight
        else:
            members.append(name)
            weights.append(weight)
    if llm_weight is None or not members:
        raise ConfigError(
            f"--fusion {spec!r} needs at least one first-stage retriever and the LLM's weight (e.g. fusion=1,llm=0.5)"
        )
    return {"members": members, "weights": weights, "llm_weight": llm_weight}


def _fusion_option(args: argparse.Namespace) -> bool | dict[str, Any]:
    """`RerankerConfig.fusion` from --fusion / --no-fusion (default: the card's weights)."""
    if args.fusion is not None and args.no_fusion:
        raise ConfigError("--fusion and --no-fusion exclude each other")
    return parse_fusion(args.fusion) if args.fusion is not None else not args.no_fusion


def rank_loaded(dataset: Dataset, args: argparse.Namespace, started: float) -> int:
    """`run` on an already loaded dataset (`llmrec demo` reuses the one it printed); `started` times the call."""
    from llmrec.models import ModelConfig
    from llmrec.ranking import Reranker, RerankerConfig

    history = [x.item_id for x in dataset.history(args.user)]  # fails early on an unknown user
    if args.no_adapter:
        adapter: str | None = None
    elif args.adapter is not None:
        adapter = args.adapter
    else:
        adapter = "default"
    config = RerankerConfig(
        model=ModelConfig(args.model, quantization=args.quantization, dtype=args.dtype),
        adapter=adapter,
        mode=args.mode,
        template=args.template,
        retriever=args.retriever,
        retriever_opts={"progress": False},  # no fitting bars around the one ranking the user asked for
        n_candidates=args.n_candidates,
        window_size=args.window,
        permutations=args.permutations,
        seed=args.seed,
        knowledge=not args.no_knowledge,
        candidate_order=args.candidate_order,
        fusion=_fusion_option(args),
        llm_depth=args.llm_depth,
        merge_adapter=args.merge_adapter,
        force_llm=args.force_llm,
    )
    loaded = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reranker = Reranker(dataset, config)
    _report(caught)
    ready = time.perf_counter()
    items = [x.strip() for x in args.items.split(",") if x.strip()] or None
    every = reranker.rank(history, items)
    ranked = every.top(args.top) if args.top else every
    if items is None and len(every) < args.n_candidates:
        print(
            f"note: the first stage ({every.candidate_source}) found {len(every)} of the {args.n_candidates} "
            "candidates asked for (the user has seen the rest of what it can rank); ranked those",
            file=sys.stderr,
        )
    if ranked.parse_failures:
        print(
            f"warning: the generated ranking did not name every candidate exactly once in {ranked.parse_failures} "
            f"of {len(ranked.raw_outputs) or ranked.windows} output(s); the candidates it missed follow in their "
            "input order (--json shows the raw output)",
            file=sys.stderr,
        )
    out = ranked.to_dict()
    out = {
        "dataset": dataset.name,
        "user": args.user,
        "history_length": len(history),
        "candidates_ranked": len(every),
        **out,
        "candidate_order": reranker.candidate_order,
        "timings": {
            **{k: round(v, 4) for k, v in ranked.timings.items()},
            "load_data": round(loaded - started, 4),
            "load_model": round(ready - loaded, 4),
            "wall": round(time.perf_counter() - started, 4),
        },
    }
    if args.json:
        print(json.dumps(out))
        return 0
    print(
        f"user {args.user} ({len(history)} interactions), {ranked.mode} / {ranked.template}, "
        f"adapter: {ranked.adapter or 'none'}, candidates: {ranked.candidate_source}, "
        f"shown in {reranker.candidate_order} order"
    )
    if ranked.fusion:
        members = "+".join(ranked.fusion["members"])
        source = "from --fusion" if args.fusion is not None else "fit on validation users"
        print(
            f"scores: the LLM's z-scored per user and fused with {members} (LLM weight "
            f"{ranked.fusion['llm_weight']:g}, {source}; --no-fusion for the LLM alone)"
        )
        depth = ranked.fusion.get("llm_depth")
        if depth is not None and depth < len(every):
            print(f"the LLM scored the {depth} best of the first-stage fusion; the others follow in its order")
    for entry in out["ranked"]:
        item = dataset.item(entry["item_id"])
        print(f"{entry['rank']:>3}. {entry['score']:>9.4f}  {entry['item_id']:>6}  {item.display_name}")
        for fact in entry["facts"][:2]:
            print(f"{'':>24}{fact}")
    t = out["timings"]
    print(
        f"forward passes {ranked.forward_passes}, prompt tokens {ranked.prompt_tokens}, parse failures "
        f"{ranked.parse_failures}; score {t['score']:.2f} s, model load {t['load_model']:.2f} s, wall {t['wall']:.2f} s"
    )
    return 0
