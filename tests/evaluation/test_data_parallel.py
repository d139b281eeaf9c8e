"""Data-parallel evaluation: users sharded over accelerate processes, shards merged into one cache and report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llmrec.evaluation.cache import ArmCache, merge_shards, read_records, shard_path

CONFIG = """
name: dp-exp
dataset: {dataset}
protocol: {{kind: sampled, negatives: 9}}
seed: 0
baseline: cooc
bootstrap_samples: 50
cache_dir: {cache}
results_dir: {results}
arms:
  - {{name: cooc, kind: cooc}}
  - {{name: ease, kind: ease}}
  - {{name: tiny-llm, kind: llm, model: {model}, mode: pointwise, template: pointwise, users: 7}}
"""


def _write(path: Path, fingerprint: str, users: list[str]) -> None:
    lines = [json.dumps({"fingerprint": fingerprint, "version": 1})]
    lines += [json.dumps({"user": u, "candidates": ["a"], "scores": [1.0]}) for u in users]
    path.write_text("\n".join(lines) + "\n")


def test_merge_folds_shards_in_and_refuses_a_shard_of_another_config(tmp_path: Path):
    main = tmp_path / "arm.jsonl"
    _write(main, "fp", ["u1"])
    _write(shard_path(main, 0), "fp", ["u2"])
    _write(shard_path(main, 1), "other", ["u3"])
    assert read_records(shard_path(main, 1), "fp") == {}
    assert merge_shards(main, "fp") == 2
    assert set(read_records(main, "fp")) == {"u1", "u2"}
    assert not shard_path(main, 0).exists() and not shard_path(main, 1).exists()
    assert (tmp_path / "arm.shard1.jsonl.stale").exists()
    cache = ArmCache(tmp_path / "arm.shard0.jsonl", "fp", also_read=[main])
    assert len(cache) == 2  # a later shard sees what is already done


def _launch(args: list[str], cwd: Path, processes: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if processes > 1:
        accelerate = Path(sys.executable).with_name("accelerate")
        cmd = [str(accelerate), "launch", "--multi_gpu", "--num_processes", str(processes), "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "llmrec", *args]  # fmt: skip
    else:
        cmd = [sys.executable, "-m", "llmrec", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("processes", [2, 3])
def test_sharded_run_reports_what_one_process_reports(tmp_path: Path, tiny_dir: Path, processes: int):
    from llmrec.models.tiny import save_tiny

    model = save_tiny(tmp_path / "tiny-model", seed=0)
    reports = {}
    for n in (1, processes):
        config = tmp_path / f"exp{n}.yaml"
        config.write_text(
            CONFIG.format(dataset=tiny_dir, cache=tmp_path / f"cache{n}", results=tmp_path / "r", model=model)
        )
        done = _launch(["eval", str(config), "--json", "--no-plots", "--out", str(tmp_path / f"out{n}")], tmp_path, n)
        assert done.returncode == 0, done.stderr[-3000:]
        reports[n] = json.loads((tmp_path / f"out{n}" / "metrics.json").read_text())
        assert not list((tmp_path / f"cache{n}").glob("*.shard*.jsonl"))  # merged and removed
    one, many = reports[1], reports[processes]
    for arm in ("cooc", "ease", "tiny-llm"):
        assert many["arms"][arm]["users"] == one["arms"][arm]["users"]
        for metric in ("ndcg@10", "hr@10", "mrr", "auc"):
            assert many["arms"][arm]["metrics"][metric] == pytest.approx(one["arms"][arm]["metrics"][metric])
    # The merged cache serves a single-process rerun without recomputing anything.
    config = tmp_path / f"exp{processes}.yaml"
    again = _launch(["eval", str(config), "--json", "--no-plots", "--out", str(tmp_path / "again")], tmp_path, 1)
    assert again.returncode == 0, again.stderr[-3000:]
    rerun = json.loads((tmp_path / "again" / "metrics.json").read_text())
    assert all(rerun["arms"][a]["computed"] == 0 for a in ("cooc", "ease", "tiny-llm"))
