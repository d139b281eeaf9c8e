"""The arm cache's fingerprint: what decides an arm's output, and nothing about where files lie."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from llmrec.evaluation.config import ArmConfig
from llmrec.evaluation.runner import arm_cache_fingerprint

ARM = ArmConfig(name="llm", kind="llm", model="smollm2", adapter="my-adapter", mode="pointwise")
CASES = {"protocol": "retrieved", "seed": 0}


def _adapter(folder: Path, weights: bytes) -> Path:
    folder.mkdir(parents=True)
    (folder / "adapter_model.safetensors").write_bytes(weights)
    (folder / "adapter_config.json").write_text('{"r": 16}')
    return folder


def test_the_same_adapter_in_another_place_keeps_its_cache(tmp_path: Path):
    here = _adapter(tmp_path / "checkout-a" / "my-adapter", b"weights")
    there = tmp_path / "checkout-b" / "my-adapter"
    shutil.copytree(here, there)
    assert arm_cache_fingerprint(ARM, CASES, here) == arm_cache_fingerprint(ARM, CASES, there)


def test_what_decides_the_scores_changes_it_and_nothing_else_does(tmp_path: Path):
    adapter = _adapter(tmp_path / "a" / "my-adapter", b"weights")
    base = arm_cache_fingerprint(ARM, CASES, adapter)
    assert arm_cache_fingerprint(ARM, CASES, _adapter(tmp_path / "b" / "my-adapter", b"other")) != base
    assert arm_cache_fingerprint(dataclasses.replace(ARM, mode="listwise"), CASES, adapter) != base
    assert arm_cache_fingerprint(ARM, {**CASES, "seed": 1}, adapter) != base
    # the fusion changes it (the Reranker fuses: the cached scores are fused ones); the name and user cap do not
    assert arm_cache_fingerprint(dataclasses.replace(ARM, fusion=False), CASES, adapter) != base
    # ... and so do new weights in the adapter card, which an arm without its own fusion applies
    from llmrec.ranking.fusion import ScoreFusion

    carded = ScoreFusion(("ease",), (1.0,), llm_weight=0.2, fitted={"users": 10})
    with_card = arm_cache_fingerprint(ARM, CASES, adapter, carded)
    assert with_card != base
    assert arm_cache_fingerprint(ARM, CASES, adapter, dataclasses.replace(carded, llm_weight=0.3)) != with_card
    assert arm_cache_fingerprint(ARM, CASES, adapter, dataclasses.replace(carded, fitted={})) == with_card
    same = dataclasses.replace(ARM, name="renamed", users=10)
    assert arm_cache_fingerprint(same, CASES, adapter) == base
