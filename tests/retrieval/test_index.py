from __future__ import annotations

import json

import numpy as np
import pytest
from numerics import batching_tolerance

from llmrec.errors import ConfigError, DataFormatError
from llmrec.retrieval import IndexConfig, IndexMismatchError, VectorIndex

from .conftest import assert_same_top_k


def random_unit(n: int, dim: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def ids(n: int) -> list[str]:
    return [f"i{j}" for j in range(n)]


def test_flat_search_equals_brute_force():
    vectors, queries = random_unit(500, 32), random_unit(5, 32, seed=1)
    index = VectorIndex.build(vectors, ids(500), model="m", config=IndexConfig(kind="auto"))
    assert index.kind == "flat"
    scores, positions = index.search(queries, 10)
    exact = queries @ vectors.T
    for q in range(5):
        # faiss and numpy reduce the dot products in other orders: the same top 10 up to float32 noise
        expected = np.argsort(-exact[q], kind="stable")[:10]
        tol = batching_tolerance(exact[q, expected])
        assert_same_top_k(list(positions[q]), list(scores[q]), list(expected), list(exact[q, expected]), tol=tol)


def test_auto_switches_to_approximate_above_threshold():
    vectors = random_unit(300, 16)
    index = VectorIndex.build(vectors, ids(300), model="m", config=IndexConfig(approx_threshold=100))
    assert index.kind == "hnsw"


@pytest.mark.parametrize(
    ("config", "knob"),
    [
        (IndexConfig(kind="hnsw", hnsw_m=16, ef_search=256), "ef_search"),
        (IndexConfig(kind="ivf", nlist=16), "nprobe"),
    ],
)
def test_approximate_indexes_reach_high_recall_when_tuned(config, knob):
    vectors, queries = random_unit(3000, 24), random_unit(20, 24, seed=3)
    exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    index = VectorIndex.build(vectors, ids(3000), model="m", config=config)
    index.set_search_params(**{knob: 16 if knob == "nprobe" else 256})
    _, positions = index.search(queries, 10)
    recall = np.mean([len(set(p) & set(e)) / 10 for p, e in zip(positions, exact, strict=True)])
    assert recall >= 0.95  # ivf visits all 16 cells: exact; hnsw with a wide beam on 3000 points
    if knob == "nprobe":
        index.set_search_params(nprobe=1)
        _, few = index.search(queries, 10)
        worse = np.mean([len(set(p) & set(e)) / 10 for p, e in zip(few, exact, strict=True)])
        assert worse < recall


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_save_load_round_trip(tmp_path, kind):
    vectors, queries = random_unit(400, 16), random_unit(3, 16, seed=2)
    index = VectorIndex.build(
        vectors, ids(400), model="asset:x", config=IndexConfig(kind=kind, nlist=8), text_version="v1"
    )
    before = index.search(queries, 7)
    path = index.save(tmp_path / "idx")
    assert sorted(p.name for p in path.iterdir()) == ["embeddings.npy", "index.faiss", "meta.json"]
    loaded = VectorIndex.load(path, model="asset:x", dim=16, item_ids=ids(400))
    assert loaded.kind == kind and loaded.item_ids == ids(400) and loaded.meta["text_version"] == "v1"
    after = loaded.search(queries, 7)
    np.testing.assert_array_equal(before[1], after[1])
    np.testing.assert_allclose(before[0], after[0])
    np.testing.assert_array_equal(loaded.vectors, vectors)


def test_save_replaces_atomically_and_leaves_no_temporaries(tmp_path):
    path = tmp_path / "idx"
    VectorIndex.build(random_unit(50, 8), ids(50), model="a").save(path)
    VectorIndex.build(random_unit(60, 8, seed=5), ids(60), model="b").save(path)
    assert VectorIndex.read_meta(path)["model"] == "b"
    assert [p.name for p in tmp_path.iterdir()] == ["idx"]
    with pytest.raises(FileExistsError):
        VectorIndex.build(random_unit(50, 8), ids(50), model="a").save(path, overwrite=False)


def test_mismatches_are_clear_errors(tmp_path):
    path = VectorIndex.build(random_unit(50, 8), ids(50), model="asset:minilm").save(tmp_path / "idx")
    with pytest.raises(IndexMismatchError, match="model 'asset:minilm'.*'hub:other/model'"):
        VectorIndex.load(path, model="hub:other/model")
    with pytest.raises(IndexMismatchError, match="dimension 8.*384"):
        VectorIndex.load(path, dim=384)
    with pytest.raises(IndexMismatchError, match="items"):
        VectorIndex.load(path, item_ids=ids(49))
    index = VectorIndex.load(path)
    with pytest.raises(IndexMismatchError, match="query dimension 9"):
        index.search(random_unit(1, 9), 3)


def test_broken_folders_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="not a saved llmrec index"):
        VectorIndex.load(tmp_path)
    path = VectorIndex.build(random_unit(20, 8), ids(20), model="m").save(tmp_path / "idx")
    (path / "index.faiss").unlink()
    with pytest.raises(ConfigError, match="index.faiss is missing"):
        VectorIndex.load(path)
    (path / "meta.json").write_text("{not json")
    with pytest.raises(DataFormatError, match="meta.json"):
        VectorIndex.load(path)
    (path / "meta.json").write_text(json.dumps({"kind": "flat"}))
    with pytest.raises(DataFormatError, match="lacks model, dim, item_ids"):
        VectorIndex.load(path)


def test_bad_build_input():
    with pytest.raises(ConfigError, match="kind"):
        IndexConfig(kind="lsh")
    with pytest.raises(ConfigError, match="ef_search"):
        IndexConfig(ef_search=0)
    with pytest.raises(ConfigError, match="3 vectors but 2"):
        VectorIndex.build(random_unit(3, 4), ids(2), model="m")
    with pytest.raises(ConfigError, match="distinct"):
        VectorIndex.build(random_unit(2, 4), ["x", "x"], model="m")
