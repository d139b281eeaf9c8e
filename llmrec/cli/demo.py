"""`llmrec demo`: the default pipeline on ml-100k for one user, each stage shown (what `make run` runs).

It prints the data and the user's latest interactions, fits (first run) or loads the default first stage and says
how its weights were chosen, ranks the user's candidates with the default `Reranker`, and shows the first stage's
list beside the reranked one: what the LLM moved, the facts it was shown about the items it moved, the effect of
the rerank measured on validation users (from the adapter's card), and the time of each stage. Where the card
gives the LLM no weight (the default `Reranker` then keeps the first stage's order), the right column is the LLM's
own ranking of the same candidates, labelled as such.
"""

from __future__ import annotations

import argparse
import time
import warnings
from typing import Any

from llmrec.data import load_dataset

DEMO_USER = "196"
#: Items of the lists shown side by side.
SHOWN = 10


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="the default pipeline on ml-100k for one user, stage by stage (what `make run` runs)",
        description="Fetch ml-100k, SmolLM2 and MiniLM (first run only), fit the default first stage on ml-100k "
        "(first run only, then cached), and rank a sample user's candidates with the default Reranker: the first "
        "stage's list beside the reranked list, what the LLM moved and why, and the time of each stage.",
    )
    parser.add_argument("--user", default=DEMO_USER, help=f"user to rank for (default {DEMO_USER})")
    parser.add_argument(
        "--mode", default=None, choices=["listwise", "pointwise", "generative"], help="default: the Reranker's"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from llmrec.ranking import Reranker, RerankerConfig
    from llmrec.retrieval import DEFAULT_RETRIEVER, build_retriever

    clock = _Clock()
    ds = load_dataset("ml-100k")
    stats = ds.stats()
    history = [x.item_id for x in ds.history(args.user)]  # fails early on an unknown user
    print(
        f"ml-100k: {stats['users']} users, {stats['items']} items, {stats['interactions']} interactions, "
        f"{stats['kg_triples']} KG triples ({clock.lap('data')})"
    )
    print(f"user {args.user}: {len(history)} interactions; the latest five:")
    for item_id in history[-5:]:
        print(f"    {ds.item(item_id).display_name}")

    print(f"\nfirst stage: {DEFAULT_RETRIEVER} (fit on ml-100k on the first run, then cached)")
    first_stage = build_retriever(DEFAULT_RETRIEVER, ds, progress=True)
    describe = getattr(first_stage, "describe", lambda: first_stage.name)
    print(f"  {describe()} ({clock.lap('first stage')})")

    config = RerankerConfig(mode=args.mode, retriever_opts={"progress": False})
    candidates = first_stage.retrieve(history, k=config.n_candidates)
    clock.lap("retrieve")
    with warnings.catch_warnings(record=True):  # what it warns about is printed below, from the reranker
        warnings.simplefilter("always")
        reranker = Reranker(ds, config, retriever=first_stage)
    clock.lap("model load" if reranker.llm_skipped is None else "reranker")
    ranked = reranker.rank(history, candidates)
    clock.lap("rerank")
    print(f"\nreranker: {reranker.mode}, adapter {reranker.adapter_name}")
    if reranker.lm is not None:
        print(f"  weights: {reranker.lm.dtype_reason}")
    print(f"  validation: {_validation_effect(reranker)}")
    right, right_title = ranked, "reranked (the default)"
    if reranker.llm_skipped is not None:
        print("  so the default Reranker keeps the first stage's order and does not run the LLM;")
        print("  the right column is the LLM's own ranking of the same candidates, for a look at what it does")
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always")
            llm = Reranker(ds, RerankerConfig(mode=args.mode, fusion=False, force_llm=True), retriever=first_stage)
        clock.lap("model load")
        print(f"  weights: {llm.lm.dtype_reason}" if llm.lm is not None else "")
        right, right_title = llm.rank(history, list(ranked.item_ids)), "the LLM alone (not the default)"
        clock.lap("LLM")
    _side_by_side(ds, [c.item_id for c in candidates], right, right_title)
    print(f"\ntimes: {clock.summary()}; LLM: {right.forward_passes} forward passes, {right.prompt_tokens} prompt tokens")
    return 0


def _validation_effect(reranker: Any) -> str:
    """What the adapter's card says the rerank does on validation users (its fusion fit)."""
    fusion = reranker.fusion
    if fusion is None:
        return "the adapter's card holds no fusion fit, so there is no validation-measured effect to show"
    fitted, cv = fusion.fitted, fusion.fitted.get("cv") or {}
    line = f"LLM weight {fusion.llm_weight:g} in its fusion with {'+'.join(fusion.members)}"
    if "llm_gain" in cv:
        low, high = cv["llm_gain_ci95"]
        line += (
            f"; on {fitted.get('users')} validation users the LLM changes held-out NDCG@10 by {cv['llm_gain']:+.4f} "
            f"(95% CI [{low:+.4f}, {high:+.4f}])"
        )
    return line


def _side_by_side(ds: Any, left: list[str], right: Any, right_title: str) -> None:
    """The two lists' first `SHOWN` items in columns, each right item with how far it moved, then the facts shown
    to the LLM about the items it lifted most."""
    before = {item: n for n, item in enumerate(left)}
    width = 46
    print(f"\n{'':>4}{'first stage':<{width}}  {right_title}")
    for n in range(min(SHOWN, len(left), len(right))):
        item = right.item_ids[n]
        moved = before[item] - n
        arrow = f"up {moved}" if moved > 0 else f"down {-moved}" if moved < 0 else "="
        print(f"{n + 1:>3} {_title(ds, left[n], width):<{width}}  {_title(ds, item, width)} ({arrow})")
    lifted = sorted(right.item_ids[:SHOWN], key=lambda i: right.item_ids.index(i) - before[i])[:3]
    lifted = [i for i in lifted if before[i] > right.item_ids.index(i) and right.facts.get(i)]
    if lifted:
        print("\nwhy: what the LLM was shown about the items it lifted most")
        for item in lifted:
            print(f"  {ds.item(item).display_name}")
            for fact in right.facts[item][:3]:
                print(f"      {fact}")


def _title(ds: Any, item_id: str, width: int) -> str:
    name = ds.item(item_id).display_name
    return name if len(name) <= width else name[: width - 1] + "…"


class _Clock:
    """Seconds per named stage, in order."""

    def __init__(self) -> None:
        self.started = self.last = time.perf_counter()
        self.stages: list[tuple[str, float]] = []

    def lap(self, stage: str) -> str:
        now = time.perf_counter()
        self.stages.append((stage, now - self.last))
        self.last = now
        return f"{self.stages[-1][1]:.1f} s"

    def summary(self) -> str:
        parts = [f"{stage} {seconds:.1f} s" for stage, seconds in self.stages]
        return ", ".join(parts) + f"; total {time.perf_counter() - self.started:.1f} s"
