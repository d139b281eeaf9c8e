from __future__ import annotations

import math

import numpy as np
import pytest

from llmrec.errors import ConfigError
from llmrec.metrics import (
    hit_at,
    mean_metrics,
    ndcg_at,
    ndcg_at_ranks,
    pairwise_auc,
    ranking_auc,
    reciprocal_rank,
    target_ndcg,
    target_rank,
    target_ranks,
    user_metrics,
)


def test_target_rank_counts_better_scores_and_breaks_ties_by_position():
    assert target_rank([0.1, 0.9, 0.5], 2) == 2
    assert target_rank([0.1, 0.9, 0.5], 1) == 1
    assert target_rank([0.1, 0.9, 0.5], 0) == 3
    # Equal scores: an earlier candidate ranks before the target, a later one after it.
    assert target_rank([0.5, 0.5, 0.5], 0) == 1
    assert target_rank([0.5, 0.5, 0.5], 2) == 3
    # NaN ranks last, never first.
    assert target_rank([float("nan"), 0.1], 0) == 2
    assert target_rank([0.3, 0.2], None) is None
    with pytest.raises(ConfigError, match="out of range"):
        target_rank([0.3], 4)


def _tied_rows(seed: int, dtype: type = np.float64) -> np.ndarray:
    """Rows of scores drawn from a few values (many ties), with some NaN and -inf."""
    rng = np.random.default_rng(seed)
    x = rng.choice([-np.inf, -1.0, 0.0, 0.5, 2.0, np.nan], size=(200, 12), p=[0.05, 0.3, 0.3, 0.2, 0.1, 0.05])
    return x.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_target_ranks_apply_the_rule_of_target_rank_to_every_row(dtype):
    x = _tied_rows(1, dtype)
    targets = np.random.default_rng(2).integers(0, 12, size=len(x))
    expected = [target_rank(list(map(float, row)), int(t)) for row, t in zip(x, targets)]
    assert target_ranks(x, targets).tolist() == expected
    # one target for every row (the fusion fit's weightings of one user)
    assert target_ranks(x, 4).tolist() == [target_rank(list(map(float, row)), 4) for row in x]
    assert target_ranks(np.array([[1, 3, 3]]), 2).tolist() == [2]  # integer scores: the later 3 ranks second


def test_target_ranks_are_the_positions_of_a_stable_sort_best_first():
    # The rank the reports give is where the target stands when the candidates are listed by score, ties in
    # candidate order (NaN as -inf, last).
    x = _tied_rows(3)
    targets = np.random.default_rng(4).integers(0, 12, size=len(x))
    order = np.argsort(-np.where(np.isnan(x), -np.inf, x), axis=1, kind="stable")
    expected = [int(np.flatnonzero(o == t)[0]) + 1 for o, t in zip(order, targets)]
    assert target_ranks(x, targets).tolist() == expected


@pytest.mark.parametrize("k", [1, 5, 10])
def test_target_ndcg_equals_ndcg_at_of_target_rank_bit_for_bit(k):
    x = _tied_rows(5)
    targets = np.random.default_rng(6).integers(0, 12, size=len(x))
    expected = [ndcg_at(target_rank(list(map(float, row)), int(t)), k) for row, t in zip(x, targets)]
    assert target_ndcg(x, targets, k).tolist() == expected
    assert ndcg_at_ranks(np.arange(1, 30), k).tolist() == [ndcg_at(r, k) for r in range(1, 30)]


def test_ties_never_favour_a_target_that_comes_later():
    # All candidates equal: the target's rank is its position (not the middle, not the top).
    tied = np.zeros((1, 20))
    assert [int(target_ranks(tied, t)[0]) for t in (0, 5, 19)] == [1, 6, 20]
    assert target_ndcg(tied, 5).tolist() == [ndcg_at(6, 10)]
    assert target_ndcg(tied, 10).tolist() == [0.0]


def test_target_ranks_reject_bad_shapes_and_targets():
    with pytest.raises(ConfigError, match="2-D"):
        target_ranks([0.1, 0.2], 0)
    with pytest.raises(ConfigError, match="target_index 3 out of range for 3 candidates"):
        target_ranks([[0.1, 0.2, 0.3]], 3)
    with pytest.raises(ConfigError, match="target_index -1 out of range"):
        target_ranks([[0.1, 0.2, 0.3], [0.1, 0.2, 0.3]], [0, -1])


def test_hand_computed_ranking_metrics():
    # Rank 3 among 20: NDCG@5 = 1/log2(4) = 0.5, NDCG@1 = 0, HR@5 = 1, MRR = 1/3, AUC = 17/19.
    m = user_metrics(3, 20)
    assert m["ndcg@1"] == 0.0
    assert m["ndcg@5"] == pytest.approx(0.5)
    assert m["ndcg@10"] == pytest.approx(0.5)
    assert m["hr@5"] == 1.0 and m["recall@10"] == 1.0
    assert m["mrr"] == pytest.approx(1 / 3)
    assert m["auc"] == pytest.approx(17 / 19)
    # Rank 7: outside the top 5, inside the top 10: 1/log2(8) = 1/3.
    assert ndcg_at(7, 5) == 0.0 and ndcg_at(7, 10) == pytest.approx(1 / 3)
    assert hit_at(7, 5) == 0.0 and hit_at(7, 10) == 1.0
    assert ndcg_at(1, 1) == 1.0
    # A miss scores zero everywhere.
    assert all(v == 0.0 for v in user_metrics(None, 20).values())
    assert reciprocal_rank(None) == 0.0
    assert ranking_auc(1, 1) == 0.5 and ranking_auc(20, 20) == 0.0


def test_mean_metrics_averages_per_user_rows():
    rows = [user_metrics(1, 10), user_metrics(2, 10)]
    mean = mean_metrics(rows)
    assert mean["ndcg@10"] == pytest.approx((1 + 1 / math.log2(3)) / 2)
    assert mean["mrr"] == pytest.approx(0.75)
    assert mean_metrics([]) == {}


def test_pairwise_auc_hand_cases():
    assert pairwise_auc([3.0], [1.0, 2.0]) == 1.0
    assert pairwise_auc([0.0], [1.0, 2.0]) == 0.0
    # Positives 0.8, 0.4 against negatives 0.6, 0.4, 0.1: wins 3 + (1 + 0.5 tie) = 4.5 of 6.
    assert pairwise_auc([0.8, 0.4], [0.6, 0.4, 0.1]) == pytest.approx(4.5 / 6)
    assert pairwise_auc([1.0, 1.0], [1.0]) == pytest.approx(0.5)
    with pytest.raises(ConfigError):
        pairwise_auc([], [1.0])


def test_pairwise_auc_matches_brute_force():
    import random

    rng = random.Random(3)
    pos = [rng.choice([0.1, 0.2, 0.3, rng.random()]) for _ in range(40)]
    neg = [rng.choice([0.1, 0.2, 0.3, rng.random()]) for _ in range(55)]
    brute = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))
    assert pairwise_auc(pos, neg) == pytest.approx(brute)
