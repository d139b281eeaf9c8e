"""Statistics of per-user values: the mean with its standard error, seeded (paired) bootstrap intervals, and the
per-user z-score that score fusions put scores of different scales on.

The one owner of these methods for the evaluation reports (`llmrec.evaluation.significance`, `summary`), the
score-fusion fit's cross-validated LLM gain (`llmrec.ranking.fusion`) and training validation
(`llmrec.training.trainer`: best vs last step, the late loss). A bootstrap resamples users with replacement from
``numpy.random.default_rng(seed)``, ``samples`` draws of ``n`` users each, in one stream (chunked only to bound
memory, which does not change the draws), so a seed fixes every interval.

Example:
    >>> mean, se = mean_and_se([1.0, 2.0, 3.0, 4.0])
    >>> mean, round(se, 4)
    (2.5, 0.6455)
    >>> cmp = paired_bootstrap([1.0, 0.9, 0.8, 1.0], [0.5, 0.6, 0.7, 0.4], samples=200, seed=0)
    >>> round(cmp.diff, 3), cmp.significant
    (0.375, True)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from llmrec.errors import ConfigError

#: Index entries drawn at once (samples x users) before a bootstrap goes on in the next chunk.
CHUNK_ENTRIES = 2_000_000


@dataclass(frozen=True)
class Interval:
    """A mean with its bootstrap confidence interval."""

    mean: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "low": self.low, "high": self.high}


@dataclass(frozen=True)
class PairedComparison:
    """Arm minus baseline on shared users: the mean difference, its CI and a two-sided bootstrap p-value."""

    diff: float
    low: float
    high: float
    p_value: float
    users: int

    @property
    def significant(self) -> bool:
        """The CI excludes zero."""
        return self.low > 0 or self.high < 0

    def as_dict(self) -> dict[str, float | int | bool]:
        return {
            "diff": self.diff,
            "low": self.low,
            "high": self.high,
            "p_value": self.p_value,
            "users": self.users,
            "significant": self.significant,
        }


def mean_and_se(values: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """Mean and standard error of the mean of at least 2 values (sample standard deviation / sqrt(n)).

    Raises:
        ValueError: fewer than 2 values (the sample standard deviation is undefined).
    """
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or len(x) < 2:
        raise ValueError(f"a standard error needs at least 2 values, got {len(x) if x.ndim == 1 else x.shape}")
    return float(x.mean()), float(x.std(ddof=1) / np.sqrt(len(x)))


def paired_gain(better: Sequence[float], other: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error of the per-user difference ``better - other`` (the same users, in the same order).

    Raises:
        ValueError: the lists differ in length or hold fewer than 2 values.
    """
    if len(better) != len(other) or len(better) < 2:
        raise ValueError(f"paired_gain needs two equally long lists of at least 2 values, got {len(better)}, {len(other)}")
    return mean_and_se(np.asarray(better, dtype=np.float64) - np.asarray(other, dtype=np.float64))


def resample_users(n_users: int, samples: int, seed: int, *, width: int | None = None) -> Iterator[np.ndarray]:
    """Bootstrap draws of user indices: blocks of rows (one row of `n_users` indices per sample), `samples` rows in
    all, from one ``default_rng(seed)`` stream (the blocks concatenated equal one ``(samples, n_users)`` draw).

    Args:
        n_users: users to draw from (and per row).
        samples: rows in all.
        seed: the generator's seed.
        width: the memory a row costs, in index entries (default `n_users`); blocks hold about `CHUNK_ENTRIES`.
    """
    rng = np.random.default_rng(seed)
    chunk = max(1, CHUNK_ENTRIES // max(1, n_users if width is None else width))
    for start in range(0, samples, chunk):
        yield rng.integers(0, n_users, size=(min(samples, start + chunk) - start, n_users))


def bootstrap_means(values: Sequence[float] | np.ndarray, samples: int, seed: int) -> np.ndarray:
    """The mean of each of `samples` seeded resamples (`resample_users`) of `values`."""
    x = np.asarray(values, dtype=np.float64)
    return np.concatenate([np.empty(0)] + [x[idx].mean(axis=1) for idx in resample_users(len(x), samples, seed)])


def _bounds(means: np.ndarray, confidence: float) -> tuple[float, float]:
    alpha = (1.0 - confidence) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def bootstrap_interval(
    values: Sequence[float], *, samples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> Interval:
    """Percentile bootstrap CI of the mean of per-user `values`.

    Raises:
        ConfigError: no values.
    """
    if len(values) == 0:
        raise ConfigError("cannot bootstrap an empty list of values")
    low, high = _bounds(bootstrap_means(values, samples, seed), confidence)
    return Interval(float(np.mean(values)), low, high)


def paired_bootstrap(
    arm: Sequence[float] | np.ndarray,
    baseline: Sequence[float] | np.ndarray,
    *,
    samples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> PairedComparison:
    """Paired bootstrap over users of ``mean(arm - baseline)``; `arm` and `baseline` are aligned per user.

    The p-value is two-sided: twice the share of resampled mean differences on the far side of zero (at least
    ``1 / samples``: the bootstrap cannot resolve smaller p-values).

    Raises:
        ConfigError: the lists differ in length, or are empty.
    """
    if len(arm) != len(baseline):
        raise ConfigError(f"paired values differ in length: {len(arm)} vs {len(baseline)}")
    if len(arm) == 0:
        raise ConfigError("no shared users to compare")
    diffs = np.asarray(arm, dtype=float) - np.asarray(baseline, dtype=float)
    means = bootstrap_means(diffs, samples, seed)
    mean = float(diffs.mean())
    if np.all(diffs == 0):
        p = 1.0
    else:
        far = float(np.mean(means <= 0) if mean > 0 else np.mean(means >= 0))  # share on the far side of zero
        p = min(1.0, max(2 * far, 1.0 / samples))
    low, high = _bounds(means, confidence)
    return PairedComparison(mean, low, high, p, len(arm))


def zscore(values: Sequence[float]) -> np.ndarray:
    """(x - mean) / std over one user's candidates; 0s when all values are equal. NaN counts as the minimum."""
    x = np.asarray(values, dtype=np.float64)
    if len(x) == 0:
        return x
    finite = np.isfinite(x)
    if not finite.any():
        return np.zeros(len(x))
    x = np.where(finite, x, x[finite].min())
    std = x.std()
    return (x - x.mean()) / std if std > 0 else np.zeros(len(x))
