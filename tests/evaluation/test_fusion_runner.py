"""The harness's score fusion: fused, LLM-only and no-LLM rows from one LLM run; fitting on validation only."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmrec.errors import ConfigError
from llmrec.ranking.fusion import ScoreFusion

TINY_CONFIG = """
name: fusion-exp
dataset: {dataset}
split: {{kind: leave_one_out, positive_min_rating: 4.0, target: {target}}}
protocol: {{kind: sampled, negatives: 9}}
seed: 0
baseline: cooc
bootstrap_samples: 50
cache_dir: {cache}
results_dir: {results}
comparisons: [[tiny-llm, tiny-llm.no-llm]]
arms:
  - {{name: cooc, kind: cooc}}
  - {{name: tiny-llm, kind: llm, model: {model}, mode: pointwise, template: pointwise, users: 6,
      fusion: {{members: [cooc, popularity], weights: [1.0, 0.5], llm_weight: 0.7}}}}
"""


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory) -> Path:
    from llmrec.models.tiny import save_tiny

    return save_tiny(tmp_path_factory.mktemp("models") / "tiny", seed=0)


def _config(tmp_path, tiny_dir, model, target="test"):
    from llmrec.evaluation import load_config

    path = tmp_path / f"exp-{target}.yaml"
    path.write_text(
        TINY_CONFIG.format(
            dataset=tiny_dir, cache=tmp_path / "cache", results=tmp_path / "results", model=model, target=target
        )
    )
    return load_config(path)


def test_harness_reports_fused_llm_only_and_no_llm_from_one_llm_run(tmp_path, tiny_dir, tiny_model_dir):
    from llmrec.evaluation import run_experiment
    from llmrec.evaluation.summary import summarize
    from llmrec.retrieval import build_retriever

    config = _config(tmp_path, tiny_dir, tiny_model_dir)
    result = run_experiment(config, progress=False)
    assert {"tiny-llm", "tiny-llm.llm-only", "tiny-llm.no-llm"} <= set(result.arms)
    fused, alone, without = (result.arms[n] for n in ("tiny-llm", "tiny-llm.llm-only", "tiny-llm.no-llm"))
    pool = {m: build_retriever(m, result.retrievers.train_dataset) for m in ("cooc", "popularity")}
    fusion = ScoreFusion(("cooc", "popularity"), (1.0, 0.5), 0.7)
    for f, a, w in zip(fused.users, alone.users, without.users, strict=True):
        case = result.cases[f.user_id]
        members = [pool[m].score(list(case.history), list(case.candidates)) for m in fusion.members]
        assert f.scores == pytest.approx(fusion.combine(a.scores, members))
        assert w.scores == pytest.approx(fusion.without_llm().combine(None, members))
    summary = summarize(result)
    assert summary["comparisons"][0]["arm"] == "tiny-llm"
    # The LLM ran once: a second run reuses its cached scores for all three rows.
    again = run_experiment(config, progress=False)
    assert again.arms["tiny-llm"].computed == 0


def test_fit_fusion_refuses_test_targets_and_writes_nothing(tmp_path, tiny_dir, tiny_model_dir):
    from llmrec.evaluation import run_experiment
    from llmrec.evaluation.runner import fit_arm_fusion

    result = run_experiment(_config(tmp_path, tiny_dir, tiny_model_dir, "test"), progress=False)
    with pytest.raises(ConfigError, match="validation targets only"):
        fit_arm_fusion(result, "tiny-llm", ["cooc"])
    valid = run_experiment(_config(tmp_path, tiny_dir, tiny_model_dir, "valid"), progress=False)
    fusion = fit_arm_fusion(valid, "tiny-llm", ["cooc"])
    assert fusion.members == ("cooc",) and fusion.fitted["split"]["target"] == "valid"
    kept = fit_arm_fusion(valid, "tiny-llm", ["cooc"], keep_llm=True)
    assert "cv" in fusion.fitted and "llm_dropped" not in kept.fitted
    if "llm_dropped" in fusion.fitted:  # a random tiny model helps only by chance
        assert fusion.llm_weight == 0 and kept.llm_weight == fusion.fitted["llm_weight_fit"]


def test_an_adapter_card_without_fusion_weights_is_named_with_the_command(tmp_path, caplog):
    import logging

    from llmrec.evaluation.config import ArmConfig
    from llmrec.evaluation.runner import arm_fusion
    from llmrec.models.adapters import AdapterCard, write_card

    folder = tmp_path / "old-adapter"
    folder.mkdir()
    for name in ("adapter_config.json", "adapter_model.safetensors", "train_config.yaml"):
        (folder / name).write_text("{}")  # only the card is read here
    write_card(folder, AdapterCard(base_model="tiny", name="old", mode="pointwise", template="pointwise"))
    arm = ArmConfig(name="old-llm", kind="llm", mode="pointwise")
    with caplog.at_level(logging.WARNING, logger="llmrec.evaluation.runner"):
        assert arm_fusion(arm, folder) is None
    assert f"arm 'old-llm', adapter {folder}: its card has no score-fusion weights" in caplog.text
    assert "--fit-fusion ARM --write-card" in caplog.text and "here ARM is old-llm" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="llmrec.evaluation.runner"):
        assert arm_fusion(ArmConfig(name="off", kind="llm", mode="pointwise", fusion=False), folder) is None
    assert caplog.text == ""


def _rank_as_a_user_would(result, arm, model_dir):
    """Each evaluated user's case ranked through `Reranker.rank` built the way a user builds it (not through the
    harness's helpers), on the split's train part; by user id."""
    from llmrec.ranking import Reranker, RerankerConfig

    config = RerankerConfig(
        model=str(model_dir), adapter=None, mode="pointwise", template="pointwise", knowledge=False,
        fusion=dict(arm.fusion),
    )  # fmt: skip
    reranker = Reranker(result.retrievers.train_dataset, config)
    cases = [result.cases[u.user_id] for u in result.arms[arm.name].users if u.scored]
    return {c.user_id: reranker.rank(list(c.history), list(c.candidates)) for c in cases}


@pytest.mark.parametrize("depth", [None, 4])
def test_the_harness_ranks_as_the_reranker_users_call(tmp_path, tiny_dir, tiny_model_dir, depth):
    import dataclasses

    from llmrec.evaluation import run_experiment
    from llmrec.evaluation.markdown import render_markdown
    from llmrec.evaluation.summary import summarize

    config = _config(tmp_path, tiny_dir, tiny_model_dir)
    fusion = {"members": ["cooc", "popularity"], "weights": [1.0, 0.5], "llm_weight": 0.7, "llm_depth": depth}
    arm = dataclasses.replace(config.arm("tiny-llm"), fusion={k: v for k, v in fusion.items() if v is not None})
    result = run_experiment(dataclasses.replace(config, arms=(config.arm("cooc"), arm)), progress=False)
    ranked = _rank_as_a_user_would(result, arm, tiny_model_dir)
    assert len(ranked) == 6
    rows = result.arms
    no_llm = {u.user_id: u for u in rows["tiny-llm.no-llm"].users}
    for user in rows["tiny-llm"].users:
        mine, candidates = ranked[user.user_id], result.cases[user.user_id].candidates
        by_id = dict(zip(mine.item_ids, mine.scores, strict=True))
        assert user.scores == tuple(by_id[c] for c in candidates)  # the same scores, not just close ones
        assert user.prompt_tokens == mine.prompt_tokens
        assert no_llm[user.user_id].scores == tuple(mine.first_stage_scores[c] for c in candidates)
        assert len(mine.llm_scores) == (4 if depth else len(candidates))
    assert ("tiny-llm.llm-only" in rows) == (depth is None)  # at a depth the LLM has no full ranking of its own
    text = render_markdown(summarize(result))
    assert "| members alone (z-scored: cooc 1, popularity 0.5) |" in text
    if depth:
        assert "| z-fused: LLM 0.7, cooc 1, popularity 0.5; LLM on the members' top 4 |" in text
        shallow = sum(u.prompt_tokens for u in rows["tiny-llm"].users)
        full = run_experiment(config, progress=False)  # the config's own arm: the same fusion at full depth
        assert shallow < sum(u.prompt_tokens for u in full.arms["tiny-llm"].users)


def test_arm_fields_are_not_set_twice_and_removed_keys_are_refused(tmp_path, tiny_dir, tiny_model_dir):
    import dataclasses

    from llmrec.evaluation.config import ArmConfig, ExperimentConfig
    from llmrec.evaluation.llm import reranker_config

    config = _config(tmp_path, tiny_dir, tiny_model_dir)
    with pytest.raises(ConfigError, match=r"options \['llm_depth'\] are arm fields; set 'fusion.llm_depth'"):
        reranker_config(dataclasses.replace(config.arm("tiny-llm"), options={"llm_depth": 4}))
    arm = {"name": "x", "kind": "llm", "mode": "pointwise", "llm_scores": "depth"}
    with pytest.raises(ConfigError, match="llm_scores"):  # gone: an arm's LLM scores what its Reranker scores
        ExperimentConfig.from_dict({"name": "e", "dataset": "d", "arms": [arm]})
    depth = {"members": ["cooc"], "weights": [1.0], "llm_weight": 0.5, "llm_depth": 2}
    deep = ArmConfig(name="d", kind="llm", mode="pointwise", fusion=depth)
    with pytest.raises(ConfigError, match="names 'd.llm-only', which is not an arm"):
        dataclasses.replace(config, arms=(config.arm("cooc"), deep), comparisons=(("d.llm-only", "cooc"),))


def test_a_reranker_arm_is_the_pipeline_a_user_builds_from_the_same_config(tmp_path, tiny_dir, tiny_model_dir):
    import dataclasses

    from llmrec.evaluation import run_experiment
    from llmrec.evaluation.config import ArmConfig
    from llmrec.ranking import Reranker, RerankerConfig

    config = _config(tmp_path, tiny_dir, tiny_model_dir)
    fields = {
        "model": str(tiny_model_dir), "adapter": None, "mode": "pointwise", "template": "pointwise",
        "knowledge": False, "fusion": {"members": ["cooc"], "weights": [1.0], "llm_weight": 0.4},
    }  # fmt: skip
    arm = ArmConfig(name="pipeline", kind="reranker", reranker=fields, users=6)
    assert arm.is_llm and arm.model == str(tiny_model_dir) and arm.mode == "pointwise"
    result = run_experiment(dataclasses.replace(config, arms=(config.arm("cooc"), arm), comparisons=()), progress=False)
    assert set(result.arms) == {"cooc", "pipeline"}  # the pipeline's one row: no .no-llm / .llm-only rows
    reranker = Reranker(result.retrievers.train_dataset, RerankerConfig.from_dict(fields))
    for user in result.arms["pipeline"].users:
        case = result.cases[user.user_id]
        mine = reranker.rank(list(case.history), list(case.candidates))
        by_id = dict(zip(mine.item_ids, mine.scores, strict=True))
        assert user.scores == tuple(by_id[c] for c in case.candidates)


def test_a_reranker_arm_whose_llm_has_weight_0_skips_it_and_keeps_the_first_stage_order(
    tmp_path, tiny_dir, tiny_model_dir
):
    import dataclasses

    from llmrec.evaluation import run_experiment
    from llmrec.evaluation.config import ArmConfig

    config = _config(tmp_path, tiny_dir, tiny_model_dir)
    fields = {
        "model": str(tiny_model_dir), "adapter": None, "mode": "pointwise", "template": "pointwise",
        "fusion": {"members": ["cooc"], "weights": [1.0], "llm_weight": 0.0},
    }  # fmt: skip
    arm = ArmConfig(name="pipeline", kind="reranker", reranker=fields, users=6)
    with pytest.warns(UserWarning, match="weight 0 in its score fusion with cooc: it is not run"):
        result = run_experiment(
            dataclasses.replace(config, arms=(config.arm("cooc"), arm), comparisons=()), progress=False
        )
    cooc = {u.user_id: u for u in result.arms["cooc"].users}
    for user in result.arms["pipeline"].users:
        assert user.prompt_tokens == 0  # the LLM never ran
        assert user.rank == cooc[user.user_id].rank  # ranked by the first stage (cooc) alone


def test_a_reranker_arm_takes_its_settings_only_from_its_reranker_config():
    from llmrec.evaluation.config import ArmConfig
    from llmrec.models.adapters import DEFAULT_ADAPTERS

    default = ArmConfig(name="default", kind="reranker")
    assert default.adapter == DEFAULT_ADAPTERS["pointwise"] and default.model == "smollm2"
    assert default.resolved()["reranker"] == {} and default.resolved()["adapter"] == DEFAULT_ADAPTERS["pointwise"]
    with pytest.raises(ConfigError, match="'mode'.* do not apply to a reranker arm"):
        ArmConfig(name="x", kind="reranker", mode="pointwise")
    with pytest.raises(ConfigError, match="unknown"):
        ArmConfig(name="x", kind="reranker", reranker={"modes": "pointwise"})
    with pytest.raises(ConfigError, match="applies to reranker arms"):
        ArmConfig(name="x", kind="cooc", reranker={"mode": "pointwise"})
