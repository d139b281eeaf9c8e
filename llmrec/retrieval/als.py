"""ALS matrix factorisation for implicit feedback (Hu, Koren & Volinsky, 2008), fitted by the `implicit` library.

The model is fitted once on the training users; a history (any user, also one unseen in training) is folded in by
solving for its user factors against the fixed item factors (`implicit`'s ``recalculate_user``), so the scores
always reflect the history given, including items after the training cut.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

import numpy as np

from llmrec.data.matrix import InteractionMatrix
from llmrec.errors import ConfigError
from llmrec.retrieval.base import CatalogueRetriever
from llmrec.retrieval.popularity import PopularityRetriever

if TYPE_CHECKING:
    from llmrec.data.dataset import Dataset, PositivePolicy

log = logging.getLogger(__name__)


class AlsRetriever(CatalogueRetriever):
    """Scores item j by ``u · v_j`` with the history's folded-in factors ``u``.

    Example:
        >>> als = AlsRetriever.fit(split.train_dataset, factors=16)  # doctest: +SKIP
        >>> als.retrieve(["172", "181"], k=5)  # doctest: +SKIP
    """

    name = "als"

    def __init__(self, item_ids: list[str], model: Any, popularity: PopularityRetriever, dataset_name: str = "?"):
        super().__init__(item_ids, dataset_name, fallback=popularity)
        self.model = model
        self.item_factors = np.asarray(model.item_factors, dtype=np.float64)

    @classmethod
    def fit(
        cls,
        dataset: Dataset,
        *,
        factors: int = 32,
        regularization: float = 10.0,
        alpha: float = 1.0,
        iterations: int = 15,
        seed: int = 0,
        policy: PositivePolicy | None = None,
    ) -> AlsRetriever:
        """Fit ALS on every interaction of `dataset` (the positive ones only when `policy` is given).

        Args:
            factors: latent dimensions (32 with regularization 10: the best of a small grid on ml-100k
                validation targets).
            regularization: L2 penalty on the factors.
            alpha: confidence of an observed interaction (``c = alpha``, implicit's convention).
            iterations: ALS sweeps.
            seed: random initialisation of the factors.

        Raises:
            ConfigError: a non-positive option.
        """
        for key, value in (("factors", factors), ("iterations", iterations)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"ALS {key} must be a positive integer, got {value!r}")
        for key, number in (("regularization", regularization), ("alpha", alpha)):
            if isinstance(number, bool) or not isinstance(number, (int, float)) or number <= 0:
                raise ConfigError(f"ALS {key} must be a positive number, got {number!r}")
        from implicit.cpu.als import AlternatingLeastSquares  # type: ignore[import-untyped]

        interactions = InteractionMatrix.build(dataset, policy)
        model = AlternatingLeastSquares(
            factors=factors,
            regularization=float(regularization),
            alpha=float(alpha),
            iterations=iterations,
            random_state=seed,
            num_threads=int(os.environ.get("OMP_NUM_THREADS", "0") or 0),
        )
        model.fit(interactions.matrix.astype(np.float32), show_progress=False)
        popularity = PopularityRetriever.fit(dataset, policy=policy)
        return cls(interactions.item_ids, model, popularity, dataset.name)

    def user_factors(self, history_idx: np.ndarray) -> np.ndarray:
        """The folded-in factors of a user with these items (each counted once)."""
        from scipy.sparse import csr_matrix  # type: ignore[import-untyped]

        items = np.unique(history_idx)
        row = csr_matrix(
            (np.ones(len(items), dtype=np.float32), (np.zeros(len(items), dtype=np.int64), items)),
            shape=(1, len(self.item_ids)),
        )
        return np.asarray(self.model.recalculate_user(0, row), dtype=np.float64)

    def _scores(self, history_idx: np.ndarray) -> np.ndarray:
        if len(history_idx) == 0:
            return np.zeros(len(self.item_ids))
        return self.item_factors @ self.user_factors(history_idx)

    def _scores_as_new(self, history_idx: np.ndarray, wanted: np.ndarray, own: np.ndarray) -> np.ndarray:
        """Not available: a fitted ALS model cannot forget one user's interactions without a refit, so scoring a
        training target as new would leak it; cooc, popularity and ease can (use one of them)."""
        from llmrec.errors import ConfigError

        raise ConfigError(
            "als cannot score items as new to a user whose interactions it was fitted on (a training "
            "target would leak); order or score training candidates with cooc, popularity or ease instead"
        )

