from __future__ import annotations

import random

import pytest

from llmrec.errors import ConfigError
from llmrec.evaluation.significance import (
    bootstrap_interval,
    bootstrap_pooled_auc,
    paired_bootstrap,
    pooled_auc_resamples,
)
from llmrec.metrics import pairwise_auc


def test_identical_arms_are_not_different():
    values = [random.Random(1).random() for _ in range(50)]
    cmp = paired_bootstrap(values, values, samples=200)
    assert cmp.diff == 0.0 and cmp.p_value == 1.0 and not cmp.significant


def test_clear_improvement_is_significant_and_ci_brackets_the_mean():
    rng = random.Random(2)
    base = [rng.random() for _ in range(200)]
    arm = [b + 0.2 + rng.gauss(0, 0.05) for b in base]
    cmp = paired_bootstrap(arm, base, samples=500, seed=3)
    assert cmp.significant and cmp.low > 0.15 and cmp.high < 0.25
    assert cmp.low <= cmp.diff <= cmp.high
    assert cmp.p_value <= 1 / 500 + 1e-12
    # Deterministic given the seed.
    assert paired_bootstrap(arm, base, samples=500, seed=3) == cmp


def test_noise_only_difference_is_not_significant():
    rng = random.Random(4)
    base = [rng.random() for _ in range(300)]
    arm = [rng.random() for _ in range(300)]
    cmp = paired_bootstrap(arm, base, samples=500)
    assert cmp.low < 0 < cmp.high


def test_interval_and_errors():
    iv = bootstrap_interval([0.0, 1.0] * 50, samples=300)
    assert iv.mean == 0.5 and iv.low < 0.5 < iv.high
    with pytest.raises(ConfigError):
        paired_bootstrap([1.0], [1.0, 2.0])
    with pytest.raises(ConfigError):
        bootstrap_interval([])


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
