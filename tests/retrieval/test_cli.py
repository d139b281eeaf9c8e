from __future__ import annotations

import json

import pytest

from llmrec.cli import main

from .conftest import HISTORIES


@pytest.fixture
def table(tmp_path):
    path = tmp_path / "events.csv"
    rows = ["user_id,item_id,timestamp"]
    rows += [f"{u},{i},{t}" for u, seq in HISTORIES.items() for t, i in enumerate(seq)]
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize("retriever", ["popularity", "cooc"])
def test_json_output(table, capsys, retriever):
    assert main(["retrieve", str(table), "--user", "u1", "-k", "3", "--retriever", retriever, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    ids = [c["item_id"] for c in out["candidates"]]
    assert len(ids) == 3 == len(set(ids)) and not set(ids) & set(HISTORIES["u1"])
    scores = [c["score"] for c in out["candidates"]]
    assert scores == sorted(scores, reverse=True)
    assert out["user"] == "u1" and out["retriever"] == retriever and out["fallback"] is False
    for key in ("load_seconds", "build_seconds", "retrieve_ms", "total_seconds"):
        assert out[key] >= 0


def test_exclude_option(table, capsys):
    argv = ["retrieve", str(table), "--user", "u6", "-k", "3", "--retriever", "popularity", "--json"]
    assert main(argv) == 0
    first = json.loads(capsys.readouterr().out)["candidates"][0]["item_id"]
    assert main([*argv, "--exclude", f"{first},zz"]) == 0
    ids = [c["item_id"] for c in json.loads(capsys.readouterr().out)["candidates"]]
    assert first not in ids and "b" not in ids and len(ids) == 3


def test_text_output(table, capsys):
    assert main(["retrieve", str(table), "--user", "u2", "-k", "2", "--retriever", "popularity"]) == 0
    out = capsys.readouterr().out
    assert "popularity candidates for user u2" in out and "retrieve" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--user", "ghost", "-k", "2"], "unknown user 'ghost'"),
        (["--user", "u1", "-k", "0"], "k must be > 0"),
        (["--user", "u1", "-k", "50"], "larger than the catalogue"),
    ],
)
def test_bad_input_is_one_line_without_traceback(table, capsys, argv, message):
    assert main(["retrieve", str(table), "--retriever", "cooc", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
