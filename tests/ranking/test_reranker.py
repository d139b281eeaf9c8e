"""The Reranker facade end to end on the tiny KG dataset and a tiny random model."""

from __future__ import annotations

from pathlib import Path

import pytest
from numerics import approx_across_batchings, assert_same_ranking, batching_tolerance

from llmrec.errors import ConfigError, UnknownIdError
from llmrec.models import AdapterError
from llmrec.models.tiny import save_tiny
from llmrec.ranking import RankedList, RankingError, Reranker, RerankerConfig
from llmrec.ranking.listwise import ListwiseScorer
from llmrec.ranking.windows import window_spans

HISTORY = ["2", "3", "4", "1"]
CANDIDATES = ["5", "6", "7", "9", "10", "12"]


@pytest.fixture
def make(kg_tiny, knowledge, tiny_lm):
    def build(**opts) -> Reranker:
        return Reranker(kg_tiny, RerankerConfig(**opts), lm=tiny_lm, knowledge=knowledge)

    return build


def _check_consistent(ranked: RankedList, candidates):
    assert sorted(ranked.item_ids) == sorted(candidates)
    assert list(ranked.scores) == sorted(ranked.scores, reverse=True)
    assert ranked.ranks == tuple(range(1, len(candidates) + 1))
    assert set(ranked.timings) == {"retrieve", "prompt", "score", "total"}
    assert ranked.prompt_tokens > 0 and ranked.forward_passes >= 1
    assert set(ranked.facts) == set(ranked.item_ids)


def test_listwise_rank_orders_by_the_scorer_scores(make, tiny_lm):
    reranker = make(mode="listwise")
    ranked = reranker.rank(HISTORY, CANDIDATES)
    _check_consistent(ranked, CANDIDATES)
    assert ranked.mode == "listwise" and ranked.forward_passes == 1 and ranked.windows == 1
    assert ranked.score_kind == "label_logprob"
    direct = ListwiseScorer(tiny_lm).score(reranker.builder.build(HISTORY, CANDIDATES))
    by_id = dict(zip(direct.candidate_ids, direct.scores))
    assert ranked.scores == pytest.approx([by_id[i] for i in ranked.item_ids], abs=1e-5)
    assert any(ranked.facts[i] for i in ranked.item_ids)  # the KG spoke about some candidate
    top = reranker.rank(HISTORY, CANDIDATES, k=2)
    assert top.item_ids == ranked.item_ids[:2] and len(top) == 2
    data = ranked.to_dict()
    assert [r["item_id"] for r in data["ranked"]] == list(ranked.item_ids)
    assert data["mode"] == "listwise" and data["forward_passes"] == 1


@pytest.mark.parametrize("mode", ["listwise", "pointwise"])
def test_rank_batch_equals_one_by_one(make, mode):
    reranker = make(mode=mode, batch_size=4)
    histories = [HISTORY, ["8", "9"], ["7"]]
    cands = [CANDIDATES, ["1", "2", "3"], ["4", "5"]]
    batched = reranker.rank_batch(histories, cands)
    for h, c, res in zip(histories, cands, batched):
        alone = reranker.rank(h, c)  # another batching: the same ranking up to the last bits of the scores
        tol = batching_tolerance(alone.scores)
        assert_same_ranking(res.item_ids, res.scores, alone.item_ids, alone.scores, tol=tol)
        assert res.prompt_tokens == alone.prompt_tokens and res.encoded_tokens == alone.encoded_tokens


def test_candidates_are_retrieved_when_not_given(kg_tiny, knowledge, tiny_lm):
    from llmrec.retrieval import PopularityRetriever

    reranker = Reranker(
        kg_tiny,
        RerankerConfig(n_candidates=4),
        lm=tiny_lm,
        knowledge=knowledge,
        retriever=PopularityRetriever.fit(kg_tiny),
    )
    ranked = reranker.rank(HISTORY)
    assert len(ranked) == 4 and ranked.candidate_source == "popularity"
    assert not set(ranked.item_ids) & set(HISTORY)


def test_more_candidates_than_the_window_use_sliding_windows(make):
    ranked = make(mode="listwise", window_size=3).rank(HISTORY, CANDIDATES)
    _check_consistent(ranked, CANDIDATES)
    assert ranked.windows == len(window_spans(6, 3, 1)) == ranked.forward_passes
    assert ranked.score_kind == "rank" and ranked.scores == tuple(float(6 - n) for n in range(6))


def test_position_bias_bootstrap_is_seeded(make):
    a = make(mode="listwise", permutations=3, seed=1).rank(HISTORY, CANDIDATES)
    b = make(mode="listwise", permutations=3, seed=1).rank(HISTORY, CANDIDATES)
    one = make(mode="listwise").rank(HISTORY, CANDIDATES)
    _check_consistent(a, CANDIDATES)
    assert a.item_ids == b.item_ids and a.scores == b.scores
    assert a.forward_passes == 3 and a.permutations == 3
    assert (
        a.scores != one.scores
    )  # averaging over shuffled orders changes the scores of a position-biased model


@pytest.mark.parametrize("mode", ["pointwise", "generative"])
def test_other_modes_rank_through_the_facade(make, mode):
    ranked = make(mode=mode, max_new_tokens=10).rank(HISTORY, CANDIDATES)
    _check_consistent(ranked, CANDIDATES)
    assert ranked.mode == mode
    if mode == "pointwise":
        assert ranked.score_kind == "yes_no_margin" and ranked.encoded_tokens < ranked.prompt_tokens
    else:
        assert (
            ranked.score_kind == "rank" and len(ranked.raw_outputs) == 1 and ranked.parse_failures in (0, 1)
        )


def test_bad_requests_raise_clear_errors(make):
    reranker = make(mode="listwise")
    with pytest.raises(RankingError, match="empty"):
        reranker.rank(HISTORY, [])
    with pytest.raises(RankingError, match="duplicate candidate id.*5"):
        reranker.rank(HISTORY, ["5", "6", "5"])
    with pytest.raises(UnknownIdError, match="nope"):
        reranker.rank(HISTORY, ["5", "nope"])
    with pytest.raises(UnknownIdError, match="ghost"):
        reranker.rank(["ghost"], ["5", "6"])
    with pytest.raises(ConfigError, match="k must be"):
        reranker.rank(HISTORY, CANDIDATES, k=0)
    single = reranker.rank(HISTORY, ["5"])
    assert single.item_ids == ("5",) and single.scores == pytest.approx(
        (0.0,), abs=1e-6
    )  # log p = 0 of one label


def test_bad_configs_raise_clear_errors(make):
    with pytest.raises(ConfigError, match="pointwise"):
        make(mode="pointwise", permutations=2)
    with pytest.raises(ConfigError, match="listwise template"):
        make(mode="pointwise", template="listwise_kg")
    with pytest.raises(ConfigError, match="unknown config key .* in RerankerConfig"):
        RerankerConfig.from_dict({"mode": "listwise", "windw_size": 3})
    with pytest.raises(ConfigError, match="mode"):
        RerankerConfig(mode="pairwise")
    with pytest.raises(ConfigError, match="smaller than the window"):
        make(mode="listwise", window_size=4, window_step=4)


def test_missing_adapter_path_is_refused(kg_tiny, knowledge, tmp_path):
    model_dir = save_tiny(tmp_path / "tiny-model")
    with pytest.raises(AdapterError, match="does not exist"):
        Reranker(
            kg_tiny,
            RerankerConfig(model=str(model_dir), adapter=str(tmp_path / "no-such-adapter")),
            knowledge=knowledge,
        )


def test_candidate_order_lists_candidates_best_first_by_the_retriever(make, kg_tiny, tiny_lm):
    from llmrec.ranking.order import order_candidates
    from llmrec.retrieval import build_retriever

    expected = order_candidates(build_retriever("cooc", kg_tiny), HISTORY, CANDIDATES)
    assert expected != CANDIDATES  # otherwise this test could not tell the orders apart
    reranker = make(mode="listwise", candidate_order="cooc")
    ranked = reranker.rank(HISTORY, CANDIDATES)
    shown = ListwiseScorer(tiny_lm).score(reranker.builder.build(HISTORY, expected))
    by_id = dict(zip(shown.candidate_ids, shown.scores))
    assert ranked.scores == pytest.approx([by_id[i] for i in ranked.item_ids], abs=1e-5)
    with pytest.raises(ConfigError, match="candidate_order must be one of"):
        make(mode="listwise", candidate_order="best")


def test_score_fusion_reorders_by_the_fused_score(make, tmp_path):
    from llmrec.models.adapters import AdapterCard
    from llmrec.ranking.fusion import ScoreFusion
    from llmrec.ranking.settings import card_fusion
    from llmrec.retrieval import build_retriever

    plain = make(mode="pointwise", adapter=None).rank(HISTORY, CANDIDATES)
    reranker = make(mode="pointwise", adapter=None)
    fusion = ScoreFusion(("cooc", "popularity"), (1.0, 0.5), llm_weight=0.3)
    reranker.fusion = fusion  # what a card's fusion entry sets (read by card_fusion, tested below)
    fused = reranker.rank(HISTORY, CANDIDATES)
    members = [build_retriever(m, reranker.dataset).score(HISTORY, CANDIDATES) for m in fusion.members]
    llm = dict(zip(plain.item_ids, plain.scores))
    expected = dict(zip(CANDIDATES, fusion.combine([llm[c] for c in CANDIDATES], members)))
    assert fused.score_kind == "fused" and fused.fusion == fusion.to_dict()
    assert list(fused.scores) == sorted(fused.scores, reverse=True)
    assert dict(zip(fused.item_ids, fused.scores)) == pytest.approx(expected)
    assert dict(fused.llm_scores) == pytest.approx(llm)

    card = AdapterCard.from_dict({"base_model": "x", "fusion": fusion.to_dict()})
    assert card_fusion(card) == fusion
    assert card_fusion(AdapterCard.from_dict({"base_model": "x"})) is None
    assert card_fusion(None) is None


def test_llm_depth_scores_only_the_members_top_candidates(make):
    from llmrec.ranking.fusion import ScoreFusion
    from llmrec.retrieval import build_retriever

    full = make(mode="pointwise", adapter=None)
    full.fusion = ScoreFusion(("cooc", "popularity"), (1.0, 0.5), llm_weight=0.3)
    reference = full.rank(HISTORY, CANDIDATES)
    shallow = make(mode="pointwise", adapter=None)
    shallow.fusion = ScoreFusion(("cooc", "popularity"), (1.0, 0.5), llm_weight=0.3, llm_depth=3)
    ranked = shallow.rank(HISTORY, CANDIDATES)
    members = [build_retriever(m, shallow.dataset).score(HISTORY, CANDIDATES) for m in shallow.fusion.members]
    top = [CANDIDATES[i] for i in shallow.fusion.llm_candidates(members)]
    assert len(top) == 3 and set(ranked.llm_scores) == set(top)  # the LLM saw only those three
    assert ranked.prompt_tokens < reference.prompt_tokens
    assert set(ranked.item_ids[:3]) == set(top) and sorted(ranked.item_ids) == sorted(CANDIDATES)
    llm = dict(reference.llm_scores)  # pointwise scores do not depend on the other candidates
    assert dict(ranked.llm_scores) == approx_across_batchings({c: llm[c] for c in top})  # 3 prompts vs 6
    expected = shallow.fusion.combine([llm[c] if c in top else float("nan") for c in CANDIDATES], members)
    assert dict(zip(ranked.item_ids, ranked.scores)) == approx_across_batchings(dict(zip(CANDIDATES, expected)))
    assert ranked.ranks == tuple(range(1, len(CANDIDATES) + 1))
    # the same weights passed in the config instead of set on the reranker
    given = make(mode="pointwise", adapter=None, fusion=shallow.fusion.to_dict()).rank(HISTORY, CANDIDATES)
    assert given.item_ids == ranked.item_ids and given.fusion == shallow.fusion.to_dict()
    deeper = make(mode="pointwise", adapter=None, fusion=shallow.fusion.to_dict(), llm_depth=5)
    assert deeper.fusion is not None and deeper.fusion.llm_depth == 5
    with pytest.raises(ConfigError, match="RerankerConfig.fusion: unknown keys \\['weight'\\]"):
        RerankerConfig(fusion={"members": ["cooc"], "weights": [1.0], "llm_weight": 0.1, "weight": 1})
    with pytest.raises(ConfigError, match="fusion must be true, false or a mapping"):
        RerankerConfig(fusion="card")
    best = ranked.top(2)  # the top keeps the LLM scores of just the items it keeps
    assert best.item_ids == ranked.item_ids[:2] and set(best.llm_scores) == set(best.item_ids) & set(top)


def test_a_member_named_as_the_first_stage_is_the_first_stage_itself(make):
    reranker = make(mode="pointwise", adapter=None, retriever="cooc", candidate_order="cooc", n_candidates=5,
                    fusion={"members": ["cooc", "popularity"], "weights": [1.0, 0.5], "llm_weight": 0.3})  # fmt: skip
    ranked = reranker.rank(HISTORY)  # the first stage retrieves; its own score is a fusion member
    assert reranker._fusion_members is not None and reranker._fusion_members[0] is reranker.retriever
    assert reranker._candidate_orderer() is reranker.retriever  # built once for all three uses
    assert reranker._fusion_members[1] is not reranker.retriever
    members = [m.score(HISTORY, list(ranked.item_ids)) for m in reranker._fusion_members]
    llm = [ranked.llm_scores[i] for i in ranked.item_ids]
    assert list(ranked.scores) == pytest.approx(list(reranker.fusion.combine(llm, members)))


@pytest.fixture(scope="module")
def carded(tmp_path_factory):
    """A tiny base model and a LoRA adapter for it whose card says: pointwise, `pointwise` template."""
    import shutil

    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from llmrec.models.adapters import AdapterCard, write_card

    root = tmp_path_factory.mktemp("carded")
    model_dir = save_tiny(root / "tiny-model", init_range=0.3)
    peft_model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(model_dir), LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj"])
    )
    folder = root / "pointwise-adapter"
    peft_model.save_pretrained(folder)
    (folder / "train_config.yaml").write_text("mode: pointwise\n")
    write_card(
        folder,
        AdapterCard(base_model=str(model_dir), name="pointwise-adapter", mode="pointwise", template="pointwise"),
    )
    leaky = root / "leaky-adapter"
    shutil.copytree(folder, leaky)
    write_card(
        leaky,
        AdapterCard.from_dict(
            {
                "base_model": str(model_dir),
                "mode": "pointwise",
                "template": "pointwise",
                "training_split": {"kind": "leave_one_out", "positive_min_rating": None, "min_history": 3},
            }
        ),
    )
    return model_dir, folder, leaky


def test_the_adapter_card_sets_mode_and_template_unless_told(kg_tiny, knowledge, carded):
    import warnings

    from llmrec.errors import LlmrecWarning, OlderCardWarning

    model_dir, folder, _ = carded
    reranker = Reranker(kg_tiny, RerankerConfig(model=str(model_dir), adapter=str(folder)), knowledge=knowledge)
    assert (reranker.mode, reranker.template.name) == ("pointwise", "pointwise")
    assert reranker.adapter_card is not None and reranker.adapter_card.mode == "pointwise"
    ranked = reranker.rank(HISTORY, CANDIDATES[:3])
    assert ranked.mode == "pointwise" and ranked.score_kind == "yes_no_margin"
    with pytest.warns(LlmrecWarning, match="trained for pointwise scoring .* ranks in listwise mode"):
        told = Reranker(
            kg_tiny, RerankerConfig(model=str(model_dir), adapter=str(folder), mode="listwise"), knowledge=knowledge
        )
    assert (told.mode, told.template.name) == ("listwise", "listwise_kg")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.simplefilter("ignore", OlderCardWarning)  # the test card has no fusion weights: noted elsewhere
        kg = Reranker(
            kg_tiny,
            RerankerConfig(model=str(model_dir), adapter=str(folder), template="pointwise_kg"),
            knowledge=knowledge,
        )
    assert kg.template.name == "pointwise_kg"


def test_default_adapter_follows_the_mode():
    assert RerankerConfig().adapter_ref == "smollm2-ml100k-pointwise-residual"  # the default mode: pointwise
    assert RerankerConfig().template_name == "pointwise_kg"
    assert RerankerConfig(mode="listwise").adapter_ref == "smollm2-ml100k-listwise-kg"
    assert RerankerConfig(mode="generative").adapter_ref == "smollm2-ml100k-listwise-kg"
    assert RerankerConfig(mode="pointwise").adapter_ref == "smollm2-ml100k-pointwise-residual"
    assert RerankerConfig(template="pointwise").adapter_ref == "smollm2-ml100k-pointwise-residual"
    assert RerankerConfig(adapter="my-adapter", mode="pointwise").adapter_ref == "my-adapter"
    assert RerankerConfig(model="my/other-model", mode="pointwise").adapter_ref is None
    assert RerankerConfig(adapter=None).adapter_ref is None


def test_an_adapter_trained_on_evaluation_targets_is_refused(carded):
    from llmrec.data import SplitLeakError, leave_one_out, load_dataset

    model_dir, folder, leaky = carded
    tiny = load_dataset(Path(__file__).parents[1] / "data" / "tiny")
    split = leave_one_out(tiny, min_history=1)
    with pytest.raises(SplitLeakError, match=r"min_history 3.*min_history 1.*user u1: i3, i4"):
        Reranker(split.train_dataset, RerankerConfig(model=str(model_dir), adapter=str(leaky), knowledge=False))
    # the same adapter on the whole dataset (no split, nothing held out) is fine
    Reranker(tiny, RerankerConfig(model=str(model_dir), adapter=str(leaky), knowledge=False))
    # a caller that checked the users it ranks itself (the harness) can turn the whole-split check off
    config = RerankerConfig(model=str(model_dir), adapter=str(leaky), knowledge=False, check_split=False)
    assert Reranker(split.train_dataset, config).adapter_card is not None


def test_merge_adapter_scores_as_the_attached_adapter(kg_tiny, knowledge, carded, tmp_path):
    import warnings

    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from llmrec.errors import OlderCardWarning
    from llmrec.models.adapters import AdapterCard, write_card

    model_dir, _, _ = carded
    lora = LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    folder = tmp_path / "random-adapter"  # random B: the adapter changes the scores, so merging has work to do
    get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir), lora).save_pretrained(folder)
    (folder / "train_config.yaml").write_text("mode: pointwise\n")
    write_card(folder, AdapterCard(base_model=str(model_dir), name="random-adapter", mode="pointwise",
                                   template="pointwise"))  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OlderCardWarning)
        attached, merged = (
            Reranker(kg_tiny, RerankerConfig(model=str(model_dir), adapter=str(folder), merge_adapter=m),
                     knowledge=knowledge)  # fmt: skip
            for m in (False, True)
        )
        bare = Reranker(kg_tiny, RerankerConfig(model=str(model_dir), adapter=None, mode="pointwise"),
                        knowledge=knowledge)  # fmt: skip
    assert merged.lm.merged_adapter == "random-adapter" and attached.lm.merged_adapter is None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OlderCardWarning)
        default = Reranker(kg_tiny, RerankerConfig(model=str(model_dir), adapter=str(folder)), knowledge=knowledge)
        given = Reranker(kg_tiny, RerankerConfig(model=str(model_dir), adapter=str(folder)), lm=attached.lm,
                         knowledge=knowledge)  # fmt: skip
    assert default.lm.merged_adapter == "random-adapter"  # a Reranker that loads its model merges by default
    assert given.lm is attached.lm  # a model passed in is used as loaded
    a, m, b = (r.rank(HISTORY, CANDIDATES) for r in (attached, merged, bare))
    by_id = dict(zip(a.item_ids, a.scores))
    assert m.scores == pytest.approx([by_id[i] for i in m.item_ids], abs=1e-4)
    assert b.scores != pytest.approx([by_id[i] for i in b.item_ids], abs=1e-4)
    with pytest.raises(ConfigError, match="merge_adapter=True needs an adapter"):
        Reranker(kg_tiny, RerankerConfig(model=str(model_dir), adapter=None, mode="pointwise", merge_adapter=True))
    with pytest.raises(ConfigError, match="lm="):
        Reranker(kg_tiny, RerankerConfig(model=str(model_dir), adapter=str(folder), merge_adapter=True),
                 lm=attached.lm, knowledge=knowledge)  # fmt: skip
    with pytest.raises(ConfigError, match="true or false"):
        RerankerConfig(merge_adapter="yes")
    with pytest.raises(ConfigError, match="llm_depth=5 needs score fusion, but the bare model has no adapter card"):
        Reranker(kg_tiny, RerankerConfig(model=str(model_dir), adapter=None, mode="pointwise", llm_depth=5),
                 knowledge=knowledge)  # fmt: skip
    with pytest.raises(ConfigError, match="llm_depth=5 needs score fusion, but fusion=False"):
        Reranker(kg_tiny, RerankerConfig(model=str(model_dir), adapter=None, mode="pointwise", llm_depth=5,
                                         fusion=False), knowledge=knowledge)  # fmt: skip
    with pytest.raises(ConfigError, match="llm_depth must be None or an integer >= 1"):
        RerankerConfig(llm_depth=0)


def test_a_card_fusion_that_gives_the_llm_no_weight_skips_it_and_says_so(kg_tiny, knowledge, carded, tmp_path, caplog):
    import dataclasses
    import logging
    import shutil

    from llmrec.errors import LlmSkippedWarning
    from llmrec.models.adapters import read_adapter_card, update_card
    from llmrec.ranking.fusion import ScoreFusion

    model_dir, folder, _ = carded
    dropped = tmp_path / "dropped-adapter"
    shutil.copytree(folder, dropped)
    fusion = ScoreFusion(("cooc",), (1.0,), 0.0, {"llm_dropped": "the LLM did not raise held-out NDCG@10"})
    update_card(dropped, dataclasses.replace(read_adapter_card(dropped), fusion=fusion.to_dict()))
    with pytest.warns(LlmSkippedWarning, match="has weight 0 in its score fusion with cooc: it is not run"):
        skipping = Reranker(kg_tiny, RerankerConfig(model=str(model_dir), adapter=str(dropped)), knowledge=knowledge)
    assert skipping.lm is None and skipping.llm_skipped is not None  # never loaded
    ranked = skipping.rank(HISTORY, CANDIDATES[:4])
    cooc = dict(zip(CANDIDATES[:4], fusion.combine(None, [skipping._fusion_members[0].score(HISTORY, CANDIDATES[:4])])))
    assert dict(zip(ranked.item_ids, ranked.scores)) == pytest.approx(cooc)
    assert ranked.llm_skipped == skipping.llm_skipped and ranked.prompt_tokens == 0 and ranked.llm_scores == {}
    # forced, the LLM runs, and the log says its cost buys nothing at weight 0
    with caplog.at_level(logging.WARNING, logger="llmrec.ranking.settings"):
        forced = Reranker(kg_tiny, RerankerConfig(model=str(model_dir), adapter=str(dropped), force_llm=True),
                          knowledge=knowledge)  # fmt: skip
    assert "gives the LLM weight 0" in caplog.text and "did not raise held-out NDCG@10" in caplog.text
    ranked = forced.rank(HISTORY, CANDIDATES[:4])
    assert ranked.prompt_tokens > 0 and ranked.llm_skipped is None
    assert dict(zip(ranked.item_ids, ranked.scores)) == pytest.approx(cooc)
