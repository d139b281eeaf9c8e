"""`llmrec prompt DATASET --user ID`: print exactly what the model sees for a user's retrieved candidates."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from llmrec.errors import ConfigError
from llmrec.prompts.settings import PromptSettings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "prompt",
        help="print the rendered prompt for a user",
        description="Retrieve candidates for a user of DATASET and print the fully rendered prompt(s) the model "
        "would see (chat template applied for chat models), with token counts, KG facts and what was truncated. "
        "DATASET is a known name (ml-100k), a folder of RecBole atomic files, or an interaction table.",
    )
    parser.add_argument("dataset", metavar="DATASET")
    parser.add_argument("--user", required=True, help="user id")
    parser.add_argument(
        "--template", default="listwise_kg", help="template name or .jinja path (default listwise_kg)"
    )
    parser.add_argument(
        "--template-dir",
        action="append",
        default=[],
        metavar="DIR",
        help="a folder of your own *.jinja templates, searched before the shipped ones (prompts/) "
        "(repeatable; a file there wins over a shipped template of the same name)",
    )
    parser.add_argument(
        "--candidates", type=int, default=10, metavar="K", help="candidates to show (default 10)"
    )
    parser.add_argument(
        "--candidate-ids",
        default="",
        metavar="IDS",
        help="comma-separated candidate item ids (skips retrieval)",
    )
    parser.add_argument(
        "--retriever", default="dense", help="dense, popularity, cooc or fusion (default dense, MiniLM)"
    )
    parser.add_argument(
        "--model",
        default="smollm2",
        help="whose tokenizer to use: smollm2 (asset), a local folder or a hub id",
    )
    parser.add_argument(
        "--plain", action="store_true", help="plain text even if the tokenizer has a chat template"
    )
    defaults = PromptSettings()
    for name, metavar in (("history_budget", "TOKENS"), ("fact_budget", "TOKENS"), ("facts_per_candidate", "N")):
        default = getattr(defaults, name)
        parser.add_argument(
            "--" + name.replace("_", "-"), type=int, default=default, metavar=metavar, help=f"default {default}"
        )
    parser.add_argument("--ratings", action="store_true", help="show the user's ratings in the history")
    parser.add_argument("--no-kg", action="store_true", help="do not use the knowledge graph")
    kg = parser.add_argument_group("extra knowledge source (fused into the dataset's KG)")
    kg.add_argument("--kg-triples", metavar="FILE", help="head<TAB>relation<TAB>tail file")
    kg.add_argument(
        "--kg-links", metavar="FILE", help="item_id<TAB>entity_id file aligning it to the dataset"
    )
    kg.add_argument("--kg-names", metavar="FILE", help="entity_id<TAB>name file")
    kg.add_argument(
        "--on-misaligned",
        default="warn",
        choices=["warn", "drop", "error", "ignore"],
        help="when the dataset's own item->entity links look misaligned (ml-100k's do): warn and keep them "
        "(default), drop the dataset's KG (metadata and --kg-* facts stay), fail, or skip the check",
    )
    parser.add_argument("--columns", default="", help="for a table: column mapping (see `llmrec data stats`)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def load_tokenizer(name_or_path: str) -> Any:
    """Only the tokenizer of a model (an asset name, a local folder or a hub id): fast, no weights."""
    from transformers import AutoTokenizer

    from llmrec.errors import AssetError
    from llmrec.models.loading import resolve_model_path

    path = resolve_model_path(name_or_path)
    try:
        return AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise AssetError(f"cannot load a tokenizer from {name_or_path!r}: {exc}") from exc


def _candidates(args: argparse.Namespace, dataset: Any) -> tuple[list[str], str]:
    from llmrec.retrieval import build_retriever, check_k, retrieve_for_user
    from llmrec.retrieval.user import user_history

    user_history(dataset, args.user)  # a bad user fails before any index build
    if args.candidate_ids:
        ids = [x.strip() for x in args.candidate_ids.split(",") if x.strip()]
        dataset.check_items(ids)
        return ids, "given"
    check_k(args.candidates, len(dataset.items))
    retriever = build_retriever(args.retriever, dataset)
    result = retrieve_for_user(retriever, dataset, args.user, args.candidates)
    return [c.item_id for c in result.candidates], retriever.name


def run(args: argparse.Namespace) -> int:
    from llmrec.cli.data import load_any
    from llmrec.knowledge import KnowledgeGraph, KnowledgeSource
    from llmrec.prompts import load_template, make_builder

    started = time.perf_counter()
    if args.candidates < 1:
        raise ConfigError(f"--candidates must be >= 1, got {args.candidates}")
    template = load_template(
        Path(args.template) if args.template.endswith(".jinja") else args.template, args.template_dir
    )
    if template.max_candidates is not None and args.candidates > template.max_candidates:
        raise ConfigError(
            f"template {template.name!r} shows at most {template.max_candidates} candidates, "
            f"--candidates is {args.candidates}"
        )
    if (args.kg_links or args.kg_names) and not args.kg_triples:
        raise ConfigError("--kg-links / --kg-names need --kg-triples")
    dataset = load_any(args.dataset, columns=args.columns)
    history = list(dataset.history(args.user)) if args.user in dataset.user_ids else []
    knowledge = None
    if not args.no_kg:
        extra = (
            [KnowledgeSource("user", args.kg_triples, links=args.kg_links, names=args.kg_names)]
            if args.kg_triples
            else []
        )
        knowledge = KnowledgeGraph.from_dataset(dataset, extra, on_misaligned=args.on_misaligned)
    # Cheap checks first (KG files, tokenizer, labels), then the possibly slow retrieval.
    settings = PromptSettings(
        history_budget=args.history_budget,
        fact_budget=args.fact_budget,
        facts_per_candidate=args.facts_per_candidate,
        show_ratings=args.ratings,
    )
    builder = make_builder(
        dataset,
        load_tokenizer(args.model),
        template,
        settings,
        knowledge=knowledge,
        triples=knowledge is not None,
        chat=False if args.plain else None,
    )
    candidates, source = _candidates(args, dataset)
    prompts = builder.build(history, candidates)
    seconds = time.perf_counter() - started
    if args.json:
        out = {
            "dataset": dataset.name,
            "user": str(args.user),
            "template": template.name,
            "mode": template.mode,
            "candidate_source": source,
            "seconds": round(seconds, 3),
            "prompts": [
                {
                    "text": p.text,
                    "n_tokens": p.n_tokens,
                    "candidate_ids": list(p.candidate_ids),
                    "labels": list(p.labels),
                    "answer_tokens": list(p.answer_tokens),
                    "answer_token_ids": list(p.answer_token_ids),
                    "facts": {k: list(v) for k, v in p.facts.items()},
                    "metadata": dict(p.metadata),
                }
                for p in prompts
            ],
        }
        print(json.dumps(out, ensure_ascii=False))
        return 0
    for n, p in enumerate(prompts, start=1):
        if len(prompts) > 1:
            print(f"===== prompt {n}/{len(prompts)}: candidate {p.candidate_ids[0]} =====")
        print(p.text, end="" if p.text.endswith("\n") else "\n")
        meta = p.metadata
        truncated = f", {meta['history_omitted']} older not shown" if meta["history_truncated"] else ""
        print(
            f"----- {p.n_tokens} tokens | template {template.name} ({template.mode}) | "
            f"history {meta['history_shown']}/{meta['history_total']}{truncated} ({meta['history_tokens']} tokens) | "
            f"facts {sum(len(v) for v in p.facts.values())} ({meta.get('fact_tokens', 0)} tokens) | "
            f"answer tokens {', '.join(p.answer_tokens)} -----"
        )
    print(f"candidates from {source}; {seconds:.2f} s")
    return 0
