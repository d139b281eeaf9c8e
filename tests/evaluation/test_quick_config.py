"""End-to-end: the shipped quick config on real ml-100k + SmolLM2 through the CLI (slow: needs the assets)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmrec.cli import main

QUICK = Path(__file__).resolve().parents[2] / "eval" / "quick.yaml"


@pytest.mark.slow
def test_quick_config_end_to_end(tmp_path: Path, capsys):
    args = [
        "eval",
        str(QUICK),
        "--json",
        "--no-progress",
        "--out",
        str(tmp_path / "out"),
        "--cache-dir",
        str(tmp_path / "c"),
    ]
    assert main(args) == 0
    arms = json.loads(capsys.readouterr().out)["arms"]
    assert set(arms) == {"random", "popularity", "cooc", "dense", "smollm2-listwise-kg"}
    llm = arms["smollm2-listwise-kg"]
    assert llm["prompt_tokens"] > 100 and llm["forward_passes"] >= 1 and llm["latency_s"] > 0
    assert 0.0 <= llm["ndcg@10"] <= 1.0
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert saved["arms"]["smollm2-listwise-kg"]["users"] == 2
    assert saved["arms"]["smollm2-listwise-kg"]["config"]["knowledge"] is True
    assert (tmp_path / "out" / "metrics.png").stat().st_size > 0
    # A re-run is served from the cache: no model call, same numbers.
    assert main(args) == 0
    again = json.loads(capsys.readouterr().out)["arms"]
    assert again["smollm2-listwise-kg"]["ndcg@10"] == llm["ndcg@10"]
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert saved["arms"]["smollm2-listwise-kg"]["from_cache"] == 2
