"""`llmrec train` under accelerate with 2 CPU processes (gloo) follows one process's loss trajectory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

SCRIPT = """
import json, sys
from llmrec.training import TrainConfig, train
result = train(TrainConfig.from_file(sys.argv[1]), progress=False)
from accelerate import PartialState
if PartialState().is_main_process:
    open(sys.argv[2], "w").write(json.dumps(result.losses))
"""


def _config(tmp_path: Path, model: Path, data: Path, name: str, grad_accum: int) -> Path:
    cfg = {
        "output": str(tmp_path / f"adapter-{name}"),
        "mode": "pointwise",
        "model": {"name_or_path": str(model)},
        "data": {"dataset": str(data), "min_history": 3, "positions_per_user": 2},
        "negatives": {"n": 1},
        "prompt": {"template": "pointwise"},
        "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
        "optim": {"learning_rate": 0.02, "batch_size": 2, "grad_accum": grad_accum, "max_steps": 4,
                  "warmup_ratio": 0.0},  # fmt: skip
        "validation": {"users": 0},
        "checkpoint_dir": str(tmp_path / f"ckpt-{name}"),
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_two_processes_match_one_with_the_same_global_batch(tmp_path, tiny_model_dir, synth_dir):
    script = tmp_path / "train_once.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = _config(tmp_path, tiny_model_dir, synth_dir, "one", grad_accum=2)  # 2 micro-batches per step
    two = _config(tmp_path, tiny_model_dir, synth_dir, "two", grad_accum=1)  # 1 per process, 2 processes
    done = subprocess.run([sys.executable, str(script), str(one), str(tmp_path / "one.json")], env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    accelerate = Path(sys.executable).with_name("accelerate")
    done = subprocess.run(
        [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision",
         "no", "--dynamo_backend", "no", str(script), str(two), str(tmp_path / "two.json")],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    single = json.loads((tmp_path / "one.json").read_text())
    parallel = json.loads((tmp_path / "two.json").read_text())
    assert len(single) == len(parallel) == 4
    assert parallel == pytest.approx(single, rel=1e-3, abs=1e-4)


def test_two_processes_stop_together_when_validation_runs_out_of_patience(tmp_path, tiny_model_dir, synth_dir):
    """The main process validates and decides; the other must stop at the same step (else it would wait forever in
    the next gradient all-reduce). A learning rate of ~0 leaves the validation score where it started, so patience
    1 stops the run at its first periodic validation, step 2 of 4."""
    script = tmp_path / "train_once.py"
    script.write_text(SCRIPT)
    path = _config(tmp_path, tiny_model_dir, synth_dir, "patience", grad_accum=1)
    cfg = yaml.safe_load(path.read_text())
    cfg["optim"]["learning_rate"] = 1e-12
    cfg["validation"] = {"users": 4, "negatives": 3, "every": 2, "metric": "auc", "patience": 1}
    path.write_text(yaml.safe_dump(cfg))
    accelerate = Path(sys.executable).with_name("accelerate")
    done = subprocess.run(
        [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision",
         "no", "--dynamo_backend", "no", str(script), str(path), str(tmp_path / "losses.json")],
        env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(json.loads((tmp_path / "losses.json").read_text())) == 2
    card = json.loads((tmp_path / "adapter-patience" / "adapter_card.json").read_text())
    assert card["training"]["stopped_early"] == {"planned_steps": 4, "patience": 1}
