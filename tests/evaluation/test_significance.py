from __future__ import annotations

import random

import pytest

from llmrec import stats
from llmrec.errors import ConfigError
from llmrec.evaluation import significance
from llmrec.evaluation.significance import bootstrap_pooled_auc, pooled_auc_resamples
from llmrec.metrics import pairwise_auc


def test_the_report_intervals_are_the_statistics_module_s():
    # One owner of the paired bootstrap: the reports, the fusion fit and training use llmrec.stats.
    assert significance.paired_bootstrap is stats.paired_bootstrap
    assert significance.bootstrap_interval is stats.bootstrap_interval
    assert significance.Interval is stats.Interval


def _users(n: int, negatives: int, shift: float, seed: int) -> tuple[list[float], list[list[float]]]:
    rng = random.Random(seed)
    pos = [rng.gauss(shift, 1) for _ in range(n)]
    neg = [[rng.gauss(0, 1) for _ in range(negatives)] for _ in range(n)]
    return pos, neg


def test_pooled_auc_resamples_equal_auc_of_repeated_users():
    import numpy as np

    pos, neg = _users(12, 3, 0.5, seed=5)
    pos[3] = neg[7][1]  # a tie across users counts one half
    neg[2][0] = float("nan")  # a NaN score ranks last, as in pairwise_auc
    counts = np.random.default_rng(6).integers(0, 3, size=(20, 12))
    got = pooled_auc_resamples(pos, neg, counts)
    for row, value in zip(counts, got):
        rep_pos = [p for p, c in zip(pos, row) for _ in range(c)]
        rep_neg = [s for n, c in zip(neg, row) for _ in range(c) for s in n]
        assert value == pytest.approx(pairwise_auc(rep_pos, rep_neg))


def test_bootstrap_pooled_auc_brackets_the_estimate_and_narrows_with_users():
    pos, neg = _users(60, 1, 1.0, seed=7)
    small = bootstrap_pooled_auc(pos, neg, samples=400, seed=1)
    assert small.mean == pytest.approx(pairwise_auc(pos, [s for n in neg for s in n]))
    assert small.low < small.mean < small.high
    pos, neg = _users(900, 1, 1.0, seed=7)
    large = bootstrap_pooled_auc(pos, neg, samples=400, seed=1)
    assert large.high - large.low < 0.6 * (small.high - small.low)
    assert 0.70 < large.low < large.mean < large.high < 0.82  # true AUC of a unit shift: Phi(1/sqrt 2) = 0.760


def test_bootstrap_pooled_auc_rejects_mismatched_or_empty_input():
    with pytest.raises(ConfigError, match="negatives"):
        bootstrap_pooled_auc([0.1, 0.2], [[0.0]])
    with pytest.raises(ConfigError, match="negative score"):
        bootstrap_pooled_auc([0.1], [[]])


def test_bootstrap_pooled_auc_resamples_users_with_the_seeded_draws(monkeypatch):
    import numpy as np

    monkeypatch.setattr(stats, "CHUNK_ENTRIES", 500)  # several chunks of draws: the same draws as one
    pos, neg = _users(30, 2, 0.5, seed=3)
    iv = bootstrap_pooled_auc(pos, neg, samples=50, seed=9)
    drawn = np.random.default_rng(9).integers(0, 30, size=(50, 30))
    counts = np.zeros((50, 30))
    np.add.at(counts, (np.arange(50)[:, None], drawn), 1.0)
    aucs = pooled_auc_resamples(pos, neg, counts)
    alpha = (1.0 - 0.95) / 2
    assert (iv.low, iv.high) == (float(np.nanquantile(aucs, alpha)), float(np.nanquantile(aucs, 1 - alpha)))
