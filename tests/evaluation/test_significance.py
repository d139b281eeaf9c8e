from __future__ import annotations

import random

import pytest

from llmrec.errors import ConfigError
from llmrec.evaluation.significance import bootstrap_interval, paired_bootstrap


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
