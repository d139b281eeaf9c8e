from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmrec.errors import ConfigError
from llmrec.evaluation.arms import check_arm
from llmrec.evaluation.config import ExperimentConfig, load_config


def base(**over):
    data = {
        "name": "t",
        "dataset": "ml-100k",
        "arms": [{"name": "pop", "kind": "popularity"}, {"name": "rnd", "kind": "random"}],
    }
    data.update(over)
    return data


def test_defaults_and_baseline():
    cfg = ExperimentConfig.from_dict(base())
    assert cfg.baseline == "pop"
    assert cfg.protocol.kind == "sampled" and cfg.protocol.negatives == 19
    llm = ExperimentConfig.from_dict(base(arms=[{"name": "l", "kind": "llm", "knowledge": True}])).arms[0]
    assert (llm.model, llm.mode, llm.template, llm.permutations) == ("smollm2", "listwise", "listwise_kg", 1)


def test_dtype_reaches_the_model_and_is_recorded_only_when_set():
    import torch

    from llmrec.evaluation.llm import reranker_config

    plain, bf16 = ExperimentConfig.from_dict(
        base(arms=[{"name": "a", "kind": "llm"}, {"name": "b", "kind": "llm", "dtype": "bfloat16"}])
    ).arms
    assert "dtype" not in plain.resolved()  # the cache fingerprint of arms written before the field is unchanged
    assert bf16.resolved()["dtype"] == "bfloat16"
    # auto is pinned as training pins it: float32 on a CPU (reports replay on any CPU), the GPU's pick on a GPU
    assert reranker_config(plain).model.dtype == ("auto" if torch.cuda.is_available() else "float32")
    assert reranker_config(bf16).model.dtype == "bfloat16"


def test_unknown_arm_field_is_named():
    with pytest.raises(ConfigError, match="'temprature'.*arm 'pop'"):
        ExperimentConfig.from_dict(base(arms=[{"name": "pop", "kind": "popularity", "temprature": 1}]))


def test_llm_field_on_baseline_arm_is_refused():
    with pytest.raises(ConfigError, match="'template'.*llm arms"):
        ExperimentConfig.from_dict(base(arms=[{"name": "pop", "kind": "popularity", "template": "listwise"}]))


@pytest.mark.parametrize(
    ("over", "pattern"),
    [
        ({"protocl": {}}, "'protocl'"),
        ({"protocol": {"kind": "sampled", "negativs": 3}}, "'negativs' in protocol"),
        ({"protocol": {"kind": "leave_none"}}, "protocol.kind"),
        ({"baseline": "nope"}, "baseline 'nope'"),
        ({"arms": []}, "no arms"),
        ({"arms": [{"name": "a", "kind": "random"}, {"name": "a", "kind": "random"}]}, "duplicate arm"),
        ({"arms": [{"name": "a", "kind": "magic"}]}, "kind must be one of"),
        ({"users": 0}, "users must be"),
        ({"comparisons": [["pop", "nope"]]}, "names 'nope'"),
        ({"arms": [{"name": "l", "kind": "llm", "options": {"mode": "pointwise"}}]}, None),
        ({"arms": [{"name": "l", "kind": "llm", "mode": "chat"}]}, "mode must be"),
        ({"arms": [{"name": "l", "kind": "llm", "dtype": "bf16"}]}, "arm 'l': dtype must be auto, .* or float16, got 'bf16'"),
        ({"arms": [{"name": "l", "kind": "llm", "quantization": "3bit"}]}, "arm 'l': quantization must be none, 4bit or 8bit"),
        ({"arms": [{"name": "pop", "kind": "popularity", "dtype": "bfloat16"}]}, "'dtype'.*llm arms"),
    ],
)
def test_bad_fields(over, pattern):
    if pattern is None:  # valid at parse time, refused by the pre-run check
        cfg = ExperimentConfig.from_dict(base(**over))
        with pytest.raises(ConfigError, match="options \\['mode'\\] are arm fields"):
            check_arm(cfg.arms[0])
        return
    with pytest.raises(ConfigError, match=pattern):
        ExperimentConfig.from_dict(base(**over))


def test_load_config_errors(tmp_path: Path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    good = tmp_path / "good.yaml"
    good.write_text("name: g\ndataset: ml-100k\narms:\n  - {name: pop, kind: popularity}\n")
    cfg = load_config(good)
    assert cfg.results_path() == tmp_path / "results" / "g"


def _adapter(folder: Path, base_model: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": base_model}))
    return folder


def test_adapter_must_match_the_arm_model(tmp_path: Path):
    adapter = _adapter(tmp_path / "ad", "HuggingFaceTB/SmolLM2-360M-Instruct")
    cfg = ExperimentConfig.from_dict(
        base(arms=[{"name": "l", "kind": "llm", "model": "smollm2", "adapter": str(adapter)}])
    )
    with pytest.raises(
        ConfigError, match="trained on base model 'HuggingFaceTB/SmolLM2-360M-Instruct'.*'smollm2'"
    ):
        check_arm(cfg.arms[0])
    same = _adapter(tmp_path / "ad2", "my-org/my-model")
    cfg = ExperimentConfig.from_dict(
        base(arms=[{"name": "l", "kind": "llm", "model": "my-org/my-model", "adapter": str(same)}])
    )
    check_arm(cfg.arms[0])  # matches: no error
    missing = ExperimentConfig.from_dict(
        base(arms=[{"name": "l", "kind": "llm", "adapter": str(tmp_path / "x")}])
    )
    with pytest.raises(ConfigError, match="does not exist"):
        check_arm(missing.arms[0])


def test_llm_arm_maps_onto_reranker_config():
    from llmrec.evaluation.llm import reranker_config

    arm = ExperimentConfig.from_dict(
        base(
            arms=[
                {
                    "name": "l",
                    "kind": "llm",
                    "mode": "pointwise",
                    "knowledge": True,
                    "permutations": 1,
                    "options": {"history_budget": 123},
                }
            ]
        )
    ).arms[0]
    cfg = reranker_config(arm)
    assert (cfg.mode, cfg.template, cfg.knowledge, cfg.permutations) == ("pointwise", "pointwise_kg", True, 1)
    assert cfg.adapter is None  # no adapter = the bare model, never the reranker's default adapter
    assert cfg.history_budget == 123 and cfg.model.name_or_path == "smollm2"
    bad = ExperimentConfig.from_dict(
        base(arms=[{"name": "l", "kind": "llm", "options": {"histry_budget": 1}}])
    )
    with pytest.raises(ConfigError, match="histry_budget"):
        check_arm(bad.arms[0])


def test_old_bootstrap_key_is_read_as_permutations_with_a_warning():
    from llmrec.errors import LlmrecWarning

    with pytest.warns(LlmrecWarning, match="'bootstrap' is deprecated, use 'permutations'"):
        cfg = ExperimentConfig.from_dict(base(arms=[{"name": "l", "kind": "llm", "bootstrap": 3}]))
    assert cfg.arms[0].permutations == 3 and cfg.arms[0].resolved()["permutations"] == 3
    with pytest.raises(ConfigError, match="set only 'permutations'"):
        ExperimentConfig.from_dict(base(arms=[{"name": "l", "kind": "llm", "bootstrap": 3, "permutations": 3}]))
