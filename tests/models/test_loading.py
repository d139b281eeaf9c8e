"""Model loading: configs, the per-config cache, 4-bit NF4, adapters (load / switch / merge / refuse)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from llmrec.errors import AssetError, ConfigError
from llmrec.models import (
    AdapterError,
    ModelConfig,
    QuantizationUnavailableError,
    base_model_fingerprint,
    clear_model_cache,
    load_model,
    write_base_model_info,
)
from llmrec.models.tiny import save_tiny, tiny_model, tiny_tokenizer


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny(tmp_path_factory.mktemp("tiny") / "model", seed=0)


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_model_cache()
    yield
    clear_model_cache()


def _logits(lm, text: str = "The user watched Fargo.\nAnswer:\n") -> torch.Tensor:
    ids = lm.tokenizer(text, return_tensors="pt")
    with torch.inference_mode():
        return lm.model(**ids).logits[0, -1].float()


def _make_adapter(base_dir: Path, out: Path, seed: int, targets=("q_proj", "v_proj")) -> Path:
    """Save a LoRA adapter with random (non-zero) B matrices, so it changes the model's outputs."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_dir)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=list(targets)))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.5)
    peft_model.save_pretrained(out)
    return out


def test_config_validation_names_the_bad_field():
    with pytest.raises(ConfigError, match="quantization"):
        ModelConfig(quantization="3bit")
    with pytest.raises(ConfigError, match="dtype"):
        ModelConfig(dtype="float8")
    with pytest.raises(ConfigError, match="active_adapter"):
        ModelConfig(adapters={"a": "/x"}, active_adapter="b")
    with pytest.raises(ConfigError, match="merge_adapter"):
        ModelConfig(merge_adapter=True)
    with pytest.raises(ConfigError, match="unknown config key .* in ModelConfig"):
        ModelConfig.from_dict({"name_or_path": "smollm2", "quantisation": "4bit"})
    cfg = ModelConfig(adapters=["/some/where/my-lora"], max_memory={"0": "10GiB"})
    assert cfg.adapters == (("my-lora", "/some/where/my-lora"),)
    assert hash(cfg) == hash(ModelConfig(adapters=["/some/where/my-lora"], max_memory={"0": "10GiB"}))


def test_load_is_cached_per_config(tiny_dir: Path):
    a = load_model(ModelConfig(str(tiny_dir)))
    assert load_model(ModelConfig(str(tiny_dir))) is a
    assert load_model(str(tiny_dir)) is a
    private = load_model(ModelConfig(str(tiny_dir)), cache=False)
    assert private is not a and load_model(ModelConfig(str(tiny_dir))) is a
    assert a.context_length == 4096
    assert a.tokenizer.pad_token_id is not None
    b = load_model(ModelConfig(str(tiny_dir), dtype="bfloat16"))
    assert b is not a and next(b.model.parameters()).dtype == torch.bfloat16


def test_missing_model_path_is_a_clear_error(tmp_path: Path):
    with pytest.raises(AssetError, match="does not exist"):
        load_model(ModelConfig(str(tmp_path / "nope" / "model")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(AssetError, match="no config.json"):
        load_model(ModelConfig(str(tmp_path / "empty")))


def test_4bit_nf4_loads_on_cpu_and_stays_close(tiny_dir: Path):
    pytest.importorskip("bitsandbytes")
    import bitsandbytes as bnb

    full = load_model(ModelConfig(str(tiny_dir)))
    q4 = load_model(ModelConfig(str(tiny_dir), quantization="4bit"))
    layer = q4.model.model.layers[0].self_attn.q_proj
    assert isinstance(layer, bnb.nn.Linear4bit)
    assert q4.model.model.layers[0].self_attn.q_proj.weight.quant_state.quant_type == "nf4"
    assert q4.model.get_memory_footprint() < full.model.get_memory_footprint()
    a, b = _logits(full), _logits(q4)
    # quantisation error is visible but small next to the spread of the logits
    assert not torch.equal(a, b)
    assert (a - b).abs().mean() < 0.5 * a.std()
    # embeddings are not quantised, so the base-model fingerprint survives 4-bit loading
    assert base_model_fingerprint(q4.model) == base_model_fingerprint(full.model)


def test_missing_bitsandbytes_names_the_fallback(tiny_dir: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # makes `import bitsandbytes` fail here
    with pytest.raises(QuantizationUnavailableError, match="full precision"):
        load_model(ModelConfig(str(tiny_dir), quantization="4bit"))
    lm = load_model(
        ModelConfig(str(tiny_dir), quantization="4bit", on_unsupported_quantization="full_precision")
    )
    assert next(lm.model.parameters()).dtype == torch.float32
    assert type(lm.model.model.layers[0].self_attn.q_proj) is torch.nn.Linear


def test_adapters_load_switch_and_merge(tiny_dir: Path, tmp_path: Path):
    a1 = _make_adapter(tiny_dir, tmp_path / "one", seed=1)
    a2 = _make_adapter(tiny_dir, tmp_path / "two", seed=2)
    base = _logits(load_model(ModelConfig(str(tiny_dir))))
    lm = load_model(ModelConfig(str(tiny_dir), adapters={"one": str(a1), "two": str(a2)}))
    assert lm.adapter_names == ("one", "two") and lm.active_adapter == "one"
    with_one = _logits(lm)
    with lm.using_adapter("two"):
        assert lm.active_adapter == "two"
        with_two = _logits(lm)
    assert lm.active_adapter == "one"  # restored
    with lm.using_adapter(None):
        without = _logits(lm)
    assert torch.allclose(without, base, atol=1e-5)
    assert not torch.allclose(with_one, base, atol=1e-3)
    assert not torch.allclose(with_one, with_two, atol=1e-3)
    with pytest.raises(AdapterError, match="not loaded"):
        with lm.using_adapter("three"):
            pass
    merged = load_model(
        ModelConfig(
            str(tiny_dir), adapters={"one": str(a1), "two": str(a2)}, active_adapter="two", merge_adapter=True
        )
    )
    assert merged.merged_adapter == "two" and merged.adapter_names == ()
    assert torch.allclose(_logits(merged), with_two, atol=1e-4)
    with pytest.raises(AdapterError, match="merged"):
        with merged.using_adapter(None):
            pass


def test_adapter_on_a_4bit_base(tiny_dir: Path, tmp_path: Path):
    pytest.importorskip("bitsandbytes")
    adapter = _make_adapter(tiny_dir, tmp_path / "one", seed=1)
    lm = load_model(ModelConfig(str(tiny_dir), quantization="4bit", adapters={"one": str(adapter)}))
    with_adapter = _logits(lm)
    with lm.using_adapter(None):
        bare = _logits(lm)
    assert torch.allclose(
        bare, _logits(load_model(ModelConfig(str(tiny_dir), quantization="4bit"))), atol=1e-5
    )
    assert not torch.allclose(with_adapter, bare, atol=1e-3)


def test_adapter_for_another_base_model_is_refused(tiny_dir: Path, tmp_path: Path):
    other_dir = save_tiny(tmp_path / "wide", seed=0, hidden_size=128)
    wrong = _make_adapter(other_dir, tmp_path / "wide-lora", seed=1)
    with pytest.raises(AdapterError, match="architecture differs|does not fit"):
        load_model(ModelConfig(str(tiny_dir), adapters={"wide": str(wrong)}))
    # same architecture, different weights: only the recorded fingerprint can tell
    sibling_dir = save_tiny(tmp_path / "sibling", seed=7)
    sibling_lora = _make_adapter(sibling_dir, tmp_path / "sibling-lora", seed=1)
    tok = tiny_tokenizer()
    write_base_model_info(tiny_model(tok, seed=7), sibling_lora, name="sibling")
    with pytest.raises(AdapterError, match="fingerprint"):
        load_model(ModelConfig(str(tiny_dir), adapters={"s": str(sibling_lora)}))
    # ... and the same adapter on its own base loads
    assert load_model(ModelConfig(str(sibling_dir), adapters={"s": str(sibling_lora)})).adapter_names == (
        "s",
    )


def test_missing_or_malformed_adapter_path(tiny_dir: Path, tmp_path: Path):
    with pytest.raises(AdapterError, match="does not exist"):
        load_model(ModelConfig(str(tiny_dir), adapters={"x": str(tmp_path / "missing")}))
    (tmp_path / "not-an-adapter").mkdir()
    with pytest.raises(AdapterError, match="adapter_config.json"):
        load_model(ModelConfig(str(tiny_dir), adapters={"x": str(tmp_path / "not-an-adapter")}))


@pytest.mark.slow
def test_smollm2_4bit_vs_full_precision():
    pytest.importorskip("bitsandbytes")
    full = load_model(ModelConfig("smollm2"))
    q4 = load_model(ModelConfig("smollm2", quantization="4bit"))
    assert q4.model.get_memory_footprint() < 0.5 * full.model.get_memory_footprint()
    text = "<|im_start|>user\nIs Star Wars a movie? Answer Yes or No.<|im_end|>\n<|im_start|>assistant\n"
    a, b = _logits(full, text), _logits(q4, text)
    assert torch.isfinite(b).all()
    # the top next-token prediction of the real model survives 4-bit quantisation
    assert int(a.argmax()) in torch.topk(b, 5).indices.tolist()
