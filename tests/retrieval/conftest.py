"""Tiny hand-made catalogues for the retrieval tests (no assets needed)."""

from __future__ import annotations

import numpy as np
import pytest

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
