"""Tiny hand-made catalogues for the retrieval tests (no assets needed)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from numerics import assert_same_ranking

from llmrec.data.dataset import Dataset
from llmrec.types import Interaction, Item, User

# user -> items in time order
HISTORIES = {
    "u1": ["a", "b", "c"],
    "u2": ["b", "c", "d"],
    "u3": ["c", "d", "e"],
    "u4": ["a", "c"],
    "u5": ["f", "g"],
    "u6": ["b"],
}
ITEM_IDS = ["a", "b", "c", "d", "e", "f", "g", "h"]


def make_dataset(histories: dict[str, list[str]] = HISTORIES, item_ids: list[str] = ITEM_IDS) -> Dataset:
    items = {
        i: Item(i, f"Title {i}", 1990 + n, ("Drama",) if n % 2 else ("Comedy",))
        for n, i in enumerate(item_ids)
    }
    interactions = [
        Interaction(user, item, float(t), 5.0)
        for user, seq in histories.items()
        for t, item in enumerate(seq)
    ]
    users = {u: User(u) for u in histories} | {"u_new": User("u_new")}
    return Dataset("tiny", items, interactions, users=users)


@pytest.fixture
def tiny() -> Dataset:
    return make_dataset()


@pytest.fixture
def unit_vectors() -> np.ndarray:
    """Random unit vectors, one per catalogue item (dim 16, seed fixed)."""
    rng = np.random.default_rng(7)
    v = rng.normal(size=(len(ITEM_IDS), 16)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def assert_same_top_k(
    ids: Sequence[str], scores: Sequence[float], ref_ids: Sequence[str], ref_scores: Sequence[float], *, tol: float
) -> None:
    """Two best-first top-k lists of one scoring, computed in other batchings or kernels (each score within `tol`).

    What that guarantees, and so what is asserted: the n-th best scores agree within `tol`; items in both lists
    order the same way where their reference scores are more than `tol` apart (`assert_same_ranking`); an item in
    only one list is a near-tie at the cut, within ``2 * tol`` of that list's last score.
    """
    assert len(ids) == len(ref_ids)
    np.testing.assert_allclose(scores, ref_scores, rtol=0, atol=tol)
    common = set(ids) & set(ref_ids)
    got = [(i, s) for i, s in zip(ids, scores, strict=True) if i in common]
    ref = [(i, s) for i, s in zip(ref_ids, ref_scores, strict=True) if i in common]
    assert_same_ranking([i for i, _ in got], [s for _, s in got], [i for i, _ in ref], [s for _, s in ref], tol=tol)
    for these, their_scores in ((ids, scores), (ref_ids, ref_scores)):
        for item, score in zip(these, their_scores, strict=True):
            if item not in common:
                assert abs(score - their_scores[-1]) <= 2 * tol, f"{item} (score {score}) is not a tie at the cut"
