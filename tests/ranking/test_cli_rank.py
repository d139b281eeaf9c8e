"""`llmrec rank` end to end on the tiny KG dataset with a tiny saved model (fast), and bad input."""

from __future__ import annotations

import dataclasses
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


def test_fewer_candidates_than_asked_are_ranked_and_counted(capsys, model_dir):
    code, out, err = _rank(capsys, model_dir, "--user", "u1", "--no-adapter", "-k", "10", "--json")
    data = json.loads(out)
    n = data["candidates_ranked"]
    assert code == 0 and 0 < n < 10 and len(data["ranked"]) == n
    assert f"found {n} of the 10 candidates asked for" in err


def _older_adapter(model_dir, tmp_path):
    """An adapter whose card was written before score fusion and collaborative evidence existed."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from llmrec.models.adapters import AdapterCard, write_card

    folder = tmp_path / "old-adapter"
    get_peft_model(
        AutoModelForCausalLM.from_pretrained(model_dir), LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj"])
    ).save_pretrained(folder)
    (folder / "train_config.yaml").write_text("mode: pointwise\n")
    write_card(folder, AdapterCard(base_model=str(model_dir), name="old", mode="pointwise", template="pointwise"))
    return folder


def test_an_older_card_is_named_with_the_fix_by_the_python_api(model_dir, tmp_path):
    from llmrec.data import load_dataset
    from llmrec.errors import OlderCardWarning
    from llmrec.models import ModelConfig
    from llmrec.ranking import Reranker, RerankerConfig

    folder = _older_adapter(model_dir, tmp_path)
    dataset = load_dataset(DATA / "kg_tiny")
    config = RerankerConfig(model=ModelConfig(str(model_dir)), adapter=str(folder))
    with pytest.warns(OlderCardWarning) as caught:
        reranker = Reranker(dataset, config)
    texts = [str(w.message) for w in caught if issubclass(w.category, OlderCardWarning)]
    assert reranker.card_notes == texts and len(texts) == 2
    assert texts[0].startswith(f"adapter 'old-adapter' ({folder}): its card has no score-fusion weights")
    assert "--fit-fusion ARM --write-card" in texts[0] and "no cf_evidence setting" in texts[1]
    with pytest.warns(OlderCardWarning) as caught:
        no_fusion = dataclasses.replace(config, fusion=False)
        assert len(Reranker(dataset, no_fusion).card_notes) == 1  # fusion not asked for: only the evidence note


def test_an_older_card_without_fusion_or_evidence_settings_is_named_with_the_fix(capsys, model_dir, tmp_path):
    folder = _older_adapter(model_dir, tmp_path)
    code, _, err = _rank(capsys, model_dir, "--user", "u1", "--adapter", str(folder))
    assert code == 0
    assert f"adapter 'old-adapter' ({folder}): its card has no score-fusion weights" in err
    assert "--fit-fusion ARM --write-card" in err and "no cf_evidence setting" in err
    code, _, err = _rank(capsys, model_dir, "--user", "u1", "--adapter", str(folder), "--no-fusion")
    assert code == 0 and "score-fusion" not in err and "no cf_evidence setting" in err


def test_rank_in_bfloat16(capsys, model_dir):
    from llmrec.models import ModelConfig, load_model

    code, out, _ = _rank(capsys, model_dir, "--user", "u1", "--no-adapter", "--mode", "pointwise", "--dtype",
                         "bfloat16", "--json")  # fmt: skip
    assert code == 0 and len(json.loads(out)["ranked"]) == 5
    # the model the command loaded (cached per config) holds bfloat16 weights
    assert str(load_model(ModelConfig(str(model_dir), dtype="bfloat16")).model.dtype) == "torch.bfloat16"


def test_rank_with_the_adapter_merged(capsys, model_dir, tmp_path):
    folder = _older_adapter(model_dir, tmp_path)
    args = ("--user", "u1", "--adapter", str(folder), "--no-fusion", "--json")
    code, attached, _ = _rank(capsys, model_dir, *args, "--no-merge-adapter")
    assert code == 0
    code, merged, _ = _rank(capsys, model_dir, *args)  # merged by default
    assert code == 0
    assert [r["item_id"] for r in json.loads(merged)["ranked"]] == [r["item_id"] for r in json.loads(attached)["ranked"]]
    code, _, err = _rank(capsys, model_dir, "--user", "u1", "--no-adapter", "--mode", "pointwise", "--merge-adapter")
    assert code != 0 and "merge_adapter=True needs an adapter" in err


def test_rank_with_fusion_weights_of_ones_own(capsys, model_dir):
    code, out, _ = _rank(capsys, model_dir, "--user", "u1", "--no-adapter", "--mode", "pointwise", "--fusion",
                         "popularity=1,llm=0.5", "--json")  # fmt: skip
    assert code == 0
    data = json.loads(out)
    assert data["fusion"]["members"] == ["popularity"] and data["fusion"]["llm_weight"] == 0.5
    fused = [r["score"] for r in data["ranked"]]
    assert fused == sorted(fused, reverse=True)
    llm = data["llm_scores"]
    assert set(llm) == {r["item_id"] for r in data["ranked"]}
    assert [r["score"] for r in data["ranked"]] != [llm[r["item_id"]] for r in data["ranked"]]
    code, out, _ = _rank(capsys, model_dir, "--user", "u1", "--no-adapter", "--mode", "pointwise", "--fusion",
                         "popularity=1,llm=0.5")  # fmt: skip
    assert code == 0 and "LLM weight 0.5, from --fusion" in out


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("popularity=1", "needs at least one first-stage retriever and the LLM's weight"),
        ("llm=0.5", "needs at least one first-stage retriever"),
        ("popularity=one,llm=0.5", "'popularity=one' is not NAME=WEIGHT"),
        ("popularity=1,,llm=0.5", "'' is not NAME=WEIGHT"),
        ("popularity=1,popularity=2,llm=0.5", "'popularity' is given twice"),
        ("popularty=1,llm=0.5", "did you mean 'popularity'"),
    ],
)
def test_rank_bad_fusion_spec_is_one_line(capsys, model_dir, spec, message):
    code, _, err = _rank(capsys, model_dir, "--user", "u1", "--no-adapter", "--mode", "pointwise", "--fusion", spec)
    assert code == 2
    assert message in err and "Traceback" not in err


def test_fusion_and_no_fusion_exclude_each_other(capsys, model_dir):
    code, _, err = _rank(capsys, model_dir, "--user", "u1", "--no-adapter", "--fusion", "popularity=1,llm=1",
                         "--no-fusion")  # fmt: skip
    assert code == 2 and "--fusion and --no-fusion exclude each other" in err
