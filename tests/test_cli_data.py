from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmrec.cli import main


def test_data_stats_json(tiny_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "stats", str(tiny_dir), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert (stats["users"], stats["items"], stats["interactions"], stats["kg_triples"], stats["linked_items"]) == (3, 5, 9, 5, 3)
    assert stats["load_seconds"] >= 0


def test_data_stats_on_a_table(capsys: pytest.CaptureFixture[str]) -> None:
    table = Path(__file__).parent / "data" / "tables" / "ratings.csv"
    assert main(["data", "stats", str(table), "--columns", "user=uid,item=movie,rating=stars,timestamp=ts"]) == 0
    assert "interactions" in capsys.readouterr().out


def test_bad_input_is_one_line_and_nonzero(tiny_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tiny_copy / "tiny.inter").write_text("user_id:token\titem_id:token\trating:float\nu1\ti1\tbad\n")
    assert main(["data", "stats", str(tiny_copy)]) == 2
    err = capsys.readouterr().err
    assert "tiny.inter:2: column 'rating' must be a number, got 'bad'" in err
    assert "Traceback" not in err


def test_help_lists_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("fetch", "data", "demo"):
        assert command in out


@pytest.mark.slow
def test_ml100k_stats_through_the_cli(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "stats", "ml-100k", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert [stats[k] for k in ("users", "items", "interactions", "kg_triples", "linked_items")] == [943, 1682, 100000, 91631, 1512]
