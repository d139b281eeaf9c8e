"""The harness's score fusion: fused, LLM-only and no-LLM rows from one LLM run; fitting on validation only."""

from __future__ import annotations

from pathlib import Path

import pytest
from numerics import approx_across_batchings

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


def test_an_arm_with_llm_depth_fuses_only_the_members_top_k_from_the_same_llm_run(tmp_path, tiny_dir, tiny_model_dir):
    import dataclasses

    from llmrec.evaluation import run_experiment
    from llmrec.evaluation.llm import reranker_config
    from llmrec.retrieval import build_retriever

    config = _config(tmp_path, tiny_dir, tiny_model_dir)
    run_experiment(config, progress=False)
    arms = [
        dataclasses.replace(a, fusion={**a.fusion, "llm_depth": 4}) if a.name == "tiny-llm" else a for a in config.arms
    ]
    result = run_experiment(dataclasses.replace(config, arms=arms), progress=False)
    assert result.arms["tiny-llm"].computed == 0  # the depth is applied to the cached LLM scores
    fusion = ScoreFusion(("cooc", "popularity"), (1.0, 0.5), 0.7, llm_depth=4)
    pool = {m: build_retriever(m, result.retrievers.train_dataset) for m in fusion.members}
    for f, a in zip(result.arms["tiny-llm"].users, result.arms["tiny-llm.llm-only"].users, strict=True):
        case = result.cases[f.user_id]
        members = [pool[m].score(list(case.history), list(case.candidates)) for m in fusion.members]
        assert f.scores == pytest.approx(fusion.combine(a.scores, members))
        top = set(fusion.llm_candidates(members))
        assert min(f.scores[i] for i in top) > max(f.scores[i] for i in range(len(f.scores)) if i not in top)
    from llmrec.evaluation.markdown import render_markdown
    from llmrec.evaluation.summary import summarize

    text = render_markdown(summarize(result))
    assert "| z-fused: LLM 0.7, cooc 1, popularity 0.5; LLM on the members' top 4 |" in text
    assert "| members alone (z-scored: cooc 1, popularity 0.5) |" in text and "| LLM alone |" in text
    assert "a `Reranker` with that `llm_depth` scores only K" in text
    with pytest.raises(ConfigError, match=r"options \['llm_depth'\] are arm fields; set 'fusion.llm_depth'"):
        reranker_config(dataclasses.replace(arms[1], options={"llm_depth": 4}))


def test_an_arm_with_llm_scores_depth_scores_only_the_top_k_and_fuses_as_the_full_run(
    tmp_path, tiny_dir, tiny_model_dir
):
    import dataclasses

    from llmrec.evaluation import run_experiment
    from llmrec.evaluation.config import ArmConfig
    from llmrec.evaluation.markdown import render_markdown
    from llmrec.evaluation.summary import summarize

    config = _config(tmp_path, tiny_dir, tiny_model_dir)
    depth = {"members": ["cooc", "popularity"], "weights": [1.0, 0.5], "llm_weight": 0.7, "llm_depth": 4}
    full = dataclasses.replace(config.arm("tiny-llm"), fusion=depth)
    only = dataclasses.replace(full, name="tiny-llm-top4", llm_scores="depth")
    result = run_experiment(dataclasses.replace(config, arms=(config.arm("cooc"), full, only)), progress=False)
    assert "tiny-llm-top4.llm-only" not in result.arms and "tiny-llm-top4.no-llm" in result.arms
    for f, d in zip(result.arms["tiny-llm"].users, result.arms["tiny-llm-top4"].users, strict=True):
        # pointwise scores do not depend on the other candidates, up to the rounding of another batching (4
        # prompts here, 10 in batches of 8 + 2 there), which a z-score over 4 values amplifies
        assert d.scores == approx_across_batchings(f.scores)
        assert d.rank == f.rank
    scored = lambda name: sum(u.prompt_tokens for u in result.arms[name].users)  # noqa: E731
    assert 0 < scored("tiny-llm-top4") < scored("tiny-llm")
    assert result.arms["tiny-llm-top4"].computed == 6
    alone = dataclasses.replace(config, arms=(config.arm("cooc"), only), comparisons=())
    assert run_experiment(alone, progress=False).arms["tiny-llm-top4"].computed == 0  # its own cache
    text = render_markdown(summarize(result))
    assert "as an arm with `llm_scores: depth` does" in text  # tiny-llm still scores every candidate

    with pytest.raises(ConfigError, match="llm_scores: depth needs a score fusion"):
        ArmConfig(name="x", kind="llm", mode="pointwise", fusion=False, llm_scores="depth")
    with pytest.raises(ConfigError, match="llm_scores must be all or depth, got .top."):
        ArmConfig(name="x", kind="llm", mode="pointwise", llm_scores="top")
    with pytest.raises(ConfigError, match="apply to llm arms"):
        ArmConfig(name="x", kind="cooc", llm_scores="depth")
    no_depth = dataclasses.replace(only, fusion={k: v for k, v in depth.items() if k != "llm_depth"})
    with pytest.raises(ConfigError, match="'tiny-llm-top4': llm_scores: depth needs .* its fusion has no llm_depth"):
        run_experiment(dataclasses.replace(alone, arms=(config.arm("cooc"), no_depth)), progress=False)
    with pytest.raises(ConfigError, match="names 'tiny-llm-top4.llm-only', which is not an arm"):
        dataclasses.replace(alone, comparisons=(("tiny-llm-top4.llm-only", "cooc"),))
