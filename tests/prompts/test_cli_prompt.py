from __future__ import annotations

import json
from pathlib import Path

import pytest
from tokenizers_util import byte_tokenizer

from llmrec.cli import main

TINY = str(Path(__file__).parents[1] / "data" / "kg_tiny")
EXTRA = Path(__file__).parents[1] / "data" / "kg_extra"


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tok")
    byte_tokenizer(chat=True).save_pretrained(folder)
    (folder / "config.json").write_text('{"model_type": "llama"}')
    return str(folder)


def test_prints_the_prompt_and_its_token_count(capsys, tok_dir):
    code = main(["prompt", TINY, "--user", "u1", "--model", tok_dir, "--candidate-ids", "5,7,9", "--ratings"])
    out = capsys.readouterr().out
    assert code == 0
    assert (
        "<|im_start|>user" in out and "A. Toy Story 2 (1999)" in out and "sequel to Toy Story (1995)" in out
    )
    assert "- Fargo (1996) (rated 5/5)" in out
    assert "tokens | template listwise_kg (listwise) | history 5/5" in out


def test_json_output_with_retrieval_and_an_extra_kg_source(capsys, tok_dir):
    args = [
        "prompt",
        TINY,
        "--user",
        "u1",
        "--model",
        tok_dir,
        "--retriever",
        "popularity",
        "--candidates",
        "4",
    ]
    args += ["--kg-triples", str(EXTRA / "triples.tsv"), "--kg-links", str(EXTRA / "links.tsv")]
    args += ["--kg-names", str(EXTRA / "names.tsv"), "--json", "--template", "pointwise_kg"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["mode"] == "pointwise" and out["candidate_source"] == "popularity"
    prompts = out["prompts"]
    assert len(prompts) == 4 and all(p["answer_tokens"] == ["Yes", "No"] for p in prompts)
    history = {"2", "3", "4", "1", "6"}
    assert not history & {p["candidate_ids"][0] for p in prompts}
    assert all(p["n_tokens"] > 0 and p["text"].endswith("<|im_start|>assistant\n") for p in prompts)


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--user", "nobody"], "nobody"),
        (["--user", "u1", "--template", "listwize"], "did you mean"),
        (["--user", "u1", "--candidates", "21"], "at most 20"),
        (["--user", "u1", "--candidate-ids", "5,404"], "404"),
        (["--user", "u1", "--kg-links", "x.tsv"], "--kg-triples"),
        (["--user", "u1", "--kg-triples", "missing.tsv"], "missing.tsv"),
        (["--user", "u1", "--model", "/no/such/model"], "does not exist"),
    ],
)
def test_bad_input_is_one_line_without_traceback(capsys, tok_dir, extra, needle):
    model = [] if "--model" in extra else ["--model", tok_dir]
    assert main(["prompt", TINY, "--retriever", "popularity", *model, *extra]) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert needle in last and "Traceback" not in err and last.startswith("llmrec prompt: error:")


@pytest.mark.slow
def test_ml100k_with_smollm2(capsys):
    code = main(
        ["prompt", "ml-100k", "--user", "1", "--retriever", "popularity", "--candidates", "20", "--json"]
    )
    assert code == 0
    [p] = json.loads(capsys.readouterr().out)["prompts"]
    assert len(p["labels"]) == 20 and p["labels"][-1] == "T"
    meta = p["metadata"]
    assert meta["history_truncated"] and meta["history_tokens"] <= 400 and meta["fact_tokens"] <= 600
    assert sum(1 for f in p["facts"].values() if f) >= 15  # KG connections for most candidates
    assert p["text"].endswith("<|im_start|>assistant\n") and 800 < p["n_tokens"] < 2000
