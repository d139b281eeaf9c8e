"""EASE (Steck, 2019): a closed-form linear item-to-item model, one of the strongest classical recommenders.

``B = argmin ||X - XB||² + λ||B||²  s.t. diag(B) = 0`` has the closed form ``P = (XᵀX + λI)⁻¹``,
``B = -P / diag(P)`` (column-wise), ``diag(B) = 0``. A user's scores are ``x_u B`` for their binary history vector.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from llmrec.data.matrix import InteractionMatrix
from llmrec.errors import ConfigError
from llmrec.retrieval.base import CatalogueRetriever
from llmrec.retrieval.popularity import PopularityRetriever

if TYPE_CHECKING:
    from llmrec.data.dataset import Dataset, PositivePolicy

log = logging.getLogger(__name__)

#: Dense n x n float64 matrices EASE holds at its peak (the Gram matrix, its inverse and B).
_DENSE_COPIES = 3


def ease_memory_bytes(n_items: int) -> int:
    """Peak memory of fitting EASE on `n_items` items (dense float64 Gram matrix, inverse and weights)."""
    return _DENSE_COPIES * n_items * n_items * 8


class EaseRetriever(CatalogueRetriever):
    """Scores item j by ``sum_h B[h, j]`` over the items h of the history (each counted once).

    Example:
        >>> ease = EaseRetriever.fit(split.train_dataset, l2=500.0)  # doctest: +SKIP
        >>> ease.retrieve(["172", "181"], k=5)  # doctest: +SKIP
    """

    name = "ease"

    def __init__(
        self,
        item_ids: list[str],
        inverse_gram: np.ndarray,
        popularity: PopularityRetriever,
        *,
        l2: float,
        dataset_name: str = "?",
    ) -> None:
        super().__init__(item_ids, dataset_name, fallback=popularity)
        n = len(self.item_ids)
        if inverse_gram.shape != (n, n):
            raise ValueError(f"inverse_gram has shape {inverse_gram.shape}, expected ({n}, {n})")
        self.l2 = float(l2)
        self.inverse_gram = inverse_gram
        self.weights = _weights_from_inverse(inverse_gram)

    @classmethod
    def fit(
        cls,
        dataset: Dataset,
        *,
        l2: float = 500.0,
        policy: PositivePolicy | None = None,
        max_memory_gb: float = 8.0,
    ) -> EaseRetriever:
        """Fit EASE on every interaction of `dataset` (the positive ones only when `policy` is given).

        Args:
            dataset: the interactions to learn from (a training split in evaluation).
            l2: the ridge penalty λ (ml-100k: 500, the best full-catalogue HR@50 on validation targets and within
                0.002 of the best sampled NDCG@10; larger catalogues want more).
            policy: if given, only positive interactions count.
            max_memory_gb: refuse catalogues whose dense matrices would take more than this.

        Raises:
            ConfigError: `l2` is not positive, or the catalogue is too large for dense matrices.
        """
        if isinstance(l2, bool) or not isinstance(l2, (int, float)) or l2 <= 0:
            raise ConfigError(f"EASE l2 must be a positive number, got {l2!r}")
        n = len(dataset.items)
        need = ease_memory_bytes(n)
        if need > max_memory_gb * 2**30:
            raise ConfigError(
                f"EASE on {n:,} items needs dense {n:,} x {n:,} matrices, about {need / 2**30:.1f} GiB "
                f"(max_memory_gb={max_memory_gb}); use 'als' or 'sasrec' for this catalogue, or raise max_memory_gb"
            )
        interactions = InteractionMatrix.build(dataset, policy)
        gram = np.asarray((interactions.matrix.T @ interactions.matrix).todense(), dtype=np.float64)
        gram[np.diag_indices_from(gram)] += float(l2)
        inverse = np.linalg.inv(gram)
        del gram
        popularity = PopularityRetriever.fit(dataset, policy=policy)
        return cls(
            interactions.item_ids, inverse, popularity, l2=l2, dataset_name=dataset.name
        )

    def _scores(self, history_idx: np.ndarray) -> np.ndarray:
        return self._batch_scores([history_idx])[0]

    def _batch_scores(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        """Each history's row of ``X B``: the sum of B's rows of its (distinct) items, as one sparse product."""
        rows = [np.unique(h) for h in histories]
        indptr = np.concatenate([[0], np.cumsum([len(r) for r in rows])])
        indices = np.concatenate(rows) if rows else np.empty(0, dtype=np.int64)
        x = sp.csr_matrix((np.ones(len(indices)), indices, indptr), shape=(len(rows), len(self.item_ids)))
        return np.asarray(x @ self.weights)

    def _scores_as_new(self, history_idx: np.ndarray, wanted: np.ndarray, own: np.ndarray) -> np.ndarray:
        """Scores of `wanted` from a model fitted without this user's row (Sherman-Morrison downdate).

        The user's fitted row is the binary vector of `own`; removing it from the Gram matrix G gives
        ``(G - x xᵀ + λI)⁻¹ = P + (P x)(P x)ᵀ / (1 - xᵀ P x)``, so no refit is needed.
        """
        history = np.unique(history_idx)
        if len(history) == 0:
            return np.zeros(len(wanted))
        x = np.unique(own)
        px = self.inverse_gram[:, x].sum(axis=1)  # P x for the binary vector x
        denominator = 1.0 - px[x].sum()
        if denominator <= 1e-12:  # numerically singular: keep the fitted model
            return self.weights[history][:, wanted].sum(axis=0)
        columns = self.inverse_gram[:, wanted] + np.outer(px, px[wanted]) / denominator
        diagonal = columns[wanted, np.arange(len(wanted))]
        weights = -columns[history] / diagonal[None, :]
        weights[history[:, None] == wanted[None, :]] = 0.0  # diag(B) = 0
        return weights.sum(axis=0)


def _weights_from_inverse(inverse: np.ndarray) -> np.ndarray:
    weights = -inverse / np.diag(inverse)[None, :]
    weights[np.diag_indices_from(weights)] = 0.0
    return weights
