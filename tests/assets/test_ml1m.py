from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from llmrec.assets.ml1m import ML1M_KNOWN_IDS, ML1M_ROWS, convert_ml1m
from llmrec.assets.ml100k_links import MAX_LINK_ID, ML1M_MAX_ID, ML1M_MISSING_IDS, ml1m_movie_ids
from llmrec.data import load_atomic, load_dataset
from llmrec.errors import DataFormatError

RAW = Path(__file__).parent.parent / "data" / "ml1m_raw"
# The fixture's 7 item rows skip movieIds 3 and 6: Toy Story 1, Jumanji 2, Heat 4, The American President 5,
# GoldenEye 7, Casino 8, and an unrated film 9.
FIXTURE = {"missing_ids": frozenset({3, 6}), "known_ids": {1: "Toy Story (1995)", 7: "GoldenEye (1995)"}, "rows": 7}
LINKS = [("1", "m.toy"), ("4", "m.heat"), ("9", "m.unrated"), ("3", "m.no_such_movie")]


def _convert(tmp_path: Path, source: Path = RAW, **overrides: object) -> Path:
    dest = tmp_path / "ml-1m"
    convert_ml1m(source, dest, links=LINKS, kg=RAW / "kg.tsv", **{**FIXTURE, **overrides})  # type: ignore[arg-type]
    return dest


def test_row_order_gives_movie_ids_across_gaps(tmp_path: Path) -> None:
    ds = load_atomic(_convert(tmp_path), strict=True)
    titles = {item_id: item.display_name for item_id, item in ds.items.items()}
    assert titles == {
        "1": "Toy Story (1995)", "2": "Jumanji (1995)", "4": "Heat (1995)",
        "5": "American President, The (1995)", "7": "GoldenEye (1995)", "8": "Casino (1995)",
    }  # the unrated row (id 9) is left out of the catalogue
    assert ds.user_ids == ["1", "10", "2"] and ds.users["10"].attributes["zip_code"] == "95370"
    assert [(x.item_id, x.rating) for x in ds.history("1")] == [("4", 5.0), ("1", 3.0)]
    assert ds.links == {"1": "m.toy", "4": "m.heat"}  # unrated and nonexistent movies are not linked
    assert ds.stats() == {"users": 3, "items": 6, "interactions": 7, "kg_triples": 3, "linked_items": 2,
                          "kg_entities": 6, "kg_relations": 3}


def test_a_changed_source_fails_instead_of_shifting_ids(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="has 7 rows, expected 8: movieIds would shift"):
        _convert(tmp_path, rows=8)
    with pytest.raises(DataFormatError, match="movieId 7 should be 'GoldenEye \\(1995\\)', row order gives 'Casino"):
        _convert(tmp_path, missing_ids=frozenset({3}), rows=None)


def test_bad_user_ids_and_unknown_titles_name_the_line(tmp_path: Path) -> None:
    broken = tmp_path / "raw"
    shutil.copytree(RAW, broken)
    inter = broken / "ml-1m.inter"
    inter.write_text(inter.read_text().replace("1m_2\tCasino", "u2\tCasino"))
    with pytest.raises(DataFormatError, match=r"ml-1m.inter:5: user id 'u2' is not '1m_' followed by a number"):
        _convert(tmp_path, broken)
    inter.write_text(inter.read_text().replace("u2\tCasino (1995)", "1m_2\tCasino (1996)"))
    with pytest.raises(DataFormatError, match=r"ml-1m.inter:5: item 'Casino \(1996\)' is not in ml-1m.item"):
        _convert(tmp_path, broken)


def test_the_real_id_table_spans_movielens_1m() -> None:
    ids = ml1m_movie_ids(ML1M_ROWS)
    assert len(ML1M_MISSING_IDS) == 69 and ids[-1] == ML1M_MAX_ID == 3952 and len(set(ids)) == ML1M_ROWS
    assert len([i for i in ids if i <= MAX_LINK_ID]) == 1637  # ML-1M movies the KG link table can name
    assert set(ML1M_KNOWN_IDS) <= set(ids)


@pytest.mark.slow
def test_ml1m_asset_counts_ids_and_kg() -> None:
    ds = load_dataset("ml-1m")
    stats = ds.stats()
    assert {k: stats[k] for k in ("users", "items", "interactions", "kg_triples", "linked_items", "kg_relations")} == {
        "users": 6040, "items": 3706, "interactions": 1000209, "kg_triples": 91631, "linked_items": 1519,
        "kg_relations": 24,
    }
    assert ds.item("1").display_name == "Toy Story (1995)"
    assert ds.item("260").display_name == "Star Wars: Episode IV - A New Hope (1977)"
    assert ds.item("2858").display_name == "American Beauty (1999)"
    assert ds.links["260"] == "m.0dtfn"  # the Freebase entity the ml-100k asset links to its Star Wars (item 50)

    from llmrec.knowledge.checks import check_alignment
    from llmrec.knowledge.graph import KnowledgeGraph

    report = check_alignment(KnowledgeGraph.from_dataset(ds, on_misaligned="error"), ds)
    assert report.sequel_pairs == 57 and round((report.title_overlap or 0) * 57) == 45
