"""The binary user x item matrix that collaborative retrievers (co-occurrence, EASE, ALS) learn from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from llmrec.retrieval.base import catalogue_ids

if TYPE_CHECKING:
    from scipy.sparse import csr_matrix  # type: ignore[import-untyped]

    from llmrec.data.dataset import Dataset, PositivePolicy


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
