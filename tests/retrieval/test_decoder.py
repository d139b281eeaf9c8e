"""`llm_dense`: item vectors read out of a decoder LLM (tiny random models: shapes, padding, cache, options)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from llmrec.errors import ConfigError
from llmrec.knowledge.graph import KnowledgeGraph
from llmrec.models.loading import clear_model_cache
from llmrec.models.tiny import save_tiny
from llmrec.retrieval import RETRIEVERS, build_retriever
from llmrec.retrieval.decoder import DecoderItemEncoder, FactTexts, LlmDenseRetriever, centered
from llmrec.retrieval.embeddings import item_text

from .conftest import HISTORIES, ITEM_IDS


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny(tmp_path_factory.mktemp("tiny-lm") / "model", seed=0)


@pytest.fixture(autouse=True)
def _fresh_models():
    clear_model_cache()
    yield
    clear_model_cache()


def test_vectors_are_unit_rows_and_do_not_depend_on_the_batch(lm_dir):
    texts = ["Fargo (1996).", "A much longer title with genres (2001). Genres: Drama, Comedy.", "X."]
    batched = DecoderItemEncoder(lm_dir, dtype="float32", batch_size=3).encode(texts, progress=False)
    from transformers import AutoConfig

    assert batched.shape == (3, AutoConfig.from_pretrained(lm_dir).hidden_size) and batched.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)
    # left padding with per-row positions: each item reads out as it does alone
    alone = np.vstack([DecoderItemEncoder(lm_dir, dtype="float32", batch_size=1).encode([t], progress=False) for t in texts])
    np.testing.assert_allclose(batched, alone, atol=1e-4)


def test_one_pass_reads_out_what_each_encoder_gives(lm_dir):
    texts = ["Fargo (1996).", "A longer title (2001). Genres: Drama.", "X."]
    variants = [(-1, "last"), (1, "last"), (1, "mean"), (-1, "mean")]
    together = DecoderItemEncoder(lm_dir, dtype="float32", batch_size=2).read_out(texts, variants, progress=False)
    for layer, pooling in variants:
        alone = DecoderItemEncoder(lm_dir, dtype="float32", layer=layer, pooling=pooling).encode(texts, progress=False)
        np.testing.assert_allclose(together[(layer, pooling)], alone, atol=1e-5)
    assert not np.allclose(together[(1, "last")], together[(-1, "last")])
    with pytest.raises(ConfigError, match="layer must be -1 or 0..2"):
        DecoderItemEncoder(lm_dir, dtype="float32", layer=5).encode(texts, progress=False)


def test_centering_removes_the_common_direction():
    rng = np.random.default_rng(0)
    raw = rng.normal(size=(6, 8)) * 0.1 + 5.0  # one shared direction dominates every cosine
    raw /= np.linalg.norm(raw, axis=1, keepdims=True)
    out = centered(raw)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-6)
    assert (raw @ raw.T).min() > 0.9 and (out @ out.T)[~np.eye(6, dtype=bool)].mean() < 0.1
    same = np.ones((3, 4), dtype=np.float32) / 2
    np.testing.assert_array_equal(centered(same), same)


def test_the_key_names_model_dtype_readout_and_prompt(lm_dir):
    base = DecoderItemEncoder(lm_dir, dtype="float32")
    assert base.key.startswith(f"decoder:path:{lm_dir.resolve()}:float32:readout")
    assert DecoderItemEncoder(lm_dir, dtype="bfloat16").key != base.key
    assert DecoderItemEncoder(lm_dir, dtype="float32", prompt="Item {text}. One word:").key != base.key
    assert DecoderItemEncoder(lm_dir, dtype="float32", batch_size=3).key == base.key
    assert DecoderItemEncoder(lm_dir, dtype="float32", layer=1, pooling="mean").key == base.key + ":layer1:mean"


def test_build_caches_atomically_and_reuses_the_vectors(tiny, lm_dir, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = LlmDenseRetriever.build(tiny, lm_dir, dtype="float32", layer=-1, center=False, cache_dir=cache, progress=False)
    assert first.name == "llm_dense" and first.vectors.shape[0] == len(ITEM_IDS)
    assert [p.suffix for p in cache.iterdir()] == [".npz"]  # no temporary file left behind

    def refuse(*_args, **_kwargs):
        raise AssertionError("the cached vectors should have been read")

    monkeypatch.setattr(DecoderItemEncoder, "encode", refuse)
    again = LlmDenseRetriever.build(tiny, lm_dir, dtype="float32", layer=-1, center=False, cache_dir=cache, progress=False)
    np.testing.assert_array_equal(again.vectors, first.vectors)
    # the scoring is dense's: recency-weighted cosine with the history
    history = HISTORIES["u2"]
    got = again.retrieve(history, k=3)
    assert len(got) == 3 and {c.source for c in got} == {"llm_dense"}
    # centring is applied to the cached vectors, so it reads the same cache
    centred = LlmDenseRetriever.build(
        tiny, lm_dir, dtype="float32", layer=-1, center=True, cache_dir=cache, progress=False
    )
    np.testing.assert_allclose(centred.vectors, centered(first.vectors), atol=1e-6)


def test_an_interrupted_encode_leaves_no_cache_file(tiny, lm_dir, tmp_path, monkeypatch):
    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(DecoderItemEncoder, "encode", interrupted)
    with pytest.raises(KeyboardInterrupt):
        LlmDenseRetriever.build(tiny, lm_dir, dtype="float32", layer=-1, cache_dir=tmp_path / "cache", progress=False)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_item_texts_carry_kg_facts():
    from llmrec.data import load_dataset

    dataset = load_dataset(Path(__file__).parents[1] / "data" / "kg_tiny")
    texts = FactTexts(KnowledgeGraph.from_dataset(dataset, metadata=False), dataset.items)
    fargo = texts(dataset.items["1"])
    assert fargo.startswith(item_text(dataset.items["1"])) and "Same director as Blood Simple (1984)" in fargo
    assert "Sequel to Toy Story (1995)." in texts(dataset.items["5"])
    assert texts(dataset.items["12"]) == item_text(dataset.items["12"])  # no facts: the plain text
    assert FactTexts(None, dataset.items)(dataset.items["1"]) == item_text(dataset.items["1"])


@pytest.mark.parametrize(
    ("opts", "message"),
    [
        ({"dtype": "half"}, "dtype must be one of"),
        ({"batch_size": 0}, "batch_size must be a positive integer"),
        ({"prompt": "no field"}, "prompt must contain"),
        ({"layer": -2}, "layer must be -1"),
        ({"pooling": "max"}, "pooling must be one of"),
    ],
)
def test_bad_encoder_options_are_refused(lm_dir, opts, message):
    with pytest.raises(ConfigError, match=message):
        DecoderItemEncoder(lm_dir, **opts)


def test_an_empty_model_name_or_list_is_refused(lm_dir):
    with pytest.raises(ConfigError, match="empty string"):
        DecoderItemEncoder(" ")
    with pytest.raises(ConfigError, match="nothing to encode"):
        DecoderItemEncoder(lm_dir, dtype="float32").encode([])


def test_registry_entry_and_zfusion_member(tiny, lm_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("LLMREC_HOME", str(tmp_path))
    spec = RETRIEVERS["llm_dense"]
    assert spec.scores_as_new and not spec.orders_candidates
    with pytest.raises(ConfigError, match="did you mean 'dtype'"):
        build_retriever("llm_dense", tiny, dtyp="float32")
    opts = {"model": str(lm_dir), "dtype": "float32", "layer": 1}
    fused = build_retriever(
        "zfusion", tiny, members=["cooc", "llm_dense"], member_opts={"llm_dense": opts}, progress=False,
        cache_dir=tmp_path / "fits",
    )
    assert fused.member_names == ("cooc", "llm_dense") and len(fused.weights) == 2
    assert len(fused.retrieve(HISTORIES["u1"], k=3)) == 3
