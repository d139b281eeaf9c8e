"""The harness ranks as the `Reranker` users call, on real ml-100k users with SmolLM2 and a shipped adapter
(slow: needs the assets)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

CONFIG = """
name: one-path-real
dataset: ml-100k
split: {{kind: leave_one_out, positive_min_rating: 4.0, target: test}}
protocol: {{kind: sampled, negatives: 9}}
users: 2
seed: 3
baseline: cooc
bootstrap_samples: 50
cache_dir: {cache}
results_dir: {results}
arms:
  - {{name: cooc, kind: cooc}}
  - {{name: residual, kind: llm, model: smollm2, adapter: smollm2-ml100k-pointwise-residual, mode: pointwise,
      template: pointwise_kg, knowledge: true,
      fusion: {{members: [ease, cooc], weights: [1.0, 0.5], llm_weight: 0.3, llm_depth: 5}}}}
"""


def test_the_harness_and_a_user_built_reranker_give_the_same_lists_and_scores(tmp_path: Path):
    from llmrec.evaluation import load_config, run_experiment
    from llmrec.ranking import Reranker, RerankerConfig

    path = tmp_path / "one-path.yaml"
    path.write_text(CONFIG.format(cache=tmp_path / "cache", results=tmp_path / "results"))
    config = load_config(path)
    result = run_experiment(config, progress=False)
    arm = config.arm("residual")
    reranker = Reranker(
        result.retrievers.train_dataset,
        RerankerConfig(
            model="smollm2", adapter="smollm2-ml100k-pointwise-residual", mode="pointwise", template="pointwise_kg",
            fusion=dict(arm.fusion), merge_adapter=False,  # attached, as the harness keeps it
        ),
    )  # fmt: skip
    users = result.arms["residual"].users
    assert len(users) == 2
    for user in users:
        case = result.cases[user.user_id]
        ranked = reranker.rank(list(case.history), list(case.candidates))
        by_id = dict(zip(ranked.item_ids, ranked.scores, strict=True))
        assert user.scores == tuple(by_id[c] for c in case.candidates)  # equal, not close: one code path
        assert len(ranked.llm_scores) == 5 and user.prompt_tokens == ranked.prompt_tokens
        no_llm = next(u for u in result.arms["residual.no-llm"].users if u.user_id == user.user_id)
        assert no_llm.scores == tuple(ranked.first_stage_scores[c] for c in case.candidates)
