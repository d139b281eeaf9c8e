"""Score fusion: z-scoring, combination, the validation grid search, and its use by the harness."""

from __future__ import annotations

import numpy as np
import pytest

from llmrec.errors import ConfigError
from llmrec.metrics import ndcg_at, target_rank
from llmrec.ranking.fusion import ScoreFusion, fit_score_fusion, zscore


def test_zscore_is_per_list_and_safe_on_constants():
    np.testing.assert_allclose(zscore([1.0, 2.0, 3.0]), [-1.2247449, 0.0, 1.2247449], atol=1e-6)
    np.testing.assert_array_equal(zscore([4.0, 4.0]), [0.0, 0.0])
    assert zscore([float("nan"), 1.0, 3.0])[0] == zscore([1.0, 1.0, 3.0])[0]  # NaN counts as the minimum


def test_combine_weights_each_z_scored_list():
    fusion = ScoreFusion(("a", "b"), (1.0, 0.5), llm_weight=2.0)
    llm, a, b = [1.0, 0.0, 2.0], [10.0, 30.0, 20.0], [5.0, 5.0, 6.0]
    expected = zscore(a) + 0.5 * zscore(b) + 2.0 * zscore(llm)
    assert fusion.combine(llm, [a, b]) == pytest.approx(list(expected))
    assert fusion.without_llm().combine(None, [a, b]) == pytest.approx(list(zscore(a) + 0.5 * zscore(b)))
    with pytest.raises(ConfigError, match="LLM"):
        fusion.combine(None, [a, b])


def test_bad_fusion_specs_name_the_problem():
    with pytest.raises(ConfigError, match="2 weights for 1 members"):
        ScoreFusion(("a",), (1.0, 2.0), 1.0)
    with pytest.raises(ConfigError, match="'llm_weight'.*>= 0"):
        ScoreFusion(("a",), (1.0,), -1.0)
    with pytest.raises(ConfigError, match=r"missing keys \['llm_weight'\]"):
        ScoreFusion.from_dict({"members": ["a"], "weights": [1]})
    data = ScoreFusion(("a",), (1.0,), 0.5, {"users": 3}).to_dict()
    assert ScoreFusion.from_dict(data) == ScoreFusion(("a",), (1.0,), 0.5, {"users": 3})


def test_llm_depth_reorders_only_the_members_top_k_and_keeps_the_rest_below():
    fusion = ScoreFusion(("a",), (1.0,), llm_weight=5.0, llm_depth=3)
    a = [5.0, 1.0, 4.0, 3.0, 2.0]  # the members' order: 0, 2, 3, 4, 1
    llm = [0.0, 100.0, 1.0, 9.0, float("nan")]  # candidate 1 would win on the LLM, but it is below the depth
    assert fusion.llm_candidates([a]) == [0, 2, 3]
    fused = fusion.combine(llm, [a])
    order = sorted(range(5), key=lambda i: -fused[i])
    assert order == [3, 2, 0, 4, 1]  # the LLM reorders the top 3 (z-scored among them); 4 then 1 follow
    top = np.asarray([0, 2, 3])
    expected_top = zscore(a)[top] + 5.0 * zscore(np.asarray(llm)[top])
    assert [fused[i] for i in top] == pytest.approx(list(expected_top))
    # a depth at or above the candidate count, or no LLM weight, is the plain fusion
    plain = ScoreFusion(("a",), (1.0,), llm_weight=5.0)
    assert ScoreFusion(("a",), (1.0,), 5.0, llm_depth=5).combine(llm[:4] + [0.0], [a]) == plain.combine(
        llm[:4] + [0.0], [a]
    )
    assert fusion.without_llm().llm_candidates([a]) == [0, 1, 2, 3, 4]
    assert fusion.without_llm().llm_depth == 3
    data = fusion.to_dict()
    assert data["llm_depth"] == 3 and ScoreFusion.from_dict(data) == fusion
    assert "llm_depth" not in plain.to_dict()  # cards and arms made before the depth read the same
    with pytest.raises(ConfigError, match="llm_depth must be null or an integer >= 1, got 0"):
        ScoreFusion(("a",), (1.0,), 1.0, llm_depth=0)
    with pytest.raises(ConfigError, match="LLM's scores of candidates"):
        fusion.combine([float("nan")] * 5, [a])


def _synthetic(n_users: int, llm_noise: float, seed: int = 0):
    """20 candidates per user; the target is index 0. The member sees the target through one kind of noise,
    the LLM through independent noise, so together they find it more often than either alone."""
    rng = np.random.default_rng(seed)
    member, llm, targets = [], [], []
    for _ in range(n_users):
        signal = np.zeros(20)
        signal[0] = 1.5
        member.append(list(signal + rng.normal(size=20)))
        llm.append(list(signal * (llm_noise < 10) + llm_noise * rng.normal(size=20) * 0.7))
        targets.append(0)
    return llm, {"cf": member}, targets


def test_fit_uses_an_informative_llm_and_ignores_a_useless_one():
    llm, members, targets = _synthetic(300, llm_noise=1.0)
    fusion = fit_score_fusion(llm, members, targets, fitted={"split": "valid"})
    scores = fusion.fitted["ndcg@10"]
    assert fusion.llm_weight > 0
    assert scores["fused"] > max(scores["llm_alone"], scores["cf"]) + 0.02
    assert fusion.fitted["split"] == "valid" and fusion.fitted["users"] == 300

    noise, members, targets = _synthetic(300, llm_noise=100.0, seed=1)
    useless = fit_score_fusion(noise, members, targets)
    assert useless.llm_weight <= 0.1


def test_an_llm_that_does_not_help_held_out_users_gets_weight_0():
    noise, members, targets = _synthetic(300, llm_noise=100.0, seed=1)
    kept = fit_score_fusion(noise, members, targets, keep_llm=True)
    guarded = fit_score_fusion(noise, members, targets)
    cv = guarded.fitted["cv"]
    assert cv["folds"] == 5 and cv["llm_gain"] <= cv["llm_gain_se"] and cv["llm_gain_ci95"][0] < 0
    assert guarded.llm_weight == 0 and "did not raise held-out NDCG@10" in guarded.fitted["llm_dropped"]
    assert guarded.fitted["llm_weight_fit"] == kept.llm_weight > 0  # chance alone gave it a weight
    # the members keep the weights fit without the LLM (a constant LLM score is no LLM at all)
    constant = fit_score_fusion([[0.0] * 20] * 300, members, targets)
    assert guarded.weights == constant.weights and "llm_dropped" not in constant.fitted
    assert guarded.fitted["ndcg@10"]["fused"] == constant.fitted["ndcg@10"]["fused"]


def test_an_informative_llm_passes_the_held_out_check():
    llm, members, targets = _synthetic(300, llm_noise=1.0)
    fusion = fit_score_fusion(llm, members, targets)
    cv = fusion.fitted["cv"]
    assert fusion.llm_weight > 0 and cv["llm_gain"] > 0.01 and cv["llm_gain_ci95"][0] > 0
    assert "llm_dropped" not in fusion.fitted


def test_the_fit_ranks_a_tied_target_by_its_position_as_the_reports_do():
    # Every candidate scores the same: the target at position 5 ranks 6th (never the middle, never the top).
    n = 3
    fusion = fit_score_fusion([[0.0] * 20] * n, {"pop": [[1.0] * 20] * n}, [5] * n)
    assert fusion.fitted["ndcg@10"] == {"fused": ndcg_at(6, 10), "llm_alone": ndcg_at(6, 10), "pop": ndcg_at(6, 10)}


def test_the_fit_objective_is_the_reports_ndcg_of_the_fused_scores():
    rng = np.random.default_rng(8)
    n = 60
    pop = rng.integers(0, 4, size=(n, 20)).astype(float)  # few values: many ties with the target
    llm = rng.integers(0, 3, size=(n, 20)).astype(float)
    targets = [int(t) for t in rng.integers(0, 20, size=n)]
    fusion = fit_score_fusion(llm.tolist(), {"pop": pop.tolist()}, targets, keep_llm=True)

    def reported(scores: np.ndarray) -> float:
        return sum(ndcg_at(target_rank(list(s), t), 10) for s, t in zip(scores, targets)) / n

    fused = np.array([fusion.combine(list(a), [list(b)]) for a, b in zip(llm, pop)])
    tolerance = n * np.finfo(np.float64).eps  # a mean of n values in [0, 1], summed in another order
    assert fusion.fitted["ndcg@10"]["pop"] == pytest.approx(reported(pop), rel=0, abs=tolerance)
    assert fusion.fitted["ndcg@10"]["llm_alone"] == pytest.approx(reported(llm), rel=0, abs=tolerance)
    assert fusion.fitted["ndcg@10"]["fused"] == pytest.approx(reported(fused), rel=0, abs=tolerance)
