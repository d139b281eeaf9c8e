from __future__ import annotations

from pathlib import Path

import pytest

from llmrec.data import ColumnMap, ItemColumnMap, load_table
from llmrec.errors import ConfigError, DataFormatError, LlmrecError

TABLES = Path(__file__).parents[1] / "data" / "tables"
COLUMNS = ColumnMap(user="uid", item="movie", rating="stars", timestamp="ts")


def test_csv_with_item_table() -> None:
    ds = load_table(
        TABLES / "ratings.csv", COLUMNS, items_path=TABLES / "movies.csv",
        item_columns=ItemColumnMap(item="id", title="name", year="year", genres="tags"),
    )
    assert ds.stats()["interactions"] == 5
    assert ds.item("m3").genres == ("Horror", "Sci-Fi") and ds.item("m3").year == 1979
    assert [x.item_id for x in ds.history("b")] == ["m3", "m2"]  # sorted by ts


def test_jsonl_without_timestamps_keeps_row_order() -> None:
    ds = load_table(TABLES / "events.jsonl")
    assert [x.item_id for x in ds.history("a")] == ["m1", "m2"]
    assert ds.history("a")[0].rating is None


def test_parquet_round_trip(tmp_path: Path) -> None:
    import datasets

    datasets.Dataset.from_dict({"user_id": ["x", "x"], "item_id": ["1", "2"], "t": [2, 1]}).to_parquet(
        str(tmp_path / "t.parquet")
    )
    ds = load_table(tmp_path / "t.parquet", ColumnMap(timestamp="t"))
    assert [x.item_id for x in ds.history("x")] == ["2", "1"]


def test_missing_column_names_the_table_columns() -> None:
    with pytest.raises(DataFormatError, match=r"missing column\(s\) user='user_id'.*uid, movie, stars, ts"):
        load_table(TABLES / "ratings.csv")


def test_rating_that_is_not_a_number_names_the_row(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("uid,movie,stars,ts\na,m1,5,1\na,m2,lots,2\n")
    with pytest.raises(DataFormatError, match=r"bad\.csv:3: column 'stars' must be a number, got 'lots'"):
        load_table(bad, COLUMNS)


def test_unknown_format_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(LlmrecError, match="does not exist"):
        load_table(tmp_path / "nope.csv")
    (tmp_path / "x.xlsx").write_text("")
    with pytest.raises(LlmrecError, match="unknown table format"):
        load_table(tmp_path / "x.xlsx")


def test_column_map_parse() -> None:
    assert ColumnMap.parse("user=uid,item=movie,rating=stars") == ColumnMap("uid", "movie", "stars", None)
    with pytest.raises(ConfigError, match="bad column mapping 'score=s'"):
        ColumnMap.parse("score=s")


def test_hugging_face_datasets_in_memory_and_saved(tmp_path: Path) -> None:
    import datasets

    rows = {"uid": ["a", "a", "b"], "movie": ["1", "2", "1"], "stars": [5, 3, 4], "ts": [2, 1, 3]}
    columns = ColumnMap(user="uid", item="movie", rating="stars", timestamp="ts")
    hf = datasets.Dataset.from_dict(rows)
    ds = load_table(hf, columns, name="hf")
    assert ds.name == "hf" and [x.item_id for x in ds.history("a")] == ["2", "1"]  # time order from ts
    assert load_table(datasets.DatasetDict({"train": hf}), columns).stats()["interactions"] == 3
    hf.save_to_disk(str(tmp_path / "saved"))
    saved = load_table(tmp_path / "saved", columns)
    assert [(x.user_id, x.item_id, x.rating) for x in saved.interactions] == [
        (x.user_id, x.item_id, x.rating) for x in ds.interactions
    ]
    with pytest.raises(LlmrecError, match="splits"):
        load_table(datasets.DatasetDict({"a": hf, "b": hf}), columns)
    with pytest.raises(DataFormatError, match="missing column"):
        load_table(hf)  # default columns user_id/item_id are not in this table
