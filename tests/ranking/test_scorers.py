"""The three scorers on a tiny random model with real prompts from the PromptBuilder."""

from __future__ import annotations

import pytest
import torch

from llmrec.models.tiny import tiny_loaded
from llmrec.ranking import (
    ContextLengthError,
    GenerativeScorer,
    ListwiseScorer,
    NonFiniteLogitsError,
    PointwiseScorer,
    RankingError,
)
from llmrec.ranking.pointwise import common_prefix_length

HISTORY = ["2", "3", "4", "1"]
CANDIDATES = ["5", "6", "7", "9", "10", "12"]


def test_common_prefix_length():
    assert common_prefix_length([[1, 2, 3], [1, 2, 4], [1, 2]]) == 2
    assert common_prefix_length([[5], [6]]) == 0
    assert common_prefix_length([[1, 2, 3]]) == 3


@pytest.mark.parametrize("batch_size", [1, 4, 16])
def test_pointwise_prefix_cache_gives_the_uncached_scores(builder_for, tiny_lm, batch_size):
    prompts = builder_for("pointwise_kg").build(HISTORY, CANDIDATES)
    cached = PointwiseScorer(tiny_lm, batch_size=batch_size).score(prompts)
    naive = PointwiseScorer(tiny_lm, batch_size=batch_size, use_prefix_cache=False).score(prompts)
    assert cached.details["prefix_cache"] and cached.details["prefix_tokens"] > 100
    assert cached.candidate_ids == naive.candidate_ids == tuple(CANDIDATES)
    assert cached.encoded_tokens < naive.encoded_tokens == cached.prompt_tokens
    assert cached.forward_passes == naive.forward_passes + 1  # + the one prefix pass
    # the scores differ between candidates (the check below would be vacuous otherwise) ...
    assert max(naive.scores) - min(naive.scores) > 1e-3
    # ... and the cache changes nothing but float rounding
    assert cached.scores == pytest.approx(naive.scores, abs=1e-4)


def test_pointwise_score_is_yes_minus_no_logit_of_the_full_prompt(builder_for, tiny_lm):
    prompts = builder_for("pointwise_kg").build(HISTORY, CANDIDATES[:3])
    result = PointwiseScorer(tiny_lm, batch_size=2).score(prompts)
    tok = tiny_lm.tokenizer
    yes, no = tok.convert_tokens_to_ids(["Yes", "No"])
    for prompt, score in zip(prompts, result.scores):
        ids = tok(prompt.text, add_special_tokens=prompt.add_special_tokens, return_tensors="pt")
        with torch.inference_mode():
            logits = tiny_lm.model(**ids).logits[0, -1]
        assert score == pytest.approx(float(logits[yes] - logits[no]), abs=1e-4)


def test_listwise_reads_label_logits_at_the_last_position(builder_for, tiny_lm):
    [prompt] = builder_for("listwise_kg").build(HISTORY, CANDIDATES)
    result = ListwiseScorer(tiny_lm).score([prompt])
    assert result.forward_passes == 1 and result.score_kind == "label_logprob"
    tok = tiny_lm.tokenizer
    label_ids = tok.convert_tokens_to_ids(list(prompt.labels))
    ids = tok(prompt.text, add_special_tokens=prompt.add_special_tokens, return_tensors="pt")
    with torch.inference_mode():
        full = tiny_lm.model(**ids).logits[0, -1]  # the whole sequence's logits, last row
    expected = torch.log_softmax(full[label_ids], -1)
    assert result.scores == pytest.approx(expected.tolist(), abs=1e-4)
    assert sum(torch.tensor(result.scores).exp().tolist()) == pytest.approx(1.0, abs=1e-4)


def test_listwise_batch_across_users_equals_one_by_one(builder_for, tiny_lm):
    builder = builder_for("listwise_kg")
    sets = [
        builder.build(HISTORY, CANDIDATES),
        builder.build(["8", "9"], ["1", "2", "3"]),
        builder.build([], ["4"]),
    ]
    scorer = ListwiseScorer(tiny_lm, batch_size=3)
    batched = scorer.score_many(sets)
    for prompts, res in zip(sets, batched):
        alone = scorer.score(prompts)
        assert res.candidate_ids == alone.candidate_ids
        assert res.scores == pytest.approx(alone.scores, abs=1e-4)


@pytest.mark.parametrize("batch_size", [1, 3, 16])
def test_pointwise_batch_across_users_equals_one_by_one(builder_for, tiny_lm, batch_size):
    builder = builder_for("pointwise_kg")
    sets = [  # prefixes of different lengths (left-padded together), and a one-candidate set
        builder.build(HISTORY, CANDIDATES),
        builder.build(["8", "9"], ["1", "2", "3"]),
        builder.build(["7"], ["4"]),
    ]
    scorer = PointwiseScorer(tiny_lm, batch_size=batch_size)
    calls = []
    hook = tiny_lm.model.register_forward_hook(lambda *_: calls.append(1))
    try:
        batched = scorer.score_many(sets)
        batched_calls = len(calls)
        alone = [scorer.score(prompts) for prompts in sets]
    finally:
        hook.remove()
    # the sets share forward passes: one prefix pass for the two cached sets, suffix rows of both side by side
    assert batched_calls < len(calls) - batched_calls
    assert len({r.details["prefix_tokens"] for r in alone}) > 1
    for res, one in zip(batched, alone):
        assert res.candidate_ids == one.candidate_ids
        assert res.scores == pytest.approx(one.scores, abs=1e-4)
        assert (res.prompt_tokens, res.encoded_tokens) == (one.prompt_tokens, one.encoded_tokens)
    assert max(batched[0].scores) - min(batched[0].scores) > 1e-3  # not vacuous


def test_generative_scorer_returns_a_full_permutation_and_counts_failures(builder_for, tiny_lm, kg_tiny):
    [prompt] = builder_for("generative").build(HISTORY, CANDIDATES)
    titles = {i: it.title for i, it in kg_tiny.items.items()}
    result = GenerativeScorer(tiny_lm, max_new_tokens=12, titles=titles).score([prompt])
    assert sorted(result.scores) == [float(n) for n in range(1, len(CANDIDATES) + 1)]
    assert result.forward_passes == result.details["generated_tokens"] <= 12
    assert result.raw_output is not None
    # a random model cannot name all six candidates in order: the output is counted as malformed
    assert result.parse_failures == 1 and result.details["named"] < len(CANDIDATES)


def test_prompt_longer_than_context_is_refused(builder_for):
    short = tiny_loaded(seed=0, context=64)
    builder = builder_for("listwise_kg", lm=short)
    [prompt] = builder.build(HISTORY, CANDIDATES)
    with pytest.raises(ContextLengthError, match="context of 64"):
        ListwiseScorer(short).score([prompt])
    with pytest.raises(ContextLengthError):
        PointwiseScorer(short).score(builder_for("pointwise_kg", lm=short).build(HISTORY, CANDIDATES))


def test_nan_logits_raise_instead_of_ranking(builder_for):
    broken = tiny_loaded(seed=0)
    with torch.no_grad():
        broken.model.model.layers[1].mlp.down_proj.weight[0, 0] = float("nan")
    [prompt] = builder_for("listwise_kg", lm=broken).build(HISTORY, CANDIDATES)
    with pytest.raises(NonFiniteLogitsError, match="NaN"):
        ListwiseScorer(broken).score([prompt])
    with pytest.raises(NonFiniteLogitsError):
        PointwiseScorer(broken).score(builder_for("pointwise_kg", lm=broken).build(HISTORY, CANDIDATES[:2]))


def test_scorers_refuse_malformed_prompt_sets(builder_for, tiny_lm):
    listwise = builder_for("listwise_kg").build(HISTORY, CANDIDATES)
    pointwise = builder_for("pointwise_kg").build(HISTORY, CANDIDATES[:2])
    with pytest.raises(RankingError, match="no prompts"):
        ListwiseScorer(tiny_lm).score([])
    with pytest.raises(RankingError, match="one prompt per candidate set"):
        ListwiseScorer(tiny_lm).score(listwise + listwise)
    with pytest.raises(RankingError, match="duplicate candidate"):
        PointwiseScorer(tiny_lm).score(pointwise + pointwise[:1])


def test_make_scorer_maps_modes_to_scorers_with_the_options_given(tiny_lm):
    from llmrec.errors import ConfigError
    from llmrec.ranking.factory import make_scorer

    listwise = make_scorer("listwise", tiny_lm, batch_size=3)
    assert isinstance(listwise, ListwiseScorer) and listwise.batch_size == 3
    pointwise = make_scorer("pointwise", tiny_lm, batch_size=5, prefix_cache=False)
    assert isinstance(pointwise, PointwiseScorer) and pointwise.batch_size == 5 and not pointwise.use_prefix_cache
    generative = make_scorer("generative", tiny_lm, batch_size=1, max_new_tokens=7, titles={"1": "x"})
    assert isinstance(generative, GenerativeScorer) and generative.max_new_tokens == 7
    with pytest.raises(ConfigError, match="listwise, pointwise, generative"):
        make_scorer("pairwise", tiny_lm, batch_size=1)
