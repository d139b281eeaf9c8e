"""Popularity baseline: the most interacted items the user has not seen yet."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from llmrec.data.matrix import catalogue_ids
from llmrec.retrieval.base import CatalogueRetriever

if TYPE_CHECKING:
    from llmrec.data.dataset import Dataset, PositivePolicy


class PopularityRetriever(CatalogueRetriever):
    """Scores every item by its number of interactions in the data it was fitted on; the history only excludes.

    Example:
        >>> pop = PopularityRetriever.fit(split.train_dataset)  # doctest: +SKIP
        >>> [c.item_id for c in pop.retrieve(history=["50"], k=3)]  # doctest: +SKIP
        ['100', '181', '258']
    """

    name = "popularity"

    def __init__(self, item_ids: list[str], counts: np.ndarray, dataset_name: str = "?") -> None:
        super().__init__(item_ids, dataset_name)
        self.counts = np.asarray(counts, dtype=np.float64)
        if self.counts.shape != (len(self.item_ids),):
            raise ValueError(f"counts has shape {self.counts.shape}, expected ({len(self.item_ids)},)")

    @classmethod
    def fit(cls, dataset: Dataset, *, policy: PositivePolicy | None = None) -> PopularityRetriever:
        """Count interactions per catalogue item (only the positive ones when `policy` is given)."""
        ids = catalogue_ids(dataset)
        if policy is None:
            counted = dataset.item_popularity
        else:
            counted = {}
            for x in dataset.interactions:
                if policy.is_positive(x):
                    counted[x.item_id] = counted.get(x.item_id, 0) + 1
        counts = np.asarray([counted.get(i, 0) for i in ids], dtype=np.float64)
        return cls(ids, counts, dataset.name)

    def _scores(self, history_idx: np.ndarray) -> np.ndarray:
        return self.counts

    def _scores_as_new(self, history_idx: np.ndarray, wanted: np.ndarray, own: np.ndarray) -> np.ndarray:
        """Counts of `wanted` without the user's own interaction with each (one per item they have)."""
        mine = np.zeros(len(self.item_ids), dtype=np.float64)
        mine[own] = 1.0
        return np.clip(self.counts[wanted] - mine[wanted], 0.0, None)
