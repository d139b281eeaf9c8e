from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmrec.cli import main
from llmrec.evaluation import load_config, run_experiment, write_report
from llmrec.metrics import ndcg_at

CONFIG = """
name: tiny-exp
dataset: {dataset}
protocol: {{kind: sampled, negatives: 9}}
slices: {{cold_item_max_train: 3, short_history_max: 10}}
seed: 0
baseline: popularity
comparisons: [[cooc, random]]
bootstrap_samples: 200
cache_dir: {cache}
results_dir: {results}
arms:
  - {{name: random, kind: random}}
  - {{name: popularity, kind: popularity}}
  - {{name: cooc, kind: cooc}}
  - {{name: order, kind: candidate_order, users: 5}}
"""


@pytest.fixture()
def config_path(tmp_path: Path, tiny_dir: Path) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(CONFIG.format(dataset=tiny_dir, cache=tmp_path / "cache", results=tmp_path / "results"))
    return path


def test_run_is_deterministic_cached_and_resumable(config_path: Path, tmp_path: Path):
    config = load_config(config_path)
    first = run_experiment(config, progress=False)
    n_users = first.users_sampled
    assert n_users > 5
    assert first.arms["random"].computed == n_users and first.arms["random"].reused == 0
    assert len(first.arms["order"].users) == 5  # arm-level user cap: the first 5 of the seeded order
    again = run_experiment(config, progress=False)
    assert again.arms["cooc"].computed == 0 and again.arms["cooc"].reused == n_users
    assert [u.scores for u in again.arms["random"].users] == [u.scores for u in first.arms["random"].users]

    # Interrupt: drop the last records and cut the last line in half; the run redoes only those users.
    cache = tmp_path / "cache" / "cooc.jsonl"
    lines = cache.read_text().splitlines()
    cache.write_text("\n".join(lines[:-3]) + "\n" + lines[-3][: len(lines[-3]) // 2])
    resumed = run_experiment(config, progress=False)
    assert resumed.arms["cooc"].computed == 3 and resumed.arms["cooc"].reused == n_users - 3
    assert [u.rank for u in resumed.arms["cooc"].users] == [u.rank for u in first.arms["cooc"].users]
    after = run_experiment(config, progress=False)  # the repaired file loads cleanly
    assert after.arms["cooc"].computed == 0


def test_changed_config_version_is_not_reused(config_path: Path, tmp_path: Path):
    config = load_config(config_path)
    run_experiment(config, progress=False)
    changed = config_path.read_text().replace("negatives: 9", "negatives: 7")
    config_path.write_text(changed)
    result = run_experiment(load_config(config_path), progress=False)
    assert result.arms["popularity"].reused == 0
    assert (tmp_path / "cache" / "popularity.jsonl.stale").exists()
    assert all(u.n_candidates == 8 for u in result.arms["popularity"].users)


def test_users_sample_is_a_prefix(config_path: Path):
    config = load_config(config_path)
    full = run_experiment(config, progress=False)
    small = run_experiment(config, users=4, progress=False)
    assert [u.user_id for u in small.arms["cooc"].users] == [u.user_id for u in full.arms["cooc"].users][:4]
    assert small.arms["cooc"].computed == 0


def test_report_files_and_numbers(config_path: Path, tmp_path: Path):
    config = load_config(config_path)
    result = run_experiment(config, progress=False)
    summary = write_report(result)
    folder = tmp_path / "results" / "tiny-exp"
    for name in ("metrics.json", "report.md", "metrics.png", "ndcg_at_k.png", "slices.png"):
        assert (folder / name).stat().st_size > 0
    saved = json.loads((folder / "metrics.json").read_text())
    users = result.arms["cooc"].users
    expected = sum(ndcg_at(u.rank, 10) for u in users) / len(users)
    assert saved["arms"]["cooc"]["metrics"]["ndcg@10"] == pytest.approx(expected)
    assert saved["arms"]["cooc"]["config"]["protocol"] == "sampled"
    assert saved["arms"]["cooc"]["config"]["adapter"] is None
    assert "vs_baseline" in saved["arms"]["cooc"] and "vs_baseline" not in saved["arms"]["popularity"]
    assert saved["arms"]["order"]["vs_baseline"]["ndcg@10"]["users"] == 5
    assert saved["recommendation"]["pick"] in saved["arms"]
    (cmp,) = saved["comparisons"]
    assert (cmp["arm"], cmp["versus"], cmp["users"]) == ("cooc", "random", result.users_sampled)
    assert cmp["metrics"]["ndcg@10"]["diff"] == pytest.approx(
        saved["arms"]["cooc"]["metrics"]["ndcg@10"] - saved["arms"]["random"]["metrics"]["ndcg@10"]
    )
    for name, within in cmp["slices"].items():  # each slice's difference is over that slice's users only
        members = [u for u in users if u.slices[name]]
        by_user = {u.user_id: u for u in result.arms["random"].users}
        expected = sum(ndcg_at(u.rank, 10) - ndcg_at(by_user[u.user_id].rank, 10) for u in members) / len(members)
        assert within["users"] == len(members) and within["metrics"]["ndcg@10"]["diff"] == pytest.approx(expected)
    assert cmp["slices"] and "all" not in cmp["slices"]
    text = (folder / "report.md").read_text()
    assert "Within slices (ΔNDCG@10, users)" in text
    assert "| `cooc` |" in text and "Which arm to pick" in text
    assert "on the 5 users every arm evaluated" in text and saved["shared_users"]["users"] == 5
    assert summary["arms"]["random"]["users"] == result.users_sampled


def test_cli_json_and_bad_input(config_path: Path, tmp_path: Path, capsys):
    assert main(["eval", str(config_path), "--users", "6", "--json", "--no-progress", "--no-plots"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["arms"]) == {"random", "popularity", "cooc", "order"}
    assert 0.0 <= out["arms"]["cooc"]["ndcg@10"] <= 1.0
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        config_path.read_text().replace("{name: cooc, kind: cooc}", "{name: cooc, kind: cooc, k: 3}")
    )
    assert main(["eval", str(bad), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "'k'" in err and "arm 'cooc'" in err and "Traceback" not in err


def test_pointwise_protocol_reports_pooled_auc(config_path: Path):
    text = config_path.read_text().replace("kind: sampled, negatives: 9", "kind: pointwise, negatives: 1")
    config_path.write_text(text)
    result = run_experiment(load_config(config_path), progress=False)
    from llmrec.evaluation import summarize
    from llmrec.metrics import pairwise_auc

    summary = summarize(result)
    assert summary["headline_metric"] == "pooled_auc"
    users = result.arms["cooc"].users
    pos = [u.scores[u.target_index] for u in users]
    neg = [u.scores[1 - u.target_index] for u in users]
    assert summary["arms"]["cooc"]["metrics"]["pooled_auc"] == pytest.approx(pairwise_auc(pos, neg))
    assert all(u.n_candidates == 2 for u in users)
    ci = summary["arms"]["cooc"]["ci"]["pooled_auc"]
    assert ci["low"] <= ci["mean"] <= ci["high"] and ci["mean"] == pytest.approx(pairwise_auc(pos, neg))
    from llmrec.evaluation.markdown import render_markdown

    text = render_markdown(summary)
    assert "ΔAUC vs" in text and "ΔNDCG@10 vs" not in text  # per-user AUC is what two candidates can differ in
    line = next(x for x in text.splitlines() if x.startswith("Pooled AUC"))
    assert f"`cooc` {ci['mean']:.4f} [{ci['low']:.4f}, {ci['high']:.4f}] ({len(users)})" in line


def test_cache_from_another_component_version_is_not_reused(config_path: Path, tmp_path: Path, monkeypatch):
    import dataclasses

    from llmrec.retrieval import RETRIEVERS

    config = load_config(config_path)
    run_experiment(config, progress=False)
    assert run_experiment(config, progress=False).arms["cooc"].reused > 0
    # A change of behaviour bumps the component's version: every cache keyed on it is set aside, never mixed in.
    monkeypatch.setitem(RETRIEVERS, "cooc", dataclasses.replace(RETRIEVERS["cooc"], version=2))
    result = run_experiment(config, progress=False)
    assert result.arms["cooc"].reused == 0 and result.arms["cooc"].computed == result.users_sampled
    assert (tmp_path / "cache" / "cooc.jsonl.stale").exists()


def test_behaviour_versions_name_every_retriever_and_scorer():
    from llmrec.evaluation.cache import behaviour_versions
    from llmrec.retrieval import RETRIEVER_NAMES

    versions = behaviour_versions()
    assert set(versions["retrievers"]) == set(RETRIEVER_NAMES)
    assert set(versions["scorers"]) == {"ListwiseScorer", "PointwiseScorer", "GenerativeScorer"}
    assert all(isinstance(v, int) for v in (versions["split"], versions["protocol"], versions["prompts"]))
    assert versions == behaviour_versions()


def test_a_cache_in_use_is_refused(config_path: Path, tmp_path: Path):
    from llmrec.evaluation.cache import ArmCache, CacheBusyError

    busy = ArmCache(tmp_path / "cache" / "cooc.jsonl", "x")
    with busy.locked():
        with pytest.raises(CacheBusyError, match="another run is writing"):
            run_experiment(load_config(config_path), progress=False)
    run_experiment(load_config(config_path), progress=False)  # free again


def test_changed_dataset_content_is_not_reused(config_path: Path, tiny_dir: Path, tmp_path: Path):
    config = load_config(config_path)
    run_experiment(config, progress=False)
    inter = tiny_dir / "tiny.inter"
    lines = inter.read_text().splitlines()
    # One old rating changed: the data is not what the cache was made from.
    first = lines[1].split("\t")
    first[2] = "1" if first[2] != "1" else "3"
    inter.write_text("\n".join([lines[0], "\t".join(first), *lines[2:]]) + "\n")
    result = run_experiment(load_config(config_path), progress=False)
    assert result.arms["cooc"].reused == 0
    assert (tmp_path / "cache" / "cooc.jsonl.stale").exists()  # detected by the fingerprint, not by chance


def test_retriever_arms_report_full_catalogue_hit_rates(config_path: Path, tmp_path: Path):
    from llmrec.data import load_dataset
    from llmrec.evaluation.protocols import make_split
    from llmrec.evaluation.summary import summarize
    from llmrec.retrieval import build_retriever

    config = load_config(config_path)
    result = run_experiment(config, progress=False)
    assert result.arms["random"].full_catalogue_ranks is None  # not a retriever
    ranks = result.arms["cooc"].full_catalogue_ranks
    assert ranks is not None and set(ranks) == {u.user_id for u in result.arms["cooc"].users}
    # Independently: score every catalogue item not in the history and find the target's place.
    split = make_split(load_dataset(config.dataset), config)
    cooc = build_retriever("cooc", split.train_dataset)
    targets = {x.user_id: x for x in split.test}
    for user, rank in ranks.items():
        history = [x.item_id for x in split.history_before(targets[user])]
        items = [i for i in cooc.item_ids if i not in set(history)]
        scores = dict(zip(items, cooc.score(history, items)))
        ranked = sorted(items, key=lambda i: (-scores[i], -cooc.fallback.counts[cooc.item_ids.index(i)],
                                              cooc.item_ids.index(i)))
        assert rank == ranked.index(targets[user].item_id) + 1
    full = summarize(result)["arms"]["cooc"]["full_catalogue"]
    expected_hr20 = sum(1 for r in ranks.values() if r is not None and r <= 20) / len(ranks)
    assert full["metrics"]["hr@20"] == pytest.approx(expected_hr20)
    assert full["metrics"]["ndcg@10"] == pytest.approx(sum(ndcg_at(r, 10) for r in ranks.values()) / len(ranks))
    write_report(result, tmp_path / "report")
    assert "First stage over the whole catalogue" in (tmp_path / "report" / "report.md").read_text()


def test_a_run_of_part_of_the_experiment_leaves_the_full_report(config_path: Path, tmp_path: Path, capsys):
    config = load_config(config_path)
    full = config.results_path()
    assert main(["eval", str(config_path), "--no-progress", "--no-plots"]) == 0
    report = (full / "metrics.json").read_text()
    assert main(["eval", str(config_path), "--arms", "cooc", "--no-progress", "--no-plots"]) == 0
    assert f"a run of part of the experiment: report in {full / 'partial'}" in capsys.readouterr().out
    assert (full / "metrics.json").read_text() == report
    assert set(json.loads((full / "partial" / "metrics.json").read_text())["arms"]) == {"cooc", config.baseline}
    assert main(["eval", str(config_path), "--users", "4", "--no-progress", "--no-plots"]) == 0
    assert json.loads((full / "partial" / "metrics.json").read_text())["users_sampled"] == 4
    assert (full / "metrics.json").read_text() == report
    capsys.readouterr()
    out = tmp_path / "mine"
    assert main(["eval", str(config_path), "--arms", "cooc", "--out", str(out), "--no-progress", "--no-plots"]) == 0
    assert (out / "metrics.json").exists() and "a run of part" not in capsys.readouterr().out
