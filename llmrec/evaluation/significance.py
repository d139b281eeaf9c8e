"""Paired bootstrap confidence intervals: is an arm better than the baseline on the same users?"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from llmrec.errors import ConfigError
from llmrec.metrics import clean_score, pairwise_auc


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


def _resample_means(values: Sequence[float], samples: int, seed: int):  # -> np.ndarray
    import numpy as np

    x = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    # Resample users in chunks to bound memory (samples x users indices).
    means = np.empty(samples)
    chunk = max(1, 2_000_000 // max(1, len(x)))
    for start in range(0, samples, chunk):
        stop = min(samples, start + chunk)
        idx = rng.integers(0, len(x), size=(stop - start, len(x)))
        means[start:stop] = x[idx].mean(axis=1)
    return means


def bootstrap_interval(
    values: Sequence[float], *, samples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> Interval:
    """Percentile bootstrap CI of the mean of per-user `values`."""
    import numpy as np

    if len(values) == 0:
        raise ConfigError("cannot bootstrap an empty list of values")
    means = _resample_means(values, samples, seed)
    alpha = (1.0 - confidence) / 2
    return Interval(
        float(np.mean(values)), float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))
    )


def paired_bootstrap(
    arm: Sequence[float],
    baseline: Sequence[float],
    *,
    samples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> PairedComparison:
    """Paired bootstrap over users of ``mean(arm - baseline)``; `arm` and `baseline` are aligned per user.

    The p-value is two-sided: twice the share of resampled mean differences on the far side of zero (at least
    ``1 / samples``: the bootstrap cannot resolve smaller p-values).
    """
    import numpy as np

    if len(arm) != len(baseline):
        raise ConfigError(f"paired values differ in length: {len(arm)} vs {len(baseline)}")
    if len(arm) == 0:
        raise ConfigError("no shared users to compare")
    diffs = np.asarray(arm, dtype=float) - np.asarray(baseline, dtype=float)
    means = _resample_means(diffs, samples, seed)
    alpha = (1.0 - confidence) / 2
    mean = float(diffs.mean())
    if np.all(diffs == 0):
        p = 1.0
    else:
        far = np.mean(means <= 0) if mean > 0 else np.mean(means >= 0)
        p = float(min(1.0, max(2 * far, 1.0 / samples)))
    return PairedComparison(
        mean, float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha)), p, len(arm)
    )


def pooled_auc_resamples(
    positives: Sequence[float], negatives: Sequence[Sequence[float]], counts  # counts: np.ndarray (k, users)
):  # -> np.ndarray (k,)
    """Pooled AUC (all positives vs all negatives, a tie counts one half) of each row of user multiplicities.

    User ``u`` has one positive score ``positives[u]`` and negative scores ``negatives[u]``; a row of `counts`
    says how many times each user is drawn. Row ``r``'s value equals `pairwise_auc` on the lists with every user's
    scores repeated ``counts[r, u]`` times (NaN where a row draws no positive or no negative).
    """
    import numpy as np

    pos = np.asarray([clean_score(s) for s in positives], dtype=float)
    owner = np.repeat(np.arange(len(pos)), [len(n) for n in negatives])
    neg = np.asarray([clean_score(s) for n in negatives for s in n], dtype=float)
    order = np.argsort(neg, kind="stable")
    neg, owner = neg[order], owner[order]
    below = np.searchsorted(neg, pos, side="left")  # negatives strictly below each positive
    upto = np.searchsorted(neg, pos, side="right")  # ... below or tied
    counts = np.asarray(counts, dtype=float)
    weights = counts[:, owner]  # each negative weighted by its user's multiplicity
    cum = np.concatenate([np.zeros((len(counts), 1)), np.cumsum(weights, axis=1)], axis=1)
    wins = (counts * (cum[:, below] + 0.5 * (cum[:, upto] - cum[:, below]))).sum(axis=1)
    pairs = counts.sum(axis=1) * weights.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, wins / np.where(pairs > 0, pairs, 1.0), np.nan)


def bootstrap_pooled_auc(
    positives: Sequence[float],
    negatives: Sequence[Sequence[float]],
    *,
    samples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Percentile bootstrap CI of the pooled AUC, resampling users (each with its positive and its negatives).

    Raises:
        ConfigError: no user, or no negative score at all (AUC is undefined).
    """
    import numpy as np

    if len(positives) != len(negatives):
        raise ConfigError(f"{len(positives)} positive scores but {len(negatives)} users' negatives")
    flat = [s for n in negatives for s in n]
    if not len(positives) or not flat:
        raise ConfigError("pooled AUC needs at least one positive and one negative score")
    n_users = len(positives)
    rng = np.random.default_rng(seed)
    aucs = np.empty(samples)
    chunk = max(1, 2_000_000 // (n_users + len(flat)))
    for start in range(0, samples, chunk):
        stop = min(samples, start + chunk)
        drawn = rng.integers(0, n_users, size=(stop - start, n_users))
        counts = np.zeros((stop - start, n_users))
        np.add.at(counts, (np.arange(stop - start)[:, None], drawn), 1.0)
        aucs[start:stop] = pooled_auc_resamples(positives, negatives, counts)
    alpha = (1.0 - confidence) / 2
    return Interval(
        pairwise_auc(list(positives), flat),
        float(np.nanquantile(aucs, alpha)),
        float(np.nanquantile(aucs, 1 - alpha)),
    )
