"""The z-score fusion first stage: weights fit on the dataset's own validation users, cached, refit on other data."""

from __future__ import annotations

import json

import numpy as np
import pytest

from llmrec.errors import ConfigError
from llmrec.retrieval import build_retriever
from llmrec.retrieval import zscore as zscore_module
from llmrec.retrieval.zscore import MIN_FIT_USERS, ZScoreFusionRetriever

from .conftest import make_dataset

ITEMS = [f"i{n:02d}" for n in range(30)]


def chain_dataset(users: int = 80, seed: int = 0, drop_last_of: str | None = None):
    """Users walk along the catalogue (item n is mostly followed by item n+1), so co-occurrence predicts each
    user's last item and popularity barely does: a fit must weigh them differently."""
    rng = np.random.default_rng(seed)
    histories = {}
    for u in range(users):
        start = int(rng.integers(0, 18))
        steps = [start + k + int(rng.random() < 0.15) * int(rng.integers(1, 3)) for k in range(int(rng.integers(4, 10)))]
        histories[f"u{u:03d}"] = list(dict.fromkeys(ITEMS[min(s, 29)] for s in steps))
    if drop_last_of is not None:
        histories[drop_last_of] = histories[drop_last_of][:-1]
    return make_dataset({u: h for u, h in histories.items() if len(h) >= 2}, ITEMS)


def build(dataset, tmp_path, **opts):
    return build_retriever("zfusion", dataset, members=["cooc", "popularity"], cache_dir=tmp_path, **opts)


def test_the_weights_are_fit_on_the_last_interactions_and_the_check_is_recorded(tmp_path):
    fused = build(chain_dataset(), tmp_path)
    record = fused.fit_record
    assert record["members"] == ["cooc", "popularity"] and record["weights"][0] == 1.0
    assert record["users"] == sum(1 for u in chain_dataset().user_ids if len(chain_dataset().history(u)) >= 3)
    # cooc alone (popularity weight 0) is a grid point, so the fit is at least as good on the users it was fit on
    assert record["ndcg@10"]["fused"] >= record["ndcg@10"]["members_alone"]["cooc"] - 1e-12
    assert record["ndcg@10"]["members_alone"]["cooc"] > record["ndcg@10"]["members_alone"]["popularity"]
    cv = record["cv"]
    assert cv["folds"] == 5 and set(cv["gain_over_best_member"]) == {"mean", "se", "ci95"}
    assert "validation users" in fused.describe() and fused.name == "zfusion(cooc+popularity)"


def test_a_fit_is_cached_and_reused_but_never_for_other_data_or_members(tmp_path, monkeypatch):
    first = build(chain_dataset(), tmp_path)
    (path,) = tmp_path.glob("zfusion-*.json")
    assert json.loads(path.read_text())["weights"] == list(first.fit_record["weights"])

    def no_refit(*args, **kwargs):
        raise AssertionError("refit")

    monkeypatch.setattr(zscore_module, "fit_weights", no_refit)
    assert build(chain_dataset(), tmp_path).weights == first.weights  # same data and members: loaded
    with pytest.raises(AssertionError, match="refit"):
        build(chain_dataset(drop_last_of="u000"), tmp_path)  # other data
    with pytest.raises(AssertionError, match="refit"):
        build_retriever("zfusion", chain_dataset(), members=["popularity", "cooc"], cache_dir=tmp_path)
    with pytest.raises(AssertionError, match="refit"):
        build(chain_dataset(), tmp_path, negatives=10)  # other fit settings


def test_a_damaged_cache_file_is_refit_not_trusted(tmp_path):
    first = build(chain_dataset(), tmp_path)
    (path,) = tmp_path.glob("zfusion-*.json")
    path.write_text("{not json")
    again = build(chain_dataset(), tmp_path)
    assert again.weights == first.weights and json.loads(path.read_text())["weights"] == list(first.weights)


def test_too_few_validation_users_get_equal_weights_and_say_so(tmp_path, tiny):
    fused = build(tiny, tmp_path)
    assert fused.weights == (1.0, 1.0)
    assert f"fewer than {MIN_FIT_USERS}" in fused.fit_record["equal_weights"]
    assert "equal weights" in fused.describe()


def test_a_member_whose_validation_scores_would_leak_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="'als'.*leak"):
        build_retriever("zfusion", chain_dataset(), members=["cooc", "als"], cache_dir=tmp_path)
    with pytest.raises(ConfigError, match="not a retriever it can fuse"):
        build_retriever("zfusion", chain_dataset(), members=["cooc", "fusion"], cache_dir=tmp_path)
    with pytest.raises(ConfigError, match="weight of 'popularity'"):
        build(chain_dataset(), tmp_path, weights=[1.0, -1.0])
    with pytest.raises(ConfigError, match="unknown option"):
        build(chain_dataset(), tmp_path, negativs=5)


def test_scores_are_weighted_z_scores_over_the_items_that_could_be_shown(tmp_path):
    dataset = chain_dataset()
    fused = build(dataset, tmp_path, weights=[1.0, 0.5])
    assert fused.fit_record["given"] is True
    history = ["i03", "i04", "i05"]
    positions = np.asarray([ITEMS.index(i) for i in history])
    expected = np.zeros(len(ITEMS))
    for member, weight in zip(fused.members, (1.0, 0.5), strict=True):
        row = np.asarray(member._batch_scores([positions])[0], dtype=np.float64)
        shown = np.ones(len(ITEMS), dtype=bool)
        shown[positions] = False
        expected += weight * (row - row[shown].mean()) / row[shown].std()
    asked = ["i06", "i20", "i00"]
    np.testing.assert_allclose(fused.score(history, asked), expected[[ITEMS.index(i) for i in asked]], rtol=1e-12)
    # an item's score does not depend on which other items are asked about
    assert fused.score(history, ["i20"])[0] == pytest.approx(fused.score(history, asked)[1], rel=1e-12)
    found = fused.retrieve(history, k=5)
    assert not {c.item_id for c in found} & set(history)
    assert [c.score for c in found] == sorted((c.score for c in found), reverse=True)
    assert found[0].item_id == ITEMS[int(np.argmax(np.where(np.isin(np.arange(30), positions), -np.inf, expected)))]


def test_an_empty_history_falls_back_to_popularity(tmp_path):
    fused = build(chain_dataset(), tmp_path)
    found = fused.retrieve([], k=3)
    assert {c.source for c in found} == {"popularity-fallback"}


def test_the_class_refuses_members_over_other_catalogues(tmp_path):
    a = build_retriever("cooc", chain_dataset())
    b = build_retriever("popularity", make_dataset())
    with pytest.raises(ConfigError, match="another catalogue"):
        ZScoreFusionRetriever.fit(
            chain_dataset(), {"cooc": a, "popularity": b}, out_of_sample={}, versions={}, weights=[1, 1],
            cache_dir=tmp_path,
        )
