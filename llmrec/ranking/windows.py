"""Ranking more candidates than one prompt can label: RankGPT-style sliding windows, and position-bias bootstrap.

Sliding windows: walk a window of `window` candidates from the back of the list to the front, `step` at a time;
each window is scored in one prompt and re-ordered in place, so strong candidates bubble towards the front.

Bootstrap (LLMRank): score the candidates in several seeded orders and average the scores, so the position a
candidate happens to be shown at matters less.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from llmrec.errors import ConfigError


def window_spans(n: int, window: int, step: int) -> list[tuple[int, int]]:
    """The (start, end) spans a back-to-front sliding window visits, in visiting order.

    Example:
        >>> window_spans(30, 20, 10)
        [(10, 30), (0, 20)]
    """
    if window < 1 or step < 1:
        raise ConfigError(f"window ({window}) and step ({step}) must be >= 1")
    if step >= window and n > window:
        raise ConfigError(
            f"window step {step} must be smaller than the window {window}: windows must overlap to carry the best "
            "candidates forward"
        )
    spans = []
    end = n
    while True:
        start = max(0, end - window)
        spans.append((start, end))
        if start == 0:
            return spans
        end -= step


def sliding_window_order(
    items: Sequence[str], window: int, step: int, rank_window: Callable[[list[str]], list[str]]
) -> tuple[list[str], int]:
    """Order `items` with back-to-front sliding windows.

    Args:
        items: the candidates in their initial (e.g. retriever) order.
        window: most candidates per prompt; step: how far the window moves.
        rank_window: orders one window's candidates, best first (must return a permutation of its input).

    Returns:
        (the final order, the number of windows scored).
    """
    order = list(items)
    spans = window_spans(len(order), window, step)
    for start, end in spans:
        segment = order[start:end]
        ranked = rank_window(segment)
        if sorted(ranked) != sorted(segment):
            raise RuntimeError("rank_window must return a permutation of the window it was given")
        order[start:end] = ranked
    return order, len(spans)


def permutations(n: int, count: int, seed: int) -> list[list[int]]:
    """`count` orders of ``range(n)``: the identity first, then seeded shuffles (deterministic per seed)."""
    if count < 1:
        raise ConfigError(f"permutations must be >= 1, got {count}")
    rng = np.random.default_rng(seed)
    orders = [list(range(n))]
    for _ in range(count - 1):
        orders.append([int(i) for i in rng.permutation(n)])
    return orders


def aggregate(per_order: Sequence[dict[str, float]]) -> dict[str, float]:
    """Mean score per candidate over the orders (every order scores every candidate)."""
    keys = list(per_order[0])
    for scores in per_order[1:]:
        if set(scores) != set(keys):
            raise RuntimeError("every bootstrap order must score the same candidates")
    return {k: float(np.mean([scores[k] for scores in per_order])) for k in keys}
