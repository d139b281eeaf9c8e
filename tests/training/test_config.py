"""TrainConfig: YAML is only a file format; unknown keys and wrong types raise errors naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmrec.errors import ConfigError
from llmrec.training import TrainConfig
from llmrec.training.config import metric_name


def test_defaults_and_nested_sections():
    cfg = TrainConfig.from_dict({"mode": "pointwise", "prompt": {"template": "pointwise"}, "lora": {"r": 4}})
    assert cfg.lora.r == 4 and cfg.lora.alpha == 16
    assert cfg.negatives.count("pointwise") == 1 and cfg.negatives.count("listwise") == 19
    assert cfg.lora.target_modules == ("q_proj", "v_proj")
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"lora": {"rank": 8}}, "lora.rank"),
        ({"optimizer": {}}, "optimizer"),
        ({"optim": {"learning_rat": 0.1}}, "optim.learning_rat"),
    ],
)
def test_unknown_key_is_named(data, key):
    with pytest.raises(ConfigError, match=f"unknown config key '{key}'"):
        TrainConfig.from_dict(data)


def test_unknown_key_suggests_the_close_one():
    with pytest.raises(ConfigError, match="did you mean 'optim.learning_rate'"):
        TrainConfig.from_dict({"optim": {"learning_rat": 0.1}})


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"lora": {"r": "8"}}, "lora.r"),
        ({"lora": {"r": True}}, "lora.r"),
        ({"optim": {"learning_rate": "fast"}}, "optim.learning_rate"),
        ({"mode": "pairwise"}, "mode"),
        ({"overwrite": "yes"}, "overwrite"),
        ({"lora": {"target_modules": [1, 2]}}, "lora.target_modules[0]"),
        ({"data": 3}, "data"),
        ({"validation": {"metric": "precision"}}, "validation.metric"),
        ({"negatives": {"n": 30}}, "negatives.n"),
        ({"lora": {"dropout": 1.5}}, "lora.dropout"),
        ({"optim": {"batch_size": 0}}, "optim.batch_size"),
    ],
)
def test_wrong_type_or_value_names_the_key(data, key):
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_dict(data)
    assert key in str(info.value)


def test_overrides_are_dotted_and_checked():
    cfg = TrainConfig().with_overrides({"optim.max_steps": 3, "lora.target_modules": "q_proj"})
    assert cfg.optim.max_steps == 3 and cfg.lora.target_modules == ("q_proj",)
    with pytest.raises(ConfigError, match="did you mean 'lora.alpha'"):
        TrainConfig().with_overrides({"lora.alpah": 3})
    with pytest.raises(ConfigError, match="'output' is not a section"):
        TrainConfig().with_overrides({"output.x": 3})


def test_from_file_yaml_and_errors(tmp_path):
    good = tmp_path / "c.yaml"
    good.write_text("mode: listwise\nlora:\n  r: 12\noptim:\n  learning_rate: 1e-3\n")
    cfg = TrainConfig.from_file(good)
    assert cfg.lora.r == 12 and cfg.optim.learning_rate == pytest.approx(1e-3)
    bad = tmp_path / "bad.yaml"
    bad.write_text("lora:\n  r: 8\n  alpah: 3\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown config key 'lora.alpah'"):
        TrainConfig.from_file(bad)
    broken = tmp_path / "broken.yaml"
    broken.write_text("lora: [\n")
    with pytest.raises(ConfigError, match="cannot parse"):
        TrainConfig.from_file(broken)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        TrainConfig.from_file(listy)
    with pytest.raises(ConfigError, match="does not exist"):
        TrainConfig.from_file(tmp_path / "missing.yaml")


def test_metric_names():
    assert metric_name("NDCG@5") == ("ndcg", 5)
    assert metric_name("auc") == ("auc", None)
    for bad in ("ndcg@0", "ndcg@x", "hr@10"):
        with pytest.raises(ConfigError):
            metric_name(bad)


def test_knowledge_follows_template_unless_forced():
    assert TrainConfig.from_dict({"prompt": {"template": "listwise_kg"}}).use_knowledge
    assert not TrainConfig.from_dict({"prompt": {"template": "listwise"}}).use_knowledge
    assert TrainConfig.from_dict({"prompt": {"template": "listwise", "knowledge": "on"}}).use_knowledge


RECIPES = sorted((Path(__file__).parents[2] / "adapters").glob("*.yaml"))


def test_shipped_recipe_parses():
    recipe = Path(__file__).parents[2] / "adapters" / "smollm2-ml100k-listwise-kg.yaml"
    cfg = TrainConfig.from_file(recipe)
    assert cfg.mode == "listwise" and cfg.prompt.template == "listwise_kg" and cfg.use_knowledge


@pytest.mark.parametrize("recipe", RECIPES, ids=[r.stem for r in RECIPES])
def test_every_committed_recipe_is_a_valid_config_that_names_its_adapter(recipe):
    """A recipe that no longer parses (a renamed key, a value the config refuses) fails here, not an hour into a
    run; each writes the adapter it is named after: a shipped one into adapters/, a retired one or a trial into the
    ignored build/trials/."""
    cfg = TrainConfig.from_file(recipe)
    assert cfg.adapter_name == recipe.stem
    assert Path(cfg.output).parent.as_posix() in ("adapters", "build/trials")


def test_knowledge_auto_reads_the_template_header_not_its_name(tmp_path):
    from llmrec.prompts import builtin_template_dir

    shipped = (builtin_template_dir() / "listwise_kg.jinja").read_text(encoding="utf-8")
    (tmp_path / "with_facts.jinja").write_text(shipped, encoding="utf-8")
    no_facts = (builtin_template_dir() / "listwise.jinja").read_text(encoding="utf-8")
    (tmp_path / "plain_kg.jinja").write_text(no_facts, encoding="utf-8")
    assert TrainConfig.from_dict({"prompt": {"template": str(tmp_path / "with_facts.jinja")}}).use_knowledge
    assert not TrainConfig.from_dict({"prompt": {"template": str(tmp_path / "plain_kg.jinja")}}).use_knowledge


def test_prompt_section_settings_fill_the_defaults():
    from llmrec.prompts import DEFAULT_SETTINGS

    cfg = TrainConfig.from_dict({"prompt": {"fact_budget": 300, "cf_evidence": True}})
    settings = cfg.prompt.settings()
    assert settings.fact_budget == 300 and settings.cf_evidence
    assert settings.history_budget == DEFAULT_SETTINGS.history_budget


@pytest.mark.parametrize(
    ("section", "kwargs", "message"),
    [
        ("LoraSection", {"r": 0}, "lora.r: must be >= 1, got 0"),
        ("LoraSection", {"dropout": 1.0}, "lora.dropout: must be in [0, 1), got 1.0"),
        ("OptimSection", {"learning_rate": 0}, "optim.learning_rate: must be > 0, got 0"),
        ("DataSection", {"min_history": 0}, "data.min_history: must be >= 1, got 0"),
        ("NegativesSection", {"source": "random", "pool": 5}, "negatives.pool: applies to retriever sources"),
        ("NegativesSection", {"source": "random", "options": {"l2": 5}}, "negatives.options: applies to retriever"),
        ("NegativesSection", {"source": "ease", "options": [1]}, "negatives.options: expected a mapping"),
        ("ValidationSection", {"metric": "hr@10"}, "validation.metric: expected 'ndcg@K'"),
        ("ModelSection", {"quantization": "2bit"}, "model.quantization: expected one of 'none' | '4bit' | '8bit'"),
        ("PromptSection", {"candidate_order": "random"}, "prompt.candidate_order must be one of"),
        ("LoraSection", {"r": "8"}, "lora.r: expected an integer, got str '8'"),
    ],
)
def test_sections_validate_on_their_own_with_the_dotted_key(section, kwargs, message):
    import llmrec.training.config as config

    with pytest.raises(ConfigError) as built_directly:
        getattr(config, section)(**kwargs)
    assert str(built_directly.value).startswith(message)
    key = message.split(":")[0].split(" ")[0].split(".")[0]
    with pytest.raises(ConfigError) as from_dict:
        TrainConfig.from_dict({key: kwargs})
    assert str(from_dict.value) == str(built_directly.value)


def test_sections_built_directly_are_coerced_like_ones_from_a_file():
    from llmrec.training.config import LoraSection, OptimSection

    assert LoraSection(target_modules=["q_proj"]).target_modules == ("q_proj",)  # type: ignore[arg-type]
    assert OptimSection(learning_rate="1e-3").learning_rate == 0.001  # type: ignore[arg-type]
    assert LoraSection(dropout=0).dropout == 0.0 and isinstance(LoraSection(dropout=0).dropout, float)
