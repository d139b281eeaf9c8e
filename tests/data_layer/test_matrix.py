"""The user x item matrix and item co-occurrence that retrieval and knowledge both build from `llmrec.data`."""

from __future__ import annotations

import numpy as np

from llmrec.data import Dataset, InteractionMatrix, PositivePolicy
from llmrec.types import Interaction, Item

# user -> (item, rating); "zz" is outside the catalogue, u1 has "a" twice
RATINGS = {
    "u2": [("b", 5), ("c", 2)],
    "u1": [("a", 5), ("b", 4), ("a", 3), ("zz", 5)],
    "u3": [("a", 1), ("c", 5)],
}


def _dataset() -> Dataset:
    items = {i: Item(i, f"Film {i}", 1990) for i in "abcd"}
    inter = [Interaction(u, i, float(t), float(r)) for u, rs in RATINGS.items() for t, (i, r) in enumerate(rs)]
    return Dataset("m", items, inter)


def test_rows_are_users_columns_the_catalogue_and_a_repeat_counts_once():
    built = InteractionMatrix.build(_dataset())
    assert built.item_ids == ["a", "b", "c", "d"]
    dense = built.matrix.toarray()
    rows = {user: dense[n] for n, user in enumerate(built.user_ids)}
    assert set(rows) == {"u1", "u2", "u3"}
    np.testing.assert_array_equal(rows["u1"], [1, 1, 0, 0])  # "a" twice is 1; "zz" is skipped
    np.testing.assert_array_equal(rows["u2"], [0, 1, 1, 0])
    np.testing.assert_array_equal(built.item_counts, [2, 2, 2, 0])


def test_a_policy_keeps_the_positive_interactions_only():
    liked = InteractionMatrix.build(_dataset(), PositivePolicy(4.0))
    np.testing.assert_array_equal(liked.item_counts, [1, 2, 1, 0])  # u1 a (5), u1 b and u2 b, u3 c


def test_cooccurrence_counts_users_sharing_two_items_with_an_empty_diagonal():
    built = InteractionMatrix.build(_dataset())
    x = built.matrix.toarray()
    expected = x.T @ x
    np.fill_diagonal(expected, 0.0)
    co = built.cooccurrence()
    np.testing.assert_array_equal(co.toarray(), expected)
    assert co.diagonal().sum() == 0 and np.all(co.data != 0)  # zeros are not stored


def test_an_empty_dataset_gives_one_empty_row():
    items = {"a": Item("a", "A", 1990)}
    built = InteractionMatrix.build(Dataset("e", items, []))
    assert built.matrix.shape == (1, 1) and built.user_ids == [] and built.cooccurrence().nnz == 0
