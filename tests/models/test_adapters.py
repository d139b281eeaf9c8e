"""The adapter folder format: the card (typed, round-tripping unknown keys, versioned: older cards migrated, newer
ones refused), its README, finding adapters by name or path, the shipped adapters as package data, and the retired
ones (a card and a recipe, no weights; naming one says how to retrain it)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from llmrec.data import SplitSettings
from llmrec.models.adapters import (
    _MIGRATIONS,
    BASE_INFO_FILE,
    CARD_FILE,
    CARD_VERSION,
    DEFAULT_ADAPTERS,
    FIRST_CARD_VERSION,
    REQUIRED_FILES,
    AdapterCard,
    AdapterCardError,
    AdapterError,
    adapter_names,
    card_of,
    default_adapter,
    migrate_card,
    read_adapter_card,
    read_card,
    recipe_path,
    render_readme,
    resolve_adapter,
    retired_adapter_message,
    retired_adapters,
    shipped_adapter_dir,
    update_card,
    validation_below_start,
    write_card,
)
from llmrec.models.loading import MODEL_ASSETS

#: The adapters the package ships: the ones the defaults use, and no other.
SHIPPED = ("smollm2-ml100k-listwise-kg", "smollm2-ml100k-pointwise-residual")
#: Every adapter folder shipped as package data.
ALL_SHIPPED = tuple(sorted(p.name for p in shipped_adapter_dir().iterdir() if (p / "adapter_card.json").is_file()))
#: The adapters retired from the package (trials and "do not use" ones): card and recipe ship, weights do not.
RETIRED = (
    "gemma3-ml100k-pointwise-residual",
    "qwen15b-ml100k-pointwise-residual",
    "smollm2-ml100k-pointwise",
    "smollm2-ml100k-pointwise-kg",
    "smollm2-ml100k-pointwise-offset",
    "smollm2-ml100k-pointwise-offset-weak",
    "smollm2-ml100k-pointwise-residual-2facts",
    "smollm2-ml100k-pointwise-residual-hard",
    "smollm2-ml100k-pointwise-residual-more",
    "smollm2-ml100k-pointwise-retrieved",
    "smollm2-ml1m-pointwise-residual",
)


def _card_dict() -> dict:
    """A card of the current version."""
    return {
        "card_version": CARD_VERSION,
        "name": "mine",
        "path": "out/mine",
        "base_model": "smollm2",
        "mode": "pointwise",
        "template": "pointwise_kg",
        "knowledge": True,
        "prompt": {"history_budget": 77, "candidate_order": "given"},
        "dataset": "ml-100k",
        "split": "leave_one_out",
        "training_split": {
            "kind": "leave_one_out",
            "positive_min_rating": 4.0,
            "min_history": 6,
            "dataset": "ml-100k",
            "dataset_fingerprint": "abc",
        },
        "training": {"steps": 3},
        "validation": {"metric": "auc", "best": {"auc": 0.8}, "negatives_source": "random unseen items"},
        "fusion": {"weights": {"llm": 0.7, "cooc": 0.3}},
        "something_new": [1, 2],
    }


def _folder(tmp_path: Path, card: dict) -> Path:
    folder = tmp_path / "adapter"
    folder.mkdir()
    for name in REQUIRED_FILES:
        (folder / name).write_text("{}\n")
    (folder / CARD_FILE).write_text(json.dumps(card))
    return folder


def test_card_is_typed_and_round_trips_unknown_keys(tmp_path: Path):
    data = _card_dict()
    card = AdapterCard.from_dict(data)
    assert (card.mode, card.template, card.knowledge) == ("pointwise", "pointwise_kg", True)
    assert card.split == SplitSettings(min_history=6, dataset="ml-100k", dataset_fingerprint="abc")
    assert card.prompt_settings() == {"history_budget": 77, "candidate_order": "given"}
    assert card.metrics["best"]["auc"] == 0.8 and card.fusion == {"weights": {"llm": 0.7, "cooc": 0.3}}
    assert card.extra["something_new"] == [1, 2] and card.extra["training"] == {"steps": 3}
    assert card.to_dict() == data
    folder = _folder(tmp_path, data)
    write_card(folder, card)
    assert read_card(folder) == data and read_adapter_card(folder) == card
    assert "## Notes" not in (folder / "README.md").read_text()
    # a card always has a version, a prompt and a validation section (empty: none recorded)
    assert AdapterCard.from_dict({"base_model": "m"}).to_dict() == {
        "card_version": CARD_VERSION, "base_model": "m", "prompt": {}, "validation": {}
    }


def test_a_card_without_a_version_is_the_first_one_and_is_migrated_to_the_current_one(tmp_path: Path):
    assert sorted(_MIGRATIONS) == list(range(FIRST_CARD_VERSION, CARD_VERSION))  # one step per older version
    old = {k: v for k, v in _card_dict().items() if k != "card_version"}
    old["validation"] = {"metric": "auc", "users": 3, "negatives": 4, "best": {"auc": 0.8}}  # from before negatives_source
    folder = _folder(tmp_path, old)
    (folder / BASE_INFO_FILE).write_text(json.dumps({"architecture": "X", "fingerprint": "f00d"}))
    written = (folder / CARD_FILE).read_text()
    card = read_adapter_card(folder)
    # what version 1 left to other files or said nothing about is filled in by the one migration step
    assert card.base_model_fingerprint == "f00d"  # from llmrec_base_model.json
    assert card.metrics["negatives_source"] == "random unseen items"  # validation negatives were random then
    assert card.to_dict() == {**old, "card_version": CARD_VERSION, "base_model_fingerprint": "f00d",
                              "validation": {**old["validation"], "negatives_source": "random unseen items"}}
    assert (folder / CARD_FILE).read_text() == written  # reading never rewrites the file
    # without its folder, the migration has no base-model record to read; the old mapping is left as it was
    assert migrate_card(old) == {k: v for k, v in card.to_dict().items() if k != "base_model_fingerprint"}
    assert "card_version" not in old and "negatives_source" not in old["validation"]
    # a version-1 mapping renders the README the migrated card does, and writing it back writes the current version
    assert render_readme(old, ref="x") == render_readme(card, ref="x")
    assert "3 validation users (each user's validation item vs 4 random unseen items," in render_readme(old)
    update_card(folder, card)
    assert json.loads((folder / CARD_FILE).read_text())["card_version"] == CARD_VERSION
    assert read_adapter_card(folder) == card
    # a current card says what it knows itself: nothing is taken from the base-model record any more
    (tmp_path / "current").mkdir()
    current = _folder(tmp_path / "current", {k: v for k, v in _card_dict().items() if k != "base_model_fingerprint"})
    (current / BASE_INFO_FILE).write_text(json.dumps({"fingerprint": "f00d"}))
    assert read_adapter_card(current).base_model_fingerprint is None


def test_a_card_of_a_newer_version_is_refused_naming_the_folder_and_both_versions(tmp_path: Path):
    folder = _folder(tmp_path, {**_card_dict(), "card_version": CARD_VERSION + 1})
    expected = re.escape(f"{folder / CARD_FILE}: card_version {CARD_VERSION + 1} is newer than llmrec ") + (
        rf".* \(newest known: {CARD_VERSION}\); upgrade llmrec"
    )
    with pytest.raises(AdapterError, match=expected):
        read_adapter_card(folder)
    with pytest.raises(AdapterError, match=expected):
        card_of(folder)
    for bad in ("2", True, 0, 1.0, None):
        with pytest.raises(AdapterCardError, match=f"card_version must be a positive integer, got {bad!r}"):
            AdapterCard.from_dict({**_card_dict(), "card_version": bad})


def test_an_updated_card_keeps_naming_a_named_adapter_by_its_name(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("LLMREC_HOME", str(tmp_path / "home"))
    (tmp_path / "home" / "adapters").mkdir(parents=True)
    named = _folder(tmp_path / "home" / "adapters", _card_dict()).rename(tmp_path / "home" / "adapters" / "mine")
    loose = _folder(tmp_path, _card_dict())
    for folder in (named, loose):
        card = read_adapter_card(folder)
        update_card(folder, AdapterCard.from_dict({**card.to_dict(), "fusion": {"weights": {"llm": 1.0}}}))
        assert read_adapter_card(folder).fusion == {"weights": {"llm": 1.0}}
    assert "llmrec rank --adapter mine ..." in (named / "README.md").read_text()
    assert f"llmrec rank --adapter {loose} ..." in (loose / "README.md").read_text()


def test_malformed_cards_are_named(tmp_path: Path):
    with pytest.raises(AdapterCardError, match="no base_model"):
        AdapterCard.from_dict({"mode": "listwise"})
    with pytest.raises(AdapterCardError, match="training_split.*'min_histroy'"):
        AdapterCard.from_dict({"base_model": "m", "training_split": {"min_histroy": 1}})
    with pytest.raises(AdapterCardError, match="missing adapter_config.json, adapter_model.safetensors"):
        (tmp_path / "half").mkdir()
        (tmp_path / "half" / CARD_FILE).write_text("{}")
        read_adapter_card(tmp_path / "half")
    bad = _folder(tmp_path, {})
    (bad / CARD_FILE).write_text("{not json")
    with pytest.raises(AdapterCardError, match="not valid JSON"):
        read_adapter_card(bad)
    assert card_of(None) is None and card_of(tmp_path) is None  # no card: a plain PEFT folder says nothing


def test_names_resolve_to_package_data_never_to_the_working_directory(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LLMREC_HOME", str(tmp_path / "home"))
    decoy = tmp_path / "adapters" / DEFAULT_ADAPTERS["listwise"]
    decoy.mkdir(parents=True)
    (decoy / "adapter_config.json").write_text("{}")
    shipped = resolve_adapter(DEFAULT_ADAPTERS["listwise"])
    assert shipped == shipped_adapter_dir() / DEFAULT_ADAPTERS["listwise"] and not shipped.is_relative_to(tmp_path)
    # a path is a path: relative to the working directory, then to `base`
    assert resolve_adapter(f"adapters/{DEFAULT_ADAPTERS['listwise']}") == decoy.relative_to(tmp_path)
    assert resolve_adapter(decoy) == decoy
    elsewhere = tmp_path / "configs" / "my-run"
    elsewhere.mkdir(parents=True)
    assert resolve_adapter("./my-run", base=tmp_path / "configs") == tmp_path / "configs" / "my-run"
    # names also resolve in $LLMREC_HOME/adapters
    mine = tmp_path / "home" / "adapters" / "my-adapter"
    mine.mkdir(parents=True)
    (mine / "adapter_config.json").write_text("{}")
    assert resolve_adapter("my-adapter") == mine and "my-adapter" in adapter_names()
    with pytest.raises(AdapterError, match="does not exist.*known adapter names: .*smollm2-ml100k-listwise-kg"):
        resolve_adapter("smollm2-ml100k-listwsie-kg")


def test_default_adapter_per_base_model_and_mode():
    assert default_adapter("smollm2", "listwise") == "smollm2-ml100k-listwise-kg"
    assert default_adapter("smollm2") == default_adapter("smollm2", "pointwise") == "smollm2-ml100k-pointwise-residual"
    assert default_adapter("smollm2", "generative") == "smollm2-ml100k-listwise-kg"
    assert default_adapter("my-org/other-model", "pointwise") is None


@pytest.mark.parametrize("name", ALL_SHIPPED)
def test_shipped_adapters_are_complete_and_record_their_training_split(name: str):
    folder = resolve_adapter(name)
    card = read_adapter_card(folder)
    assert card.name == name and card.base_model in MODEL_ASSETS and card.base_model_fingerprint
    assert card.mode in ("listwise", "pointwise") and card.template
    train_cfg = yaml.safe_load((folder / "train_config.yaml").read_text())
    data = train_cfg["data"]
    assert card.split is not None
    assert (card.split.kind, card.split.positive_min_rating, card.split.min_history) == (
        data["split"],
        data["min_rating"],
        data["min_history"],
    )
    assert card.split.dataset == train_cfg["data"]["dataset"] and card.split.dataset_fingerprint
    # kept as trained (caches hash it), when the shipped adapters lived in llmrec/adapters/
    assert Path(train_cfg["output"]).name == name
    assert (folder / "README.md").read_text() == render_readme(card, ref=name)
    assert recipe_path(name) is not None and yaml.safe_load(recipe_path(name).read_text())["output"] == f"adapters/{name}"


def test_only_the_adapters_the_defaults_use_ship():
    assert ALL_SHIPPED == SHIPPED == tuple(sorted(set(DEFAULT_ADAPTERS.values())))
    assert set(SHIPPED) <= set(adapter_names())  # and whatever $LLMREC_HOME/adapters holds


@pytest.mark.parametrize("name", ALL_SHIPPED)
def test_shipped_cards_are_current_or_differ_from_it_only_by_what_the_migration_fills_in(name: str):
    folder = resolve_adapter(name)
    text = (folder / CARD_FILE).read_text()
    raw = json.loads(text)
    card = read_adapter_card(folder).to_dict()
    if "card_version" in raw:  # current: exactly as `write_card` writes it
        assert raw["card_version"] == CARD_VERSION and json.dumps(card, indent=2) + "\n" == text
    else:  # version 1, kept as trained (its bytes are hashed by caches): only the validation negatives are named
        assert card == {**raw, "card_version": CARD_VERSION, "validation": card["validation"]}
        assert card["validation"] == {**raw["validation"], "negatives_source": "random unseen items"}


def test_retired_adapters_keep_card_and_recipe_but_no_weights():
    assert tuple(retired_adapters()) == RETIRED
    for name in RETIRED:
        card = shipped_adapter_dir() / "retired" / name
        assert (card / CARD_FILE).is_file() and (card / "README.md").is_file()
        assert json.loads((card / CARD_FILE).read_text())["name"] == name
        assert not (card / "adapter_model.safetensors").exists() and not (card / "adapter_config.json").exists()
        assert recipe_path(name) == shipped_adapter_dir() / f"{name}.yaml"
        assert not (shipped_adapter_dir() / name).exists()


def test_naming_a_retired_adapter_says_where_its_recipe_is_and_how_to_retrain_it(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LLMREC_HOME", str(tmp_path / "home"))
    name = "smollm2-ml100k-pointwise-kg"
    recipe = shipped_adapter_dir() / f"{name}.yaml"
    target = tmp_path / "home" / "adapters" / name
    with pytest.raises(AdapterError) as caught:
        resolve_adapter(name)
    message = str(caught.value)
    assert message == retired_adapter_message(name)
    assert f"adapter {name!r} was removed from the llmrec package" in message
    assert f"its recipe is {recipe}" in message and recipe.is_file()
    assert f"llmrec train --config {recipe} --output {target}" in message
    assert retired_adapter_message("smollm2-ml100k-listwise-kg") is None and retired_adapter_message("nope") is None
    # retrained into $LLMREC_HOME/adapters/<name>, the name finds it again
    target.mkdir(parents=True)
    (target / "adapter_config.json").write_text("{}")
    assert resolve_adapter(name) == target
    # a misspelt name is not a retired adapter: the usual error, naming the known ones
    with pytest.raises(AdapterError, match="no adapter has that name"):
        resolve_adapter("smollm2-ml100k-pointwise-gk")


def test_every_recipe_writes_a_shipped_adapter_a_retired_one_or_a_trial():
    for recipe in sorted(shipped_adapter_dir().glob("*.yaml")):
        output = Path(yaml.safe_load(recipe.read_text())["output"])
        assert output.name == recipe.stem
        if recipe.stem in SHIPPED:
            assert output.parent == Path("adapters"), recipe
        else:  # retired adapters and trials retrain into the ignored build/ (the error names $LLMREC_HOME/adapters)
            assert output.parent == Path("build/trials"), recipe


def test_default_adapters_are_shipped():
    for mode, name in DEFAULT_ADAPTERS.items():
        assert read_adapter_card(resolve_adapter(name)).mode == mode


def test_continued_training_that_ends_below_its_start_is_flagged():
    card = {
        "base_model": "x",
        "lora": {"init_from": "first-adapter"},
        "validation": {"metric": "auc", "zero_shot": {"auc": 0.87}, "best": {"auc": 0.82}, "best_step": 250},
    }
    warning = validation_below_start(card)
    assert warning is not None and "no validated step beat adapter first-adapter" in warning
    assert "auc 0.8700 at the start, 0.8200 at the best step (250)" in warning
    assert f"**Warning**: {warning}." in render_readme(AdapterCard.from_dict(card))
    better = {**card, "validation": {**card["validation"], "best": {"auc": 0.9}}}
    assert validation_below_start(better) is None
    assert validation_below_start({**card, "lora": {}}) is None  # from scratch, step 0 is the bare model
