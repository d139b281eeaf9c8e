"""Collaborative item-to-item baseline: items that co-occur with the user's recent items in other histories."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from llmrec.data.matrix import InteractionMatrix
from llmrec.errors import ConfigError
from llmrec.retrieval.base import CatalogueRetriever, check_history_options, recency_weights
from llmrec.retrieval.popularity import PopularityRetriever

if TYPE_CHECKING:
    from scipy.sparse import csr_matrix  # type: ignore[import-untyped]

    from llmrec.data.dataset import Dataset, PositivePolicy

NORMALIZATIONS = ("cosine", "count")


class CooccurrenceRetriever(CatalogueRetriever):
    """Scores item j by ``sum_h w_h * sim(h, j)`` over the last `history_len` history items h.

    ``sim`` is the number of users who interacted with both items (``normalization="count"``) or that number
    divided by ``sqrt(n_h * n_j)`` (``"cosine"``, the default, which keeps blockbusters from winning every list).
    ``w_h`` decays with the age of h in the history (newest 1). Items that co-occur with nothing tie at 0 and
    are ordered by popularity; an empty history falls back to popularity.

    Example:
        >>> cooc = CooccurrenceRetriever.fit(split.train_dataset)  # doctest: +SKIP
        >>> cooc.retrieve(["172", "181"], k=5)  # doctest: +SKIP
    """

    name = "cooc"

    def __init__(
        self,
        item_ids: list[str],
        similarity: csr_matrix,
        popularity: PopularityRetriever,
        *,
        history_len: int = 20,
        recency_decay: float = 0.95,
        dataset_name: str = "?",
        counts: csr_matrix | None = None,
        item_users: np.ndarray | None = None,
        normalization: str = "cosine",
    ) -> None:
        super().__init__(item_ids, dataset_name, fallback=popularity)
        check_history_options(history_len, recency_decay)
        n = len(self.item_ids)
        if similarity.shape != (n, n):
            raise ValueError(f"similarity has shape {similarity.shape}, expected ({n}, {n})")
        self.similarity = similarity.tocsr()
        # Raw co-occurrence counts (users sharing both items) and the normalization that made `similarity`:
        # needed to score items as new to a user whose own interactions are in the fitted data.
        self.counts = None if counts is None else counts.tocsr()
        self.item_users = None if item_users is None else np.asarray(item_users, dtype=np.float64)
        self.normalization = normalization
        self.history_len = history_len
        self.recency_decay = float(recency_decay)

    @classmethod
    def fit(
        cls,
        dataset: Dataset,
        *,
        normalization: str = "cosine",
        history_len: int = 20,
        recency_decay: float = 0.95,
        policy: PositivePolicy | None = None,
    ) -> CooccurrenceRetriever:
        """Count, over the users of `dataset`, how often each pair of items shares a history.

        Args:
            dataset: the interactions to learn from (a training split in evaluation).
            normalization: "cosine" or "count".
            history_len: only the user's last `history_len` items query the co-occurrences.
            recency_decay: weight ratio between consecutive history items (1 = all equal).
            policy: if given, only positive interactions count as co-occurrences.
        """
        if normalization not in NORMALIZATIONS:
            raise ConfigError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
        interactions = InteractionMatrix.build(dataset, policy)
        ids = interactions.item_ids
        co = interactions.cooccurrence()
        similarity = co
        item_users = interactions.item_counts
        if normalization == "cosine":
            inv = _inverse_sqrt(item_users)
            similarity = co.multiply(inv[:, None]).multiply(inv[None, :]).tocsr()
        popularity = PopularityRetriever.fit(dataset, policy=policy)
        return cls(
            ids,
            similarity,
            popularity,
            history_len=history_len,
            recency_decay=recency_decay,
            dataset_name=dataset.name,
            counts=co,
            item_users=item_users,
            normalization=normalization,
        )

    def _scores(self, history_idx: np.ndarray) -> np.ndarray:
        recent = history_idx[-self.history_len :]
        if len(recent) == 0:
            return np.zeros(len(self.item_ids))
        weights = recency_weights(len(recent), self.recency_decay)
        # Repeated items add up their weights: sum_h w_h * S[h, :] as one sparse-vector product.
        return np.asarray(self.similarity[recent].T @ weights).ravel()

    def _scores_as_new(self, history_idx: np.ndarray, wanted: np.ndarray, own: np.ndarray) -> np.ndarray:
        """`_scores` restricted to `wanted`, with the user's interactions with the wanted items removed from the
        counts: a pair (h, j) loses the user's co-occurrence when the user has both, and j loses one user."""
        if self.counts is None or self.item_users is None:
            raise ConfigError("this co-occurrence retriever was built without its counts; refit it with fit()")
        recent = history_idx[-self.history_len :]
        if len(recent) == 0:
            return np.zeros(len(wanted))
        weights = recency_weights(len(recent), self.recency_decay)
        mine = np.zeros(len(self.item_ids), dtype=bool)
        mine[own] = True
        co = np.asarray(self.counts[recent][:, wanted].todense(), dtype=np.float64)
        co -= np.outer(mine[recent], mine[wanted])  # the user's own co-occurrence with an item they have
        if self.normalization == "cosine":
            n_wanted = self.item_users[wanted] - mine[wanted]
            co *= _inverse_sqrt(self.item_users[recent])[:, None] * _inverse_sqrt(n_wanted)[None, :]
        return np.asarray(weights @ np.clip(co, 0.0, None)).ravel()


def _inverse_sqrt(counts: np.ndarray) -> np.ndarray:
    """1/sqrt(n) where n > 0, else 0."""
    out = np.zeros(len(counts), dtype=np.float64)
    positive = counts > 0
    out[positive] = 1.0 / np.sqrt(counts[positive])
    return out
