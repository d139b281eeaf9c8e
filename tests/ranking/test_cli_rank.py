"""`llmrec rank` end to end on the tiny KG dataset with a tiny saved model (fast), and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmrec.cli import main
from llmrec.models import clear_model_cache
from llmrec.models.tiny import save_tiny

DATA = Path(__file__).parents[1] / "data"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny(tmp_path_factory.mktemp("cli") / "tiny-model", init_range=0.3)


@pytest.fixture(autouse=True)
def _fresh():
    yield
    clear_model_cache()


def _rank(capsys, model_dir, *extra: str) -> tuple[int, str, str]:
    argv = [
        "rank",
        str(DATA / "kg_tiny"),
        "--model",
        str(model_dir),
        "--retriever",
        "popularity",
        "-k",
        "5",
        *extra,
    ]
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("mode", ["listwise", "pointwise", "generative"])
def test_rank_json(capsys, model_dir, mode):
    code, out, _ = _rank(capsys, model_dir, "--user", "u1", "--mode", mode, "--no-adapter", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["mode"] == mode and data["user"] == "u1"
    ranked = data["ranked"]
    assert len(ranked) == 5 and {"item_id", "score"} <= set(ranked[0])
    scores = [r["score"] for r in ranked]
    assert scores == sorted(scores, reverse=True)
    history = {"2", "3", "4", "1", "6"}
    assert not {r["item_id"] for r in ranked} & history
    assert data["forward_passes"] >= 1 and data["prompt_tokens"] > 0
    assert {"retrieve", "prompt", "score", "total", "load_model", "wall"} <= set(data["timings"])


def test_rank_text_and_given_items(capsys, model_dir):
    code, out, _ = _rank(capsys, model_dir, "--user", "u2", "--items", "1,2,3", "--top", "2")
    assert code == 0
    lines = [line for line in out.splitlines() if line.strip()[:2] in ("1.", "2.")]
    assert len(lines) == 2 and "candidates: given" in out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--user", "nobody"], "unknown user 'nobody'"),
        (["--user", "u1", "--items", "1,1"], "duplicate candidate"),
        (["--user", "u1", "--items", "1,999"], "999"),
        (["--user", "u1", "--adapter", "/no/such/adapter"], "does not exist"),
        (["--user", "u1", "--mode", "pointwise", "--permutations", "3"], "permutations"),
    ],
)
def test_rank_bad_input_is_one_line(capsys, model_dir, extra, message):
    code, _, err = _rank(capsys, model_dir, *extra)
    assert code == 2
    assert message in err and "Traceback" not in err
