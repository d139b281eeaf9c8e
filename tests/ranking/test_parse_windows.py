"""The generated-ranking parser, sliding windows and bootstrap orders (pure logic, no model)."""

from __future__ import annotations

import random

import pytest

from llmrec.errors import ConfigError
from llmrec.ranking import parse_ranking
from llmrec.ranking.windows import aggregate, permutations, sliding_window_order, window_spans

LABELS = ["A", "B", "C", "D"]
IDS = ["10", "20", "30", "40"]
TITLES = {"10": "Fargo", "20": "Toy Story", "30": "Toy Story 2", "40": "A Bug's Life"}


@pytest.mark.parametrize(
    ("text", "order", "malformed"),
    [
        ("C > A > D > B", (2, 0, 3, 1), False),
        ("[C] > [A] > [D] > [B]", (2, 0, 3, 1), False),
        ("C\nA\nD\nB", (2, 0, 3, 1), False),
        ("C, A, D, B.", (2, 0, 3, 1), False),
        ("C > A > C > B > D", (2, 0, 1, 3), True),  # duplicate dropped
        ("D > B", (3, 1, 0, 2), True),  # missing appended in input order
        ("", (0, 1, 2, 3), True),  # nothing parsed: input order, malformed
        ("B > A > Z > C > D", (1, 0, 2, 3), True),  # Z is no candidate's label
        (
            "A movie lover would pick B > D > C > A",
            (1, 3, 2, 0),
            False,
        ),  # the article "A movie" is not a label
        (
            "Toy Story 2, then Fargo, then D and B",
            (2, 0, 3, 1),
            False,
        ),  # titles; "Toy Story 2" wins over "Toy Story"
        ("I think 40 > 10 > 30 > 20", (3, 0, 2, 1), False),  # item ids
        (
            "Of 20 movies: C > A > D > B",
            (2, 0, 3, 1),
            False,
        ),  # a number in prose is not id "20" when labels are used
        ("a > b > c > d", (0, 1, 2, 3), True),  # lower case is not a label
    ],
)
def test_parse_ranking(text, order, malformed):
    parsed = parse_ranking(text, LABELS, IDS, TITLES)
    assert parsed.order == order
    assert parsed.malformed is malformed
    assert sorted(parsed.order) == [0, 1, 2, 3]


def test_parse_counts_duplicates_and_unknown():
    parsed = parse_ranking("B > B > A > X > C > D", LABELS, IDS)
    assert parsed.duplicates == 1 and parsed.unknown == ("X",) and parsed.named == 4


def test_title_with_label_inside_is_not_a_label():
    # "A Bug's Life" holds an "A": as a title match it must not count as label A
    parsed = parse_ranking("A Bug's Life > C > B > A", LABELS, IDS, TITLES)
    assert parsed.order == (3, 2, 1, 0) and not parsed.malformed


def test_window_spans():
    assert window_spans(30, 20, 10) == [(10, 30), (0, 20)]
    assert window_spans(5, 20, 10) == [(0, 5)]
    assert window_spans(7, 3, 2) == [(4, 7), (2, 5), (0, 3)]
    with pytest.raises(ConfigError, match="smaller than the window"):
        window_spans(10, 3, 3)


def test_sliding_windows_bring_the_best_items_to_the_front():
    rng = random.Random(0)
    for _ in range(50):
        n = rng.randint(2, 40)
        window = rng.randint(2, 12)
        step = rng.randint(1, window - 1)
        quality = {f"i{k}": rng.random() for k in range(n)}
        items = list(quality)
        final, n_windows = sliding_window_order(
            items, window, step, lambda seg, q=quality: sorted(seg, key=lambda c: -q[c])
        )
        assert sorted(final) == sorted(items)
        assert n_windows == len(window_spans(n, window, step))
        truth = sorted(items, key=lambda c: -quality[c])
        # one back-to-front pass carries the best (window - step) items to the front, whatever their start
        keep = window - step
        assert final[:keep] == truth[:keep]


def test_sliding_windows_refuse_a_ranker_that_loses_items():
    with pytest.raises(RuntimeError, match="permutation"):
        sliding_window_order(["a", "b", "c"], 2, 1, lambda seg: seg[:1])


def test_bootstrap_orders_are_seeded_and_start_with_the_given_order():
    a = permutations(6, 4, seed=3)
    assert a == permutations(6, 4, seed=3)
    assert a[0] == list(range(6)) and all(sorted(p) == list(range(6)) for p in a)
    assert a != permutations(6, 4, seed=4)
    with pytest.raises(ConfigError):
        permutations(6, 0, seed=0)
    assert aggregate([{"x": 1.0, "y": 3.0}, {"x": 3.0, "y": 1.0}]) == {"x": 2.0, "y": 2.0}
