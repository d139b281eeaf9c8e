"""`llmrec eval` refuses an adapter whose training split holds the evaluation's held-out items (before any arm runs),
and warns about an adapter card that does not record its training split."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from llmrec.data import SplitLeakError, leave_one_out, load_dataset
from llmrec.evaluation import load_config, run_experiment
from llmrec.evaluation.arms import check_arm_split
from llmrec.evaluation.config import ExperimentConfig
from llmrec.models.adapters import REQUIRED_FILES, AdapterCard, write_card

CONFIG = """
name: leak
dataset: {dataset}
split: {{kind: leave_one_out, positive_min_rating: null, min_history: 1}}
protocol: {{kind: sampled, negatives: 5}}
baseline: popularity
cache_dir: {cache}
results_dir: {results}
arms:
  - {{name: popularity, kind: popularity}}
  - {{name: tuned, kind: llm, model: my-org/my-model, adapter: {adapter}}}
"""


def _adapter(folder: Path, training_split: dict | None) -> Path:
    folder.mkdir(parents=True)
    for name in REQUIRED_FILES:
        (folder / name).write_text("{}\n")
    (folder / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "my-org/my-model"}))
    card = {"base_model": "my-org/my-model", "mode": "listwise", "template": "listwise_kg"}
    if training_split is not None:
        card["training_split"] = training_split
    write_card(folder, AdapterCard.from_dict(card))
    return folder


def test_eval_refuses_an_adapter_trained_on_its_targets(tmp_path: Path, tiny_dir: Path):
    ds = load_dataset(tiny_dir)
    # every user has 12 interactions, so the validation target sits at position 10: a training split that asks
    # for 11 items of history keeps every user whole, held-out items included
    adapter = _adapter(
        tmp_path / "leaky",
        {
            "kind": "leave_one_out",
            "positive_min_rating": None,
            "min_history": 11,
            "dataset": ds.name,
            "dataset_fingerprint": ds.content_fingerprint(),
        },
    )
    path = tmp_path / "exp.yaml"
    path.write_text(
        CONFIG.format(dataset=tiny_dir, cache=tmp_path / "cache", results=tmp_path / "results", adapter=adapter)
    )
    with pytest.raises(SplitLeakError, match=r"adapter .*leaky.*min_history 11.*min_history 1"):
        run_experiment(load_config(path), progress=False)
    assert not (tmp_path / "cache").exists()  # refused before any arm ran


def test_an_adapter_without_a_training_split_gets_a_warning(tmp_path: Path, tiny_dir: Path, caplog):
    adapter = _adapter(tmp_path / "old", None)
    cfg = ExperimentConfig.from_dict(
        {"name": "w", "dataset": str(tiny_dir), "arms": [{"name": "l", "kind": "llm", "adapter": str(adapter)}]}
    )
    split = leave_one_out(load_dataset(tiny_dir), min_history=1)
    with caplog.at_level(logging.WARNING):
        check_arm_split(cfg.arms[0], split)
    assert "records no training split" in caplog.text
