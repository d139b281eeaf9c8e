from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from llmrec.cli import main
from llmrec.data import ColumnMap, load_dataset, load_table
from llmrec.errors import DataFormatError

RATINGS = "1::1193::5::978300760\n1::661::3::978302109\n2::1357::5::978298709\n"
MOVIES = "1::Toy Story (1995)::Animation|Children's|Comedy\n"


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    folder = tmp_path / "ml-1m"
    folder.mkdir()
    (folder / "ratings.dat").write_text(RATINGS)
    (folder / "movies.dat").write_text(MOVIES, encoding="latin-1")
    (folder / "README").write_text("SUMMARY\n")
    return folder


def test_a_ratings_file_names_the_separator_and_the_way_out(raw: Path) -> None:
    for load in (load_dataset, load_table):
        with pytest.raises(DataFormatError) as caught:
            load(raw / "ratings.dat")
        message = str(caught.value)
        assert message.startswith(f"{raw / 'ratings.dat'}:1: raw MovieLens format: columns separated by '::'")
        assert "'ml-1m'" in message and "--columns rating=rating,timestamp=timestamp" in message


def test_a_folder_of_raw_files_says_which_files(raw: Path) -> None:
    with pytest.raises(DataFormatError, match=r"holds raw MovieLens files \(movies.dat, ratings.dat\): columns "
                                              r"separated by '::'.*sed 's/::/\\t/g' .*ratings.dat"):
        load_dataset(raw)
    with pytest.raises(DataFormatError, match="raw MovieLens format.*sed 's/::/\\\\t/g' .*ratings.dat"):
        load_dataset(raw / "movies.dat")  # the item file points to the ratings file


def test_a_csv_named_file_with_colon_separators_is_caught_too(tmp_path: Path) -> None:
    (tmp_path / "ratings.csv").write_text(RATINGS)
    with pytest.raises(DataFormatError, match="raw MovieLens format"):
        load_table(tmp_path / "ratings.csv")


def test_the_cli_prints_one_line_and_the_suggested_conversion_loads(
    raw: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["data", "stats", str(raw / "ratings.dat")]) == 2
    err = capsys.readouterr().err
    assert "'::'" in err and "Traceback" not in err
    command = err[err.index("(printf"): err.index(" ; then")]
    subprocess.run(["bash", "-c", command], check=True)
    ds = load_table(raw / "ratings.tsv", ColumnMap(rating="rating", timestamp="timestamp"))
    assert ds.stats()["interactions"] == 3 and [x.item_id for x in ds.history("1")] == ["1193", "661"]
