"""The scorers and the reranker on the real SmolLM2 and real ml-100k users (slow: needs the assets)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow

CANDIDATES = ["50", "181", "100", "258", "294", "286"]


@pytest.fixture(scope="module")
def ml100k():
    from llmrec.data import load_dataset

    return load_dataset("ml-100k")


@pytest.fixture(scope="module")
def smollm2():
    import torch

    from llmrec.models import load_model

    torch.manual_seed(0)
    return load_model("smollm2")


@pytest.fixture(scope="module")
def kg(ml100k):
    from llmrec.knowledge import KnowledgeGraph

    return KnowledgeGraph.from_dataset(ml100k)


def _history(ds, user="1", n=20):
    return [x.item_id for x in ds.history(user)][-n:]


def test_pointwise_prefix_cache_equals_full_prompts_on_smollm2(ml100k, smollm2, kg):
    from llmrec.prompts import PromptBuilder
    from llmrec.ranking import PointwiseScorer

    builder = PromptBuilder(ml100k, smollm2.tokenizer, "pointwise_kg", knowledge=kg, history_budget=200)
    prompts = builder.build(_history(ml100k, "7"), CANDIDATES)
    cached = PointwiseScorer(smollm2, batch_size=6).score(prompts)
    naive = PointwiseScorer(smollm2, batch_size=6, use_prefix_cache=False).score(prompts)
    assert cached.details["prefix_tokens"] > 150
    assert max(naive.scores) - min(naive.scores) > 1e-2
    assert cached.scores == pytest.approx(naive.scores, abs=2e-3)


@pytest.mark.parametrize("mode", ["listwise", "pointwise", "generative"])
def test_reranker_ranks_a_real_user_in_every_mode(ml100k, smollm2, kg, mode):
    from llmrec.ranking import Reranker, RerankerConfig

    reranker = Reranker(
        ml100k,
        RerankerConfig(mode=mode, adapter=None, history_budget=200, max_new_tokens=16),
        lm=smollm2,
        knowledge=kg,
    )
    ranked = reranker.rank(_history(ml100k), CANDIDATES)
    assert sorted(ranked.item_ids) == sorted(CANDIDATES)
    assert list(ranked.scores) == sorted(ranked.scores, reverse=True)
    if mode == "listwise":
        assert ranked.forward_passes == 1
        # scores are label log-probabilities of a real model: a proper distribution over the 6 labels
        import math

        assert sum(math.exp(s) for s in ranked.scores) == pytest.approx(1.0, abs=1e-3)
    if mode == "generative":
        assert len(ranked.raw_outputs) == 1 and ranked.raw_outputs[0].strip()
