from __future__ import annotations

from llmrec.assets.ml100k_links import ML1M_MISSING_IDS, ml1m_titles_by_id, normalise_title, realign_links


def test_normalise_title_moves_articles_and_drops_years() -> None:
    assert normalise_title("Godfather, The (1972)") == "the godfather"
    assert normalise_title("City of Lost Children, The") == "the city of lost children"
    assert normalise_title("Shanghai Triad (Yao a yao yao dao waipo qiao) (1995)", drop_all_parentheses=True) == "shanghai triad"


def test_row_order_skips_the_ids_ml1m_lacks() -> None:
    first_gap = min(ML1M_MISSING_IDS)
    rows = [(f"Film {n}", 1990) for n in range(first_gap + 5)]
    by_id = ml1m_titles_by_id(rows)
    assert by_id[first_gap - 1] == (f"Film {first_gap - 2}", 1990)
    assert first_gap not in by_id
    assert by_id[first_gap + 1] == (f"Film {first_gap - 1}", 1990)  # the row after the gap belongs to the next id


def test_realign_matches_by_title_and_year_then_by_words() -> None:
    ml1m = [("Toy Story (1995)", 1995), ("Jumanji (1995)", 1995), ("Star Wars: Episode IV - A New Hope (1977)", 1977)]
    items = [("7", "Star Wars", 1977), ("8", "Toy Story", 1995), ("9", "Unrelated", 1995)]
    links = [("1", "m.toy"), ("2", "m.jumanji"), ("3", "m.starwars"), ("x", "m.bad")]
    assert realign_links(links, ml1m, items) == {"8": "m.toy", "7": "m.starwars"}  # Jumanji is not in this catalogue
