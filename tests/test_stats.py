"""The statistics module: mean and standard error, seeded bootstrap draws, paired comparisons."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from llmrec import stats
from llmrec.errors import ConfigError
from llmrec.stats import (
    bootstrap_interval,
    bootstrap_means,
    mean_and_se,
    paired_bootstrap,
    paired_gain,
    resample_users,
)

EPS = np.finfo(np.float64).eps


def test_mean_and_se_is_the_mean_and_sample_sd_over_sqrt_n():
    values = [0.5, 0.0, 1.0, 0.0]
    mean, se = mean_and_se(values)
    assert mean == 0.375
    expected = math.sqrt((0.125**2 + 0.375**2 + 0.625**2 + 0.375**2) / 3 / 4)
    assert se == pytest.approx(expected, rel=16 * EPS)
    assert mean_and_se(np.asarray(values)) == (mean, se)
    assert mean_and_se([2.0, 2.0, 2.0]) == (2.0, 0.0)
    with pytest.raises(ValueError, match="at least 2 values, got 1"):
        mean_and_se([1.0])


def test_paired_gain_is_mean_and_se_of_the_differences():
    better, other = [1.0, 0.5, 1.0, 0.0], [0.5, 0.5, 0.0, 0.0]
    assert paired_gain(better, other) == mean_and_se([0.5, 0.0, 1.0, 0.0])
    with pytest.raises(ValueError, match="two equally long lists"):
        paired_gain([1.0, 0.0], [1.0])
    with pytest.raises(ValueError, match="two equally long lists"):
        paired_gain([1.0], [1.0])


@pytest.mark.parametrize("chunk_entries", [7, 50, stats.CHUNK_ENTRIES])
@pytest.mark.parametrize("n_users", [1, 13])
def test_resampling_in_chunks_draws_what_one_draw_would(monkeypatch, chunk_entries, n_users):
    # The fusion fit drew its resamples in one (samples x users) draw, the reports in chunks: the same indices.
    monkeypatch.setattr(stats, "CHUNK_ENTRIES", chunk_entries)
    blocks = list(resample_users(n_users, 101, seed=5))
    whole = np.random.default_rng(5).integers(0, n_users, size=(101, n_users))
    np.testing.assert_array_equal(np.concatenate(blocks), whole)
    assert all(len(b) <= max(1, chunk_entries // n_users) for b in blocks)
    wide = list(resample_users(n_users, 101, seed=5, width=40))
    np.testing.assert_array_equal(np.concatenate(wide), whole)


def test_paired_bootstrap_is_the_percentile_interval_of_seeded_resampled_mean_differences():
    rng = random.Random(7)
    base = [rng.random() for _ in range(60)]
    arm = [b + rng.gauss(0.05, 0.2) for b in base]
    cmp = paired_bootstrap(arm, base, samples=400, seed=11)
    diffs = np.asarray(arm) - np.asarray(base)
    means = diffs[np.random.default_rng(11).integers(0, 60, size=(400, 60))].mean(axis=1)
    np.testing.assert_array_equal(bootstrap_means(diffs, 400, 11), means)
    alpha = (1.0 - 0.95) / 2
    assert (cmp.low, cmp.high) == (float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha)))
    assert cmp.diff == float(diffs.mean()) and cmp.users == 60
    far = np.mean(means <= 0) if cmp.diff > 0 else np.mean(means >= 0)  # the far side of zero
    assert cmp.p_value == min(1.0, max(2 * float(far), 1 / 400))


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
    assert cmp.as_dict()["significant"] is True


def test_noise_only_difference_is_not_significant():
    rng = random.Random(4)
    base = [rng.random() for _ in range(300)]
    arm = [rng.random() for _ in range(300)]
    cmp = paired_bootstrap(arm, base, samples=500)
    assert cmp.low < 0 < cmp.high


def test_interval_and_errors():
    iv = bootstrap_interval([0.0, 1.0] * 50, samples=300)
    assert iv.mean == 0.5 and iv.low < 0.5 < iv.high
    assert iv.as_dict() == {"mean": iv.mean, "low": iv.low, "high": iv.high}
    with pytest.raises(ConfigError, match="differ in length: 1 vs 2"):
        paired_bootstrap([1.0], [1.0, 2.0])
    with pytest.raises(ConfigError, match="no shared users"):
        paired_bootstrap([], [])
    with pytest.raises(ConfigError, match="empty"):
        bootstrap_interval([])
