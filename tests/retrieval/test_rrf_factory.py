from __future__ import annotations

import pytest

from llmrec.errors import ConfigError, UnknownIdError
from llmrec.retrieval import (
    FALLBACK_SOURCE,
    CooccurrenceRetriever,
    FusionRetriever,
    PopularityRetriever,
    build_retriever,
    retrieve_for_user,
)


def test_rrf_matches_hand_computation(tiny):
    pop, cooc = PopularityRetriever.fit(tiny), CooccurrenceRetriever.fit(tiny)
    fused = FusionRetriever([pop, cooc], weights=[1.0, 2.0], rrf_k=10, depth=8)
    history = ["a"]
    expected: dict[str, float] = {}
    for retriever, w in ((pop, 1.0), (cooc, 2.0)):
        for rank, c in enumerate(retriever.retrieve(history, 7), start=1):
            expected[c.item_id] = expected.get(c.item_id, 0.0) + w / (10 + rank)
    got = fused.retrieve(history, k=4)
    best = sorted(expected, key=lambda i: -expected[i])[:4]
    assert {c.item_id for c in got} == set(best)
    assert [c.score for c in got] == pytest.approx(sorted(expected.values(), reverse=True)[:4])
    assert {c.source for c in got} == {"fusion"} and fused.name == "fusion(popularity+cooc)"
    assert fused.score(history, ["a", best[0]]) == pytest.approx([0.0, expected[best[0]]])


def test_zero_weight_member_is_ignored(tiny):
    pop, cooc = PopularityRetriever.fit(tiny), CooccurrenceRetriever.fit(tiny)
    fused = FusionRetriever([pop, cooc], weights=[0.0, 1.0])
    assert [c.item_id for c in fused.retrieve(["a", "c"], 5)] == [
        c.item_id for c in cooc.retrieve(["a", "c"], 5)
    ]


def test_fallback_is_reported_when_every_member_fell_back(tiny):
    fused = build_retriever("fusion", tiny, members=["cooc", "cooc"])
    assert {c.source for c in fused.retrieve([], 3)} == {FALLBACK_SOURCE}


def test_factory_names_and_options(tiny):
    assert build_retriever("popularity", tiny).name == "popularity"
    assert build_retriever("cooc", tiny, history_len=3).history_len == 3
    with pytest.raises(ConfigError, match="did you mean 'popularity'"):
        build_retriever("populrity", tiny)
    with pytest.raises(ConfigError, match="'histry_len' \\(did you mean 'history_len'"):
        build_retriever("cooc", tiny, histry_len=3)
    with pytest.raises(ConfigError, match="rrf"):
        build_retriever("fusion", tiny, members=["cooc"], rrf=3)
    with pytest.raises(ConfigError, match="member_opts"):
        build_retriever("fusion", tiny, members=["cooc"], member_opts={"dense": {}})


def test_retrieve_for_user(tiny):
    cooc = CooccurrenceRetriever.fit(tiny)
    result = retrieve_for_user(cooc, tiny, "u1", k=3)
    assert result.history_length == 3 and not result.fallback
    assert not {c.item_id for c in result.candidates} & {"a", "b", "c"}
    new = retrieve_for_user(cooc, tiny, "u_new", k=2)  # in the user table, no interactions
    assert new.fallback and new.history_length == 0 and len(new.candidates) == 2
    with pytest.raises(UnknownIdError, match="'ghost'"):
        retrieve_for_user(cooc, tiny, "ghost", k=2)
