"""EASE, ALS and SASRec: checked against independent computations on tiny catalogues."""

from __future__ import annotations

import numpy as np
import pytest

from llmrec.errors import ConfigError
from llmrec.retrieval import FALLBACK_SOURCE, build_retriever
from llmrec.retrieval.als import AlsRetriever
from llmrec.retrieval.ease import EaseRetriever
from llmrec.retrieval.sequential import SasrecRetriever, SasrecSettings

from .conftest import HISTORIES, ITEM_IDS, make_dataset


def _binary_matrix(histories: dict[str, list[str]]) -> np.ndarray:
    x = np.zeros((len(histories), len(ITEM_IDS)))
    for row, seq in enumerate(histories.values()):
        for item in seq:
            x[row, ITEM_IDS.index(item)] = 1.0
    return x


def test_ease_matches_the_constrained_least_squares_solution(tiny):
    # Solve min ||X - XB||² + λ||B||² with diag(B) = 0 column by column, without the closed form: column j
    # regresses X[:, j] on the other columns (ridge), which is what the diagonal constraint means.
    l2 = 3.0
    x = _binary_matrix(HISTORIES)
    n = x.shape[1]
    expected = np.zeros((n, n))
    for j in range(n):
        others = [i for i in range(n) if i != j]
        a = x[:, others]
        expected[others, j] = np.linalg.solve(a.T @ a + l2 * np.eye(n - 1), a.T @ x[:, j])
    ease = EaseRetriever.fit(tiny, l2=l2)
    np.testing.assert_allclose(ease.weights, expected, atol=1e-10)
    history = ["a", "c"]
    assert ease.score(history, ITEM_IDS) == pytest.approx(list(expected[[0, 2]].sum(axis=0)))


def test_ease_scores_as_new_equal_a_refit_without_the_user(tiny):
    ease = EaseRetriever.fit(tiny, l2=2.0)
    without = make_dataset({u: s for u, s in HISTORIES.items() if u != "u2"})
    refit = EaseRetriever.fit(without, l2=2.0)
    history = ["b", "c"]
    wanted = ["d", "a", "e", "c"]
    got = ease.score(history, wanted, user_items=HISTORIES["u2"])
    assert got == pytest.approx(refit.score(history, wanted), abs=1e-9)


def test_ease_refuses_a_catalogue_too_large_before_allocating(tiny):
    with pytest.raises(ConfigError, match=r"8 items needs dense .*GiB.*max_memory_gb"):
        EaseRetriever.fit(tiny, max_memory_gb=1e-9)
    with pytest.raises(ConfigError, match="l2"):
        EaseRetriever.fit(tiny, l2=0)


def test_ease_and_als_fall_back_to_popularity_on_an_empty_history(tiny):
    for retriever in (EaseRetriever.fit(tiny), AlsRetriever.fit(tiny, factors=2, iterations=3)):
        got = retriever.retrieve([], k=3)
        assert [c.source for c in got] == [FALLBACK_SOURCE] * 3
        assert got[0].item_id == "c"  # the most interacted item


def test_als_folds_in_a_history_like_a_least_squares_solve(tiny):
    als = AlsRetriever.fit(tiny, factors=3, regularization=0.5, alpha=2.0, iterations=5, seed=1)
    y = als.item_factors
    items = [ITEM_IDS.index(i) for i in ("a", "d")]
    # implicit's objective for one user: confidence c = alpha on observed items, preference 1; 0 elsewhere.
    a = y.T @ y + (2.0 - 1.0) * y[items].T @ y[items] + 0.5 * np.eye(3)
    b = 2.0 * y[items].sum(axis=0)
    expected = y @ np.linalg.solve(a, b)
    assert als.score(["a", "d"], ITEM_IDS) == pytest.approx(list(expected), rel=1e-3, abs=1e-4)
    with pytest.raises(ConfigError, match="factors"):
        AlsRetriever.fit(tiny, factors=0)


def _sequential_dataset():
    # Everyone walks the same chain a -> b -> c -> ... so the next item is always the successor.
    chain = ITEM_IDS[:6]
    histories = {f"u{n}": chain[n % 3 :] for n in range(30)}
    return make_dataset(histories)


def test_sasrec_learns_a_deterministic_sequence_and_caches_its_fit(tmp_path):
    dataset = _sequential_dataset()
    settings = {"max_len": 8, "dim": 16, "heads": 2, "blocks": 1, "dropout": 0.0, "lr": 0.01, "max_epochs": 60}
    sasrec = SasrecRetriever.fit(dataset, settings=settings, cache_dir=tmp_path, progress=False)
    assert [c.item_id for c in sasrec.retrieve(["a", "b"], k=1)] == ["c"]
    assert [c.item_id for c in sasrec.retrieve(["b", "c", "d"], k=1)] == ["e"]
    files = list(tmp_path.glob("sasrec-*.pt"))
    assert len(files) == 1
    again = SasrecRetriever.fit(dataset, settings=settings, cache_dir=tmp_path, progress=False)
    np.testing.assert_allclose(again.score(["a"], ITEM_IDS), sasrec.score(["a"], ITEM_IDS))


def test_sasrec_refuses_a_checkpoint_made_for_other_training_data(tmp_path, caplog):
    dataset = _sequential_dataset()
    settings = {"max_len": 8, "dim": 8, "heads": 1, "blocks": 1, "max_epochs": 2}
    SasrecRetriever.fit(dataset, settings=settings, cache_dir=tmp_path, progress=False)
    (path,) = tmp_path.glob("sasrec-*.pt")
    other = make_dataset({"x": ["a", "b", "c", "d"], "y": ["b", "c", "d", "e"], "z": ["a", "c", "e", "g"]})
    SasrecRetriever.fit(other, settings=settings, cache_dir=tmp_path, progress=False)
    assert len(list(tmp_path.glob("sasrec-*.pt"))) == 2  # a new key, the old file untouched
    # A file renamed to the other data's key is recognised by its stored key and refit, not loaded.
    (other_path,) = [p for p in tmp_path.glob("sasrec-*.pt") if p != path]
    other_path.write_bytes(path.read_bytes())
    with caplog.at_level("WARNING"):
        SasrecRetriever.fit(other, settings=settings, cache_dir=tmp_path, progress=False)
    assert "other training data" in caplog.text


def test_sasrec_settings_are_validated():
    with pytest.raises(ConfigError, match="divisible"):
        SasrecSettings(dim=10, heads=3)
    with pytest.raises(ConfigError, match="unknown config key 'dimm'"):
        SasrecRetriever.fit(_sequential_dataset(), settings={"dimm": 8})


def test_default_fusion_members_are_the_strong_first_stage(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("LLMREC_HOME", str(tmp_path))
    fused = build_retriever(
        "fusion",
        tiny,
        members=["sasrec", "ease"],
        member_opts={"sasrec": {"settings": {"max_len": 4, "dim": 8, "heads": 1, "blocks": 1, "max_epochs": 2}}},
    )
    assert fused.name == "fusion(sasrec+ease)"
    assert len(fused.retrieve(["a"], k=5)) == 5
    assert list((tmp_path / "retrievers").glob("sasrec-*.pt"))


def test_models_that_cannot_forget_a_user_refuse_leave_user_out_scores(tiny, tmp_path):
    als = AlsRetriever.fit(tiny, factors=2, iterations=2)
    with pytest.raises(ConfigError, match="als cannot score items as new"):
        als.score(["a"], ["b"], user_items=["a", "b"])
    settings = {"max_len": 4, "dim": 8, "heads": 1, "blocks": 1, "max_epochs": 1}
    sasrec = SasrecRetriever.fit(_sequential_dataset(), settings=settings, cache_dir=tmp_path, progress=False)
    with pytest.raises(ConfigError, match="sasrec cannot score items as new"):
        sasrec.score(["a"], ["b"], user_items=["a", "b"])
    assert len(als.score(["a"], ["b"])) == 1  # plain scores are fine
