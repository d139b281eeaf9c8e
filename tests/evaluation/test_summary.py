from __future__ import annotations

from llmrec.evaluation.config import ExperimentConfig
from llmrec.evaluation.runner import ArmResult, ExperimentResult, UserResult
from llmrec.evaluation.summary import summarize


def _result(latency_a: float, latency_b: float) -> ExperimentResult:
    config = ExperimentConfig.from_dict(
        {
            "name": "r",
            "dataset": "x",
            "bootstrap_samples": 200,
            "arms": [{"name": "a", "kind": "random"}, {"name": "b", "kind": "popularity"}],
        }
    )

    def users(ranks, latency):
        return [
            UserResult(str(n), r, 10, 0, tuple(float(-i) for i in range(10)), {"all": True}, 0, 1, 0, latency)
            for n, r in enumerate(ranks)
        ]

    # Arm a is a little better on average, but the two are statistically tied on these 40 users.
    ranks_a = [1, 2, 3, 4] * 10
    ranks_b = [2, 1, 3, 4] * 9 + [2, 2, 3, 4]
    arms = {
        "a": ArmResult(config.arms[0], users(ranks_a, latency_a)),
        "b": ArmResult(config.arms[1], users(ranks_b, latency_b)),
    }
    return ExperimentResult(config, arms, users_sampled=40, users_available=40)


def test_pick_prefers_a_clearly_cheaper_tied_arm():
    rec = summarize(_result(latency_a=2.0, latency_b=0.1))["recommendation"]
    assert rec["best"] == "a" and rec["tied"] == ["b"] and rec["pick"] == "b"
    assert "costs less" in rec["reason"]


def test_pick_keeps_the_best_when_costs_barely_differ():
    rec = summarize(_result(latency_a=0.0003, latency_b=0.0001))["recommendation"]
    assert rec["best"] == "a" and rec["pick"] == "a" and "not clearly cheaper" in rec["reason"]
