"""A half-precision model's output head computes in float32, so scores read from logits are not quantised."""

from __future__ import annotations

from pathlib import Path

import torch
from numerics import BFLOAT16_EPS

from llmrec.models import ModelConfig, load_model
from llmrec.models.heads import float32_output_head, has_float32_head
from llmrec.models.tiny import save_tiny
from llmrec.ranking.factory import make_scorer


def _logits(model, ids) -> torch.Tensor:
    with torch.inference_mode():
        return model(input_ids=ids).logits[0, -1]


def test_a_bfloat16_head_in_float32_keeps_the_resolution_of_the_logits(tmp_path: Path):
    folder = save_tiny(tmp_path / "tiny", init_range=0.3)
    full = load_model(ModelConfig(str(folder), dtype="float32"), cache=False)
    half = load_model(ModelConfig(str(folder), dtype="bfloat16"), cache=False)
    ids = full.tokenizer("The user watched Fargo. Answer:", return_tensors="pt")["input_ids"]
    before = _logits(half.model, ids)
    assert before.dtype == torch.bfloat16
    assert not float32_output_head(full.model) and not has_float32_head(full.model)  # float32 already: left alone
    assert float32_output_head(half.model) and has_float32_head(half.model)
    assert float32_output_head(half.model)  # idempotent: still one wrapper
    after = _logits(half.model, ids)
    assert after.dtype == torch.float32
    # bfloat16 rounds each logit to 8 significant bits; the float32 head keeps the bits below: rounded back to
    # bfloat16 it gives the bfloat16 head's logits (to one rounding step, as the two matmuls may sum in another
    # order), and it tells apart logits that bfloat16 merges. (Whether it is also closer to the float32 model is
    # not guaranteed: the hidden states it reads are bfloat16's either way.)
    ulp = BFLOAT16_EPS * before.float().abs().clamp(min=before.float().abs().max() * BFLOAT16_EPS)
    assert ((after.to(torch.bfloat16).float() - before.float()).abs() <= ulp).all()
    assert len(set(after.tolist())) > len(set(before.float().tolist()))
    assert not torch.equal(after, after.to(torch.bfloat16).float())  # bits below bfloat16's are really there
    assert half.model.get_output_embeddings().weight.dtype == torch.bfloat16  # the weight itself is untouched


def test_scorers_get_the_float32_head(tmp_path: Path):
    folder = save_tiny(tmp_path / "tiny", init_range=0.3)
    half = load_model(ModelConfig(str(folder), dtype="bfloat16"), cache=False)
    make_scorer("pointwise", half, batch_size=4)
    assert has_float32_head(half.model)
