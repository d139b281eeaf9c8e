from __future__ import annotations

import logging
from pathlib import Path

import pytest

from llmrec.data import load_atomic, load_dataset
from llmrec.errors import DataFormatError, LlmrecError


def test_loads_every_file_of_the_tiny_dataset(tiny_dir: Path) -> None:
    ds = load_atomic(tiny_dir)
    assert ds.name == "tiny"
    assert ds.stats() == {
        "users": 3, "items": 5, "interactions": 9, "kg_triples": 5, "linked_items": 3,
        "kg_entities": 7, "kg_relations": 2,
    }
    toy = ds.item("i1")
    assert (toy.title, toy.year, toy.genres) == ("Toy Story", 1995, ("Animation", "Children's", "Comedy"))
    assert ds.item("i3").year is None  # "unknown" is a missing-value marker
    assert ds.item("i3").title == 'Le Ciel {{ est }} "bleu"'
    assert ds.users["u2"].attributes == {"age": "53", "gender": "F"}
    assert ds.links == {"i1": "m.toy", "i2": "m.fargo", "i4": "m.pulp"}
    assert ds.triples[0].relation == "film.film.directed_by" and ds.triples[0].source == "tiny.kg"


def test_history_is_chronological(tiny_dir: Path) -> None:
    ds = load_atomic(tiny_dir)
    history = ds.history("u2")
    assert [x.item_id for x in history] == ["i3", "i2", "i1", "i5"]
    assert [x.timestamp for x in history] == sorted(x.timestamp for x in history)
    assert history[0].rating == 4.0


def test_unknown_ids_raise_named_errors(tiny_dir: Path) -> None:
    ds = load_atomic(tiny_dir)
    with pytest.raises(LlmrecError, match="unknown user 'nobody'"):
        ds.history("nobody")
    with pytest.raises(LlmrecError, match="'zz'"):
        ds.check_items(["i1", "zz"])


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(LlmrecError, match="does not exist"):
        load_atomic(tmp_path / "nope")
    with pytest.raises(LlmrecError, match="no RecBole '.inter' file"):
        load_atomic(tmp_path)


def _replace_line(path: Path, lineno: int, text: str) -> None:
    lines = path.read_text().splitlines()
    lines[lineno - 1] = text
    path.write_text("\n".join(lines) + "\n")


def test_wrong_header_names_file_and_line(tiny_copy: Path) -> None:
    _replace_line(tiny_copy / "tiny.inter", 1, "user_id\titem_id:token\trating:float\ttimestamp:float")
    with pytest.raises(DataFormatError, match=r"tiny\.inter:1: header column 'user_id' is not 'name:type'"):
        load_atomic(tiny_copy)


def test_header_without_required_field(tiny_copy: Path) -> None:
    _replace_line(tiny_copy / "tiny.kg", 1, "head_id:token\trel:token\ttail_id:token")
    with pytest.raises(DataFormatError, match=r"tiny\.kg:1: header lacks required field\(s\) relation_id"):
        load_atomic(tiny_copy)


def test_rating_that_is_not_a_number(tiny_copy: Path) -> None:
    _replace_line(tiny_copy / "tiny.inter", 3, "u1\ti2\tgreat\t200")
    with pytest.raises(DataFormatError, match=r"tiny\.inter:3: column 'rating' must be a number, got 'great'"):
        load_atomic(tiny_copy)


def test_kg_line_with_two_columns(tiny_copy: Path) -> None:
    _replace_line(tiny_copy / "tiny.kg", 4, "m.fargo\tfilm.film.actor")
    with pytest.raises(DataFormatError, match=r"tiny\.kg:4: expected 3 tab-separated columns .* got 2"):
        load_atomic(tiny_copy)


def test_interaction_with_unknown_item_is_counted_or_strict(tiny_copy: Path, caplog: pytest.LogCaptureFixture) -> None:
    _replace_line(tiny_copy / "tiny.inter", 4, "u1\tghost\t4\t300")
    with caplog.at_level(logging.WARNING):
        ds = load_atomic(tiny_copy)
    assert len(ds.interactions) == 8
    assert "dropped 1 interaction(s)" in caplog.text
    with pytest.raises(DataFormatError, match=r"tiny\.inter:4: item 'ghost' is not in the \.item file"):
        load_atomic(tiny_copy, strict=True)


def test_link_to_unknown_item(tiny_copy: Path) -> None:
    _replace_line(tiny_copy / "tiny.link", 2, "i99\tm.toy")
    assert "i99" not in load_atomic(tiny_copy).links
    with pytest.raises(DataFormatError, match=r"tiny\.link:2: linked item 'i99'"):
        load_atomic(tiny_copy, strict=True)


def test_without_item_file_the_catalogue_comes_from_interactions(tiny_copy: Path) -> None:
    (tiny_copy / "tiny.item").unlink()
    (tiny_copy / "tiny.link").unlink()
    ds = load_atomic(tiny_copy)
    assert sorted(ds.items) == ["i1", "i2", "i3", "i4", "i5"]
    assert ds.item("i2").title == "i2"


def test_load_dataset_rejects_unknown_names() -> None:
    with pytest.raises(LlmrecError, match="neither a folder nor a known dataset name"):
        load_dataset("ml-1b")


@pytest.mark.slow
def test_ml100k_counts_and_kg() -> None:
    ds = load_dataset("ml-100k")
    stats = ds.stats()
    assert {k: stats[k] for k in ("users", "items", "interactions", "kg_triples", "linked_items")} == {
        # RecBole's link file has 1,598 rows keyed by ML-1M ids; realigned, 1,512 map to ml-100k items
        "users": 943, "items": 1682, "interactions": 100000, "kg_triples": 91631, "linked_items": 1512,
    }
    assert ds.links["50"] == "m.0dtfn"  # Star Wars (1977) -> Freebase's Star Wars, not Event Horizon's id 260
    assert ds.item("1").display_name == "Toy Story (1995)"
    assert stats["kg_relations"] == 24
