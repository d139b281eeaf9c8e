from __future__ import annotations

import numpy as np
import pytest
from numerics import batching_tolerance

from llmrec.errors import ConfigError, UnknownIdError
from llmrec.retrieval import (
    FALLBACK_SOURCE,
    DenseRetriever,
    IndexConfig,
    PopularityRetriever,
    Retriever,
    VectorIndex,
)

from .conftest import ITEM_IDS, assert_same_top_k


def make_dense(tiny, vectors, kind="flat", **opts) -> DenseRetriever:
    index = VectorIndex.build(vectors, ITEM_IDS, model="test", config=IndexConfig(kind=kind, nlist=2))
    return DenseRetriever(index, PopularityRetriever.fit(tiny), **opts)


def expected_ranking(vectors, history, decay, exclude=()):
    pos = [ITEM_IDS.index(h) for h in history]
    w = decay ** np.arange(len(pos) - 1, -1, -1)
    q = w @ vectors[pos].astype(np.float64)
    q /= np.linalg.norm(q)
    scores = vectors @ q
    order = [ITEM_IDS[j] for j in np.argsort(-scores) if ITEM_IDS[j] not in set(history) | set(exclude)]
    return order, dict(zip(ITEM_IDS, scores, strict=True))


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_retrieves_nearest_to_recency_weighted_mean(tiny, unit_vectors, kind):
    dense = make_dense(tiny, unit_vectors, kind=kind, recency_decay=0.5)
    assert isinstance(dense, Retriever)
    if kind == "ivf":
        dense.index.set_search_params(nprobe=2)  # all cells: exact on this tiny catalogue
    history = ["a", "e", "b"]
    got = dense.retrieve(history, k=4, exclude=["d"])
    order, scores = expected_ranking(unit_vectors, history, 0.5, exclude=["d"])
    expected = [scores[i] for i in order[:4]]  # float64 here, float32 in the index: equal up to float32 noise
    assert_same_top_k([c.item_id for c in got], [c.score for c in got], order[:4], expected, tol=batching_tolerance(expected))
    assert {c.source for c in got} == {"dense"}


def test_score_is_cosine_with_the_query(tiny, unit_vectors):
    dense = make_dense(tiny, unit_vectors, recency_decay=0.8)
    _, scores = expected_ranking(unit_vectors, ["c", "d"], 0.8)
    assert dense.score(["c", "d"], ["h", "c"]) == pytest.approx([scores["h"], scores["c"]], abs=1e-5)


def test_history_len_uses_latest_items_only(tiny, unit_vectors):
    dense = make_dense(tiny, unit_vectors, history_len=1)
    got = dense.retrieve(["a", "b", "f"], k=3)
    single = unit_vectors @ unit_vectors[ITEM_IDS.index("f")]
    order = [ITEM_IDS[j] for j in np.argsort(-single, kind="stable") if ITEM_IDS[j] not in ("a", "b", "f")]
    expected = [float(single[ITEM_IDS.index(i)]) for i in order[:3]]
    assert_same_top_k([c.item_id for c in got], [c.score for c in got], order[:3], expected, tol=batching_tolerance(expected))


def test_k_up_to_remaining_catalogue(tiny, unit_vectors):
    dense = make_dense(tiny, unit_vectors)
    got = dense.retrieve(["a", "b"], k=len(ITEM_IDS), exclude=["c"])
    assert sorted(c.item_id for c in got) == ["d", "e", "f", "g", "h"]


def test_empty_history_falls_back_to_popularity(tiny, unit_vectors):
    dense = make_dense(tiny, unit_vectors)
    got = dense.retrieve([], k=3)
    assert [c.item_id for c in got] == [c.item_id for c in PopularityRetriever.fit(tiny).retrieve([], k=3)]
    assert {c.source for c in got} == {FALLBACK_SOURCE}
    assert dense.score([], ["c"]) == PopularityRetriever.fit(tiny).score([], ["c"])


def test_bad_input(tiny, unit_vectors):
    dense = make_dense(tiny, unit_vectors)
    with pytest.raises(ConfigError, match="larger than the catalogue"):
        dense.retrieve(["a"], k=9)
    with pytest.raises(ConfigError, match="k must be > 0"):
        dense.retrieve(["a"], k=0)
    with pytest.raises(UnknownIdError, match="'nope'"):
        dense.retrieve(["nope"], k=2)
    with pytest.raises(ConfigError, match="query"):
        make_dense(tiny, unit_vectors, query="text")  # needs an encoder
    with pytest.raises(ConfigError, match="query must be"):
        make_dense(tiny, unit_vectors, query="sum")
