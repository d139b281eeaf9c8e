"""Smoke run on the real assets: SmolLM2 + ml-100k, listwise prompts with KG facts, two optimizer steps."""

from __future__ import annotations

import math

import pytest

from llmrec.training import TrainConfig, read_card, train

pytestmark = pytest.mark.slow


def test_smollm2_listwise_kg_smoke(tmp_path):
    from llmrec.data import load_dataset
    from llmrec.models import ModelConfig, load_model
    from llmrec.prompts import PromptBuilder
    from llmrec.ranking.listwise import ListwiseScorer

    cfg = TrainConfig.from_dict(
        {
            "output": str(tmp_path / "smollm2-smoke"),
            "model": {"name_or_path": "smollm2"},
            "data": {"dataset": "ml-100k", "max_examples": 2, "positions_per_user": 1, "max_users": 50},
            "negatives": {"n": 4},
            "prompt": {"template": "listwise_kg", "history_budget": 60, "fact_budget": 80, "facts_per_candidate": 1},
            "lora": {"r": 4, "target_modules": ["q_proj", "v_proj"]},
            "optim": {"max_steps": 2, "batch_size": 1, "learning_rate": 0.005, "loss": "choices"},
            "validation": {"users": 1, "negatives": 4, "every": None},
        }
    )
    dataset = load_dataset("ml-100k")
    result = train(cfg, dataset=dataset, progress=False)
    assert result.steps == 2 and all(math.isfinite(x) for x in result.losses)
    card = read_card(tmp_path / "smollm2-smoke")
    assert card["knowledge"] is True and card["template"] == "listwise_kg" and card["dataset"] == "ml-100k"

    def scores(adapters):
        lm = load_model(ModelConfig("smollm2", adapters=adapters))
        builder = PromptBuilder(dataset, lm.tokenizer, "listwise", history_budget=60)
        return ListwiseScorer(lm).score(builder.build(["1", "50", "100"], ["181", "172", "258", "9"])).scores

    base, tuned = scores(()), scores([str(tmp_path / "smollm2-smoke")])
    assert max(abs(a - b) for a, b in zip(base, tuned)) > 1e-5
