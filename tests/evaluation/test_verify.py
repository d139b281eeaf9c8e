"""Reports pinned to what made them: provenance in metrics.json, users.jsonl.gz, and `llmrec eval --verify`."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest

from llmrec.cli import main
from llmrec.evaluation.verify import USERS_FILE, VerifyError

CONFIG = """
name: verify-exp
dataset: {dataset}
split: {{kind: leave_one_out, positive_min_rating: 4.0, target: test}}
protocol: {{kind: sampled, negatives: 9}}
seed: 0
baseline: popularity
bootstrap_samples: 50
cache_dir: {cache}
results_dir: {results}
arms:
  - {{name: random, kind: random}}
  - {{name: popularity, kind: popularity}}
  - {{name: cooc, kind: cooc}}
  - {{name: ease, kind: ease}}
  - {{name: order, kind: candidate_order, users: 5}}
  - {{name: tiny-llm, kind: llm, model: {model}, mode: pointwise, template: pointwise, users: 4,
      fusion: {{members: [cooc, popularity], weights: [1.0, 0.5], llm_weight: 0.7}}}}
"""


@pytest.fixture(scope="module")
def study(tmp_path_factory, synthetic_dataset) -> Path:
    """A study run once through the CLI, its report in a folder outside the checkout."""
    from llmrec.models.tiny import save_tiny

    root = tmp_path_factory.mktemp("study")
    tiny = synthetic_dataset(
        root / "tiny", name="tiny", users=12, items=40, per_user=12, seed=7, title="Movie", taste_groups=True
    )
    model = save_tiny(root / "model", seed=0)
    path = root / "exp.yaml"
    path.write_text(CONFIG.format(dataset=tiny, cache=root / "cache", results=root / "results", model=model))
    assert main(["eval", str(path), "--no-plots", "--no-progress"]) == 0
    return path


def _users_file(study: Path) -> Path:
    return study.parent / "results" / "verify-exp" / USERS_FILE


def test_a_report_records_its_commit_dataset_and_libraries(study: Path):
    from llmrec.evaluation.provenance import git_state

    report = study.parent / "results" / "verify-exp"
    record = json.loads((report / "metrics.json").read_text())["provenance"]
    assert record["commit"] == git_state()["commit"] and len(record["commit"]) == 40
    assert len(record["dataset_fingerprint"]) >= 16 and record["libraries"]["torch"]
    assert record["versions"]["retrievers"]["cooc"] == 1
    assert f"Made by commit `{record['commit'][:12]}`" in (report / "report.md").read_text()
    with gzip.open(_users_file(study), "rt") as handle:
        rows = [json.loads(line) for line in handle]
    assert rows[0]["dataset_fingerprint"] == record["dataset_fingerprint"]
    arms = {r["arm"] for r in rows[1:]}
    assert {"random", "cooc", "tiny-llm", "tiny-llm.no-llm", "tiny-llm.llm-only"} <= arms
    # every metric is re-derivable: each (arm, user) has the target's rank; a seeded sample keeps its scores
    assert all("rank" in r and "candidates" in r for r in rows[1:])
    assert any("scores" in r for r in rows[1:] if r["arm"] == "tiny-llm")


def test_verify_replays_the_committed_users(study: Path, capsys):
    assert main(["eval", str(study), "--verify", "--verify-users", "5", "--verify-llm-users", "2"]) == 0
    out = capsys.readouterr().out
    assert "verify-exp: 8 of 8 rows replay as committed" in out
    assert "tiny-llm.no-llm" in out and "FAILED" not in out


def test_verify_fails_on_a_score_that_moved(study: Path, tmp_path: Path, capsys):
    import shutil

    moved = tmp_path / "moved"
    shutil.copytree(study.parent / "results" / "verify-exp", moved)
    with gzip.open(moved / USERS_FILE, "rt") as handle:
        rows = [json.loads(line) for line in handle]
    victim = next(r for r in rows[1:] if r["arm"] == "cooc" and "scores" in r)
    victim["scores"][0] += 1e-9  # a classical arm must replay to float64 rounding (~1e-13 at this scale)
    with gzip.open(moved / USERS_FILE, "wt") as handle:
        handle.write("\n".join(json.dumps(r) for r in rows) + "\n")
    assert main(["eval", str(study), "--verify", "--out", str(moved), "--verify-users", "30"]) == 1
    out = capsys.readouterr().out
    assert re.search(rf"cooc: user {victim['user']}: scores differ by 1e-09 \(tolerance \d\.\d+e-1[2-4]\)", out)


def test_verify_names_what_is_missing_or_different(study: Path, tmp_path: Path):
    from llmrec.evaluation import load_config
    from llmrec.evaluation.verify import verify_study

    config = load_config(study)
    with pytest.raises(VerifyError, match=r"study 'verify-exp': no per-user results at .*; re-run it to make them"):
        verify_study(config, tmp_path / "empty")
    other = tmp_path / "other"
    other.mkdir()
    with gzip.open(_users_file(study), "rt") as handle:
        rows = [json.loads(line) for line in handle]
    rows[0]["dataset_fingerprint"] = "another-build"
    with gzip.open(other / USERS_FILE, "wt") as handle:
        handle.write("\n".join(json.dumps(r) for r in rows) + "\n")
    with pytest.raises(VerifyError, match="made on dataset content another-build, but .* is .* here"):
        verify_study(config, other)


def test_a_report_into_a_dirty_checkout_is_refused(tmp_path: Path, monkeypatch):
    from llmrec.evaluation import provenance

    root = provenance.source_tree()
    if root is None:
        pytest.skip("llmrec is not imported from a git checkout here")
    record = {"commit": "abc", "uncommitted_changes": ["llmrec/x.py"]}
    with pytest.raises(provenance.DirtyTreeError, match=r"uncommitted changes \(llmrec/x.py\).*--allow-dirty"):
        provenance.check_pinnable(root / "eval" / "results" / "x", record, allow_dirty=False)
    provenance.check_pinnable(root / "eval" / "results" / "x", record, allow_dirty=True)
    provenance.check_pinnable(tmp_path / "x", record, allow_dirty=False)  # outside the checkout: only recorded


def test_git_state_names_changed_sources_but_not_report_folders(tmp_path: Path):
    import subprocess

    from llmrec.evaluation.provenance import git_state

    def git(*args: str) -> None:
        subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *args], cwd=tmp_path, check=True)

    git("init", "-q")
    (tmp_path / "llmrec").mkdir()
    (tmp_path / "eval" / "results").mkdir(parents=True)
    (tmp_path / "llmrec" / "a.py").write_text("a\n")
    (tmp_path / "eval" / "results" / "report.md").write_text("r\n")
    git("add", ".")
    git("commit", "-q", "-m", "init")
    assert git_state(tmp_path)["changed"] == []
    (tmp_path / "llmrec" / "a.py").write_text("a\nb\n")
    (tmp_path / "eval" / "results" / "report.md").write_text("rewritten\n")  # a report being rewritten
    (tmp_path / "llmrec" / "new file.py").write_text("n\n")
    git("mv", "llmrec/a.py", "llmrec/b.py")
    state = git_state(tmp_path)
    assert state["changed"] == ["llmrec/b.py", "llmrec/new file.py"] and len(state["commit"]) == 40


def test_verify_skips_an_arm_whose_adapter_was_retired_and_replays_the_rest(
    study: Path, tmp_path: Path, monkeypatch, capsys
):
    from llmrec.models.adapters import shipped_adapter_dir

    monkeypatch.setenv("LLMREC_HOME", str(tmp_path / "home"))  # no retrained copy where the name would find it
    retired = "smollm2-ml100k-pointwise-kg"
    config = tmp_path / "exp.yaml"
    text = study.read_text()
    arm = "- {name: tiny-llm, kind: llm, model: "
    assert text.count(arm) == 1
    config.write_text(text.replace(arm, f"- {{name: tiny-llm, kind: llm, adapter: {retired}, model: "))
    results = study.parent / "results" / "verify-exp"
    assert main(["eval", str(config), "--verify", "--out", str(results), "--verify-users", "5"]) == 0
    out = capsys.readouterr().out
    recipe = shipped_adapter_dir() / f"{retired}.yaml"
    for row in ("tiny-llm", "tiny-llm.no-llm", "tiny-llm.llm-only"):
        assert f"{row}: skipped: its adapter is not in this install: adapter {retired!r} was removed" in out
    assert f"its recipe is {recipe}" in out and "FAILED" not in out
    assert re.search(r"\n  cooc +ok +5 users", out)  # the other arms still replay

    # an adapter that is neither installed nor retired fails its arm
    config.write_text(text.replace(arm, "- {name: tiny-llm, kind: llm, adapter: no-such-adapter, model: "))
    assert main(["eval", str(config), "--verify", "--out", str(results), "--verify-users", "5"]) == 1
    out = capsys.readouterr().out
    assert "tiny-llm: adapter path 'no-such-adapter' does not exist" in out


def test_verify_skips_an_arm_whose_multi_gb_model_is_not_fetched_and_says_how(tmp_path: Path, monkeypatch):
    from llmrec.evaluation.config import ArmConfig
    from llmrec.evaluation.verify import _unfetched_heavy_model

    monkeypatch.setenv("LLMREC_HOME", str(tmp_path / "home"))  # an empty cache
    reason = _unfetched_heavy_model(ArmConfig(name="q", kind="llm", model="qwen2.5-coder-1.5b"))
    assert reason is not None and "llmrec fetch qwen2.5-coder-1.5b" in reason
    # the models `llmrec fetch all` (and CI) fetch, folders and hub ids are replayed as before
    for model in ("smollm2", "gemma3-270m", str(tmp_path), "org/model"):
        assert _unfetched_heavy_model(ArmConfig(name="m", kind="llm", model=model)) is None


def test_rows_from_a_first_stage_trained_in_the_run_are_compared_strictly_only_on_the_study_cpu(monkeypatch):
    from llmrec.evaluation.config import load_config
    from llmrec.evaluation.verify import _other_cpu, trains_first_stage
    from llmrec.models.machine import cpu_description

    assert _other_cpu({"cpu": cpu_description()}) is None  # the study's CPU model: strict
    assert "was made on AMD EPYC (x)" in str(_other_cpu({"cpu": "AMD EPYC (x)"}))
    assert "does not record its CPU model" in str(_other_cpu({"torch_threads": 1}))
    root = Path(__file__).parents[2] / "eval"
    sampled = load_config(root / "ml100k-first-stage.yaml")
    trained = {a.name: trains_first_stage(sampled, a) for a in sampled.arms}
    assert trained["sasrec"] and trained["zfusion"] and trained["fusion"]
    assert not trained["ease"] and not trained["dense"] and not trained["popularity"]
    retrieved = load_config(root / "ml100k-default.yaml")  # the candidates themselves come from zfusion
    assert all(trains_first_stage(retrieved, a) for a in retrieved.arms)


def test_rows_from_another_version_of_a_trained_first_stage_are_skipped_naming_both_versions(tmp_path: Path):
    import json

    from llmrec.evaluation.verify import _made_versions, _moved_first_stage
    from llmrec.retrieval import RETRIEVERS

    here = {name: spec.version for name, spec in RETRIEVERS.items()}
    assert _moved_first_stage({"retrievers": here}) is None
    assert _moved_first_stage({}) is None  # nothing recorded: the CPU check decides
    older = {**here, "sasrec": here["sasrec"] - 1}
    reason = _moved_first_stage({"retrievers": older})
    assert reason is not None
    assert f"sasrec version {here['sasrec'] - 1} there, {here['sasrec']} here" in reason and "re-run" in reason
    # an untrained retriever's version is not this check's business (its rows are compared strictly)
    assert _moved_first_stage({"retrievers": {**here, "ease": here["ease"] + 1}}) is None
    (tmp_path / "metrics.json").write_text(json.dumps({"provenance": {"versions": {"retrievers": older}}}))
    assert _made_versions(tmp_path) == {"retrievers": older}
    assert _made_versions(tmp_path / "missing") == {}


def test_verify_skips_without_refitting_the_rows_of_another_sasrec_version(study: Path, tmp_path: Path, capsys):
    import shutil

    from llmrec.retrieval import RETRIEVERS

    report = tmp_path / "report"
    shutil.copytree(study.parent / "results" / "verify-exp", report)
    with gzip.open(report / USERS_FILE, "rt") as handle:
        rows = [json.loads(line) for line in handle]
    rows += [{**r, "arm": "sas"} for r in rows[1:] if r["arm"] == "cooc"]  # as if a SASRec arm had run
    with gzip.open(report / USERS_FILE, "wt") as handle:
        handle.write("\n".join(json.dumps(r) for r in rows) + "\n")
    summary = json.loads((report / "metrics.json").read_text())
    made = RETRIEVERS["sasrec"].version - 1
    summary["provenance"]["versions"]["retrievers"]["sasrec"] = made
    (report / "metrics.json").write_text(json.dumps(summary))
    config = tmp_path / "exp.yaml"
    config.write_text(study.read_text().replace("arms:\n", "arms:\n  - {name: sas, kind: sasrec}\n", 1))
    # a refit would take time and could not match; the row is skipped up front, the other arms replay
    assert main(["eval", str(config), "--verify", "--out", str(report), "--verify-users", "5"]) == 0
    out = capsys.readouterr().out
    assert re.search(rf"sas: skipped: not replayed: .*sasrec version {made} there, {made + 1} here", out), out
    assert re.search(r"\n  cooc +ok +5 users", out) and "FAILED" not in out


def test_verify_skips_a_decoder_item_retriever_whose_model_is_not_fetched(tmp_path: Path, monkeypatch):
    from llmrec.evaluation.config import ArmConfig
    from llmrec.evaluation.verify import _unfetched_heavy_model

    monkeypatch.setenv("LLMREC_HOME", str(tmp_path / "home"))  # an empty cache
    alone = ArmConfig(name="l", kind="llm_dense", retriever_options={"dtype": "bfloat16"})
    assert "llmrec fetch qwen2.5-coder-1.5b" in str(_unfetched_heavy_model(alone))
    fused = ArmConfig(
        name="z", kind="zfusion", retriever_options={"members": ["sasrec", "ease", "dense", "llm_dense"]}
    )
    assert "llmrec fetch qwen2.5-coder-1.5b" in str(_unfetched_heavy_model(fused))
    small = ArmConfig(name="s", kind="llm_dense", retriever_options={"model": "smollm2"})
    assert _unfetched_heavy_model(small) is None  # `llmrec fetch all` has it: replayed
    assert _unfetched_heavy_model(ArmConfig(name="z", kind="zfusion")) is None
