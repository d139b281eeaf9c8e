"""Bootstrap confidence intervals for reports: is an arm better than the baseline on the same users?

The intervals of a mean and the paired comparison are `llmrec.stats`'s (re-exported here for the report code);
this module adds what is particular to evaluation: the pooled AUC, resampled by user with `llmrec.stats`'s draws.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from llmrec.errors import ConfigError
from llmrec.metrics import clean_score, pairwise_auc
from llmrec.stats import Interval, PairedComparison, bootstrap_interval, paired_bootstrap, resample_users

__all__ = [
    "Interval",
    "PairedComparison",
    "bootstrap_interval",
    "bootstrap_pooled_auc",
    "paired_bootstrap",
    "pooled_auc_resamples",
]


def pooled_auc_resamples(
    positives: Sequence[float], negatives: Sequence[Sequence[float]], counts: ArrayLike
) -> np.ndarray:
    """Pooled AUC (all positives vs all negatives, a tie counts one half) of each row of user multiplicities.

    User ``u`` has one positive score ``positives[u]`` and negative scores ``negatives[u]``; a row of `counts`
    (shape: rows x users) says how many times each user is drawn. Row ``r``'s value equals `pairwise_auc` on the lists with every user's
    scores repeated ``counts[r, u]`` times (NaN where a row draws no positive or no negative).
    """
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
    if len(positives) != len(negatives):
        raise ConfigError(f"{len(positives)} positive scores but {len(negatives)} users' negatives")
    flat = [s for n in negatives for s in n]
    if not len(positives) or not flat:
        raise ConfigError("pooled AUC needs at least one positive and one negative score")
    n_users = len(positives)
    aucs = [np.empty(0)]
    for drawn in resample_users(n_users, samples, seed, width=n_users + len(flat)):
        counts = np.zeros((len(drawn), n_users))
        np.add.at(counts, (np.arange(len(drawn))[:, None], drawn), 1.0)
        aucs.append(pooled_auc_resamples(positives, negatives, counts))
    alpha = (1.0 - confidence) / 2
    drawn_aucs = np.concatenate(aucs)
    return Interval(
        pairwise_auc(list(positives), flat),
        float(np.nanquantile(drawn_aucs, alpha)),
        float(np.nanquantile(drawn_aucs, 1 - alpha)),
    )
