"""`ServeConfig`: a YAML file, bad keys and values refused naming them, the API key from the environment."""

from __future__ import annotations

import pytest

from llmrec.errors import ConfigError
from llmrec.serve import ServeConfig


def test_a_yaml_file_sets_what_it_names_and_keeps_the_defaults(tmp_path):
    path = tmp_path / "serve.yaml"
    path.write_text("dataset: ml-1m\nadapters: [a, b]\nbatch_window_ms: 5\nreranker: {n_candidates: 30}\n")
    config = ServeConfig.load(path)
    assert (config.dataset, config.adapters, config.batch_window_ms) == ("ml-1m", ("a", "b"), 5.0)
    assert config.reranker == {"n_candidates": 30} and config.host == "127.0.0.1" and config.bearer_token is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("max_bacth: 4\n", "unknown config key 'max_bacth'.*did you mean 'max_batch'"),
        ("max_batch: 0\n", "max_batch: must be >= 1"),
        ("queue_size: many\n", "queue_size"),
        ("reranker: {adapter: x}\n", "reranker.adapter"),
        ("api_key: a\napi_key_env: B\n", "not both"),
        ("- a list\n", "expected a mapping of keys at the top level, got list"),
        ("dataset: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_settings_are_refused_naming_the_file_and_the_key(tmp_path, text, message):
    path = tmp_path / "serve.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        ServeConfig.load(path)


def test_the_api_key_comes_from_the_named_environment_variable(monkeypatch, tmp_path):
    monkeypatch.delenv("LLMREC_TEST_KEY", raising=False)
    with pytest.raises(ConfigError, match="LLMREC_TEST_KEY is not set"):
        ServeConfig(api_key_env="LLMREC_TEST_KEY")
    monkeypatch.setenv("LLMREC_TEST_KEY", "s3cret")
    assert ServeConfig(api_key_env="LLMREC_TEST_KEY").bearer_token == "s3cret"
    with pytest.raises(ConfigError, match="does not exist"):
        ServeConfig.load(tmp_path / "missing.yaml")
