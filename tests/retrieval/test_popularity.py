from __future__ import annotations

import pytest

from llmrec.data.dataset import PositivePolicy
from llmrec.errors import ConfigError, UnknownIdError
from llmrec.retrieval import PopularityRetriever, Retriever
from llmrec.types import Interaction

from .conftest import HISTORIES, ITEM_IDS


def counts() -> dict[str, int]:
    out = {i: 0 for i in ITEM_IDS}
    for seq in HISTORIES.values():
        for item in seq:
            out[item] += 1
    return out


def test_follows_protocol(tiny):
    assert isinstance(PopularityRetriever.fit(tiny), Retriever)


def test_ranks_by_count_excluding_history_and_exclusions(tiny):
    pop = PopularityRetriever.fit(tiny)
    expected = sorted(ITEM_IDS, key=lambda i: (-counts()[i], ITEM_IDS.index(i)))
    got = pop.retrieve([], k=len(ITEM_IDS))
    assert [c.item_id for c in got] == expected
    assert [c.score for c in got] == [counts()[i] for i in expected]
    assert {c.source for c in got} == {"popularity"}

    got = pop.retrieve(["c"], k=3, exclude=["b", "not-an-item"])
    assert [c.item_id for c in got] == [i for i in expected if i not in ("c", "b")][:3]


def test_score_returns_counts_for_any_items(tiny):
    pop = PopularityRetriever.fit(tiny)
    assert pop.score(["a"], ["c", "h", "a"]) == [counts()["c"], 0.0, counts()["a"]]


def test_returns_fewer_only_when_catalogue_is_exhausted(tiny):
    pop = PopularityRetriever.fit(tiny)
    got = pop.retrieve(ITEM_IDS[:6], k=5)
    assert sorted(c.item_id for c in got) == ["g", "h"]


@pytest.mark.parametrize("k", [0, -3, len(ITEM_IDS) + 1, 2.5, "3", True])
def test_bad_k(tiny, k):
    with pytest.raises(ConfigError, match="k"):
        PopularityRetriever.fit(tiny).retrieve(["a"], k=k)


def test_unknown_history_item_is_named(tiny):
    with pytest.raises(UnknownIdError, match="zz"):
        PopularityRetriever.fit(tiny).retrieve(["a", "zz"], k=2)
    with pytest.raises(UnknownIdError, match="candidate.*qq"):
        PopularityRetriever.fit(tiny).score(["a"], ["qq"])


def test_policy_counts_only_positives(tiny):
    low = [Interaction("u9", "h", 100.0, 1.0), Interaction("u8", "h", 100.0, 1.0)]
    ds = tiny.with_interactions(list(tiny.interactions) + low)
    assert PopularityRetriever.fit(ds).score([], ["h"]) == [2.0]
    assert PopularityRetriever.fit(ds, policy=PositivePolicy(4.0)).score([], ["h"]) == [0.0]


def test_large_catalogue_top_k_matches_full_sort():
    import numpy as np

    rng = np.random.default_rng(0)
    ids = [f"i{n}" for n in range(2000)]
    counts = rng.integers(0, 30, size=2000).astype(float)  # many ties
    pop = PopularityRetriever(ids, counts)
    history = ids[:50]
    got = pop.retrieve(history, k=25, exclude=ids[50:60])
    order = sorted(range(60, 2000), key=lambda n: (-counts[n], n))[:25]
    assert [c.item_id for c in got] == [ids[n] for n in order]
