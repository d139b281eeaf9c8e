"""The order candidates are shown in: as given, or by a first-stage retriever's scores (LlamaRec style).

A listwise prompt that lists candidates best-first by a collaborative retriever gives the model the retriever's
opinion for free (position) and lets the tuned model correct it from content; an adapter trained this way
records the order in its card, and `Reranker` shows candidates in the same order at ranking time.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from llmrec.errors import ConfigError
from llmrec.retrieval.factory import retriever_names

GIVEN = "given"
#: Retrievers a candidate order may come from: their scores can leave out a user's own interactions.
ORDER_SOURCES = (GIVEN, *retriever_names(orders_candidates=True))


def check_candidate_order(value: object, where: str) -> str:
    """`value` if it names a known candidate order, else a `ConfigError` naming `where`."""
    if value not in ORDER_SOURCES:
        raise ConfigError(f"{where} must be one of {', '.join(ORDER_SOURCES)}, got {value!r}")
    return str(value)


def order_candidates(
    retriever: Any,
    history: Sequence[str],
    candidates: Sequence[str],
    *,
    user_items: Collection[str] = (),
) -> list[str]:
    """`candidates` sorted best-first by `retriever.score` (ties: its popularity fallback, then the given order).

    Args:
        retriever: a fitted `CatalogueRetriever` (cooc, popularity or dense), or None to keep the given order.
        history: the user's item ids, oldest first.
        candidates: the ids to order.
        user_items: the user's items in the retriever's data; their interactions with the candidates are left
            out of the scores (training examples, whose target is in that data, need this to look like test
            cases; see `CatalogueRetriever.score`).
    """
    if retriever is None:
        return list(candidates)
    scores = retriever.score(list(history), list(candidates), user_items=user_items)
    fallback = getattr(retriever, "fallback", None)
    ties = (
        fallback.score([], list(candidates), user_items=user_items)
        if fallback is not None
        else [0.0] * len(candidates)
    )
    position = {c: n for n, c in enumerate(candidates)}
    keyed = {c: (-s, -t, position[c]) for c, s, t in zip(candidates, scores, ties)}
    return sorted(candidates, key=keyed.__getitem__)
