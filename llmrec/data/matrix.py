"""The binary user x item matrix and the item co-occurrence counts it gives, built once for every layer above.

Collaborative retrievers (co-occurrence, EASE, ALS) learn from the matrix; the knowledge layer's collaborative
evidence reads its like counts and co-like counts. Both build it here, so both count the same way.

Example:
    >>> interactions = InteractionMatrix.build(split.train_dataset, PositivePolicy(4.0))  # doctest: +SKIP
    >>> interactions.item_counts, interactions.cooccurrence()  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from scipy.sparse import csr_matrix  # type: ignore[import-untyped]

    from llmrec.data.dataset import Dataset, PositivePolicy


def catalogue_ids(dataset: Dataset) -> list[str]:
    """The dataset's item ids in catalogue order (the order of ``dataset.items``)."""
    return list(dataset.items)


@dataclass(frozen=True)
class InteractionMatrix:
    """Rows are users (in first-seen order), columns catalogue items (``dataset.items`` order), entries 1.

    A user who interacted with an item twice counts once. Interactions with items outside the catalogue are
    skipped, as are non-positive ones when a policy was given.
    """

    item_ids: list[str]
    user_ids: list[str]
    matrix: csr_matrix

    @classmethod
    def build(cls, dataset: Dataset, policy: PositivePolicy | None = None) -> InteractionMatrix:
        """The matrix of `dataset`'s interactions (only those `policy` calls positive, when given)."""
        from scipy.sparse import coo_matrix

        ids = catalogue_ids(dataset)
        position = {item: n for n, item in enumerate(ids)}
        users: dict[str, int] = {}
        rows: list[int] = []
        cols: list[int] = []
        for x in dataset.interactions:
            col = position.get(x.item_id)
            if col is None or (policy is not None and not policy.is_positive(x)):
                continue
            rows.append(users.setdefault(x.user_id, len(users)))
            cols.append(col)
        data = np.ones(len(rows), dtype=np.float64)
        matrix = coo_matrix((data, (rows, cols)), shape=(max(len(users), 1), len(ids))).tocsr()
        matrix.data[:] = 1.0
        return cls(ids, list(users), matrix)

    @property
    def item_counts(self) -> np.ndarray:
        """Users per item."""
        return np.asarray(self.matrix.sum(axis=0)).ravel()

    def cooccurrence(self) -> csr_matrix:
        """Item x item counts of the users who have both items (sparse; the diagonal is 0 and not stored)."""
        co = (self.matrix.T @ self.matrix).tocsr()
        co.setdiag(0.0)
        co.eliminate_zeros()
        return co
