"""Candidate order: by a first-stage retriever, ties broken by popularity then by the given order."""

from __future__ import annotations

import pytest

from llmrec.errors import ConfigError
from llmrec.ranking.order import check_candidate_order, order_candidates
from llmrec.retrieval import CooccurrenceRetriever, PopularityRetriever
from tests.retrieval.conftest import make_dataset


def test_none_keeps_the_given_order():
    assert order_candidates(None, ["a"], ["e", "c", "d"]) == ["e", "c", "d"]


def test_cooc_order_best_first_with_popularity_tiebreak():
    cooc = CooccurrenceRetriever.fit(make_dataset())
    # history [a]: c co-occurs with a twice, b once; d, e, h never (d and e: popularity 2 and 1, h: 0)
    assert order_candidates(cooc, ["a"], ["h", "e", "d", "b", "c"]) == ["c", "b", "d", "e", "h"]


def test_order_as_new_to_the_user_can_change_the_order():
    cooc = CooccurrenceRetriever.fit(make_dataset())
    # u4 has a and c. As new to u4, c loses u4's co-occurrence with a.
    plain = order_candidates(cooc, ["a"], ["b", "c"])
    as_new = order_candidates(cooc, ["a"], ["b", "c"], user_items={"a", "c"})
    assert plain == ["c", "b"] and as_new == ["b", "c"]


def test_popularity_order():
    pop = PopularityRetriever.fit(make_dataset())
    assert order_candidates(pop, [], ["a", "c", "h"]) == ["c", "a", "h"]


def test_unknown_order_is_named():
    with pytest.raises(ConfigError, match="prompt.candidate_order"):
        check_candidate_order("fusion", "prompt.candidate_order")
