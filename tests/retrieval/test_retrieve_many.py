"""`retrieve_many`: every retriever gives many users at once what it gives each one alone."""

from __future__ import annotations

import numpy as np
import pytest

from llmrec.errors import ConfigError, UnknownIdError
from llmrec.retrieval import FALLBACK_SOURCE, build_retriever, retrieve_many

from .conftest import HISTORIES

SASREC = {"settings": {"max_len": 4, "dim": 8, "heads": 1, "blocks": 1, "max_epochs": 3}}
CASES = [*HISTORIES.values(), [], ["h"], ["a", "a", "c"]]  # an empty history falls back; a repeat counts once


def _ids(lists):
    return [[c.item_id for c in found] for found in lists]


@pytest.mark.parametrize("name", ["popularity", "cooc", "ease", "als", "sasrec", "fusion"])
def test_many_users_get_what_each_gets_alone(tiny, tmp_path, monkeypatch, name):
    monkeypatch.setenv("LLMREC_HOME", str(tmp_path))
    opts = {"sasrec": SASREC, "fusion": {"members": ["sasrec", "ease", "cooc"], "member_opts": {"sasrec": SASREC}}}
    retriever = build_retriever(name, tiny, progress=False, **opts.get(name, {}))
    excludes = [("d",) if n % 2 else () for n in range(len(CASES))]
    alone = [retriever.retrieve(h, 4, e) for h, e in zip(CASES, excludes, strict=True)]
    for batch_size in (1, 3, 256):
        kwargs = {} if name == "fusion" else {"batch_size": batch_size}
        together = retriever.retrieve_many(CASES, 4, excludes, **kwargs)
        assert _ids(together) == _ids(alone)
        # float scores agree too (SASRec's batched forward may round differently in the last bits, also near 0)
        for a, b in zip(alone, together, strict=True):
            np.testing.assert_allclose([c.score for c in a], [c.score for c in b], rtol=1e-5, atol=1e-7)
            assert [c.source for c in a] == [c.source for c in b]
    if name != "popularity":  # the others fall back to popularity on an empty history
        assert {c.source for c in alone[len(HISTORIES)]} == {FALLBACK_SOURCE}


def test_a_retriever_without_retrieve_many_is_asked_one_user_at_a_time(tiny):
    class OnlyTheProtocol:
        name = "plain"

        def __init__(self):
            self.inner = build_retriever("popularity", tiny)
            self.calls = 0

        def retrieve(self, history, k, exclude=()):
            self.calls += 1
            return self.inner.retrieve(history, k, exclude)

        def score(self, history, item_ids):
            return self.inner.score(history, item_ids)

    plain = OnlyTheProtocol()
    assert _ids(retrieve_many(plain, CASES, 3)) == _ids(plain.inner.retrieve_many(CASES, 3))
    assert plain.calls == len(CASES)


def test_bad_batches_are_named(tiny):
    ease = build_retriever("ease", tiny)
    with pytest.raises(ConfigError, match="2 exclusion lists for 3 histories"):
        ease.retrieve_many([["a"], ["b"], ["c"]], 2, [(), ()])
    with pytest.raises(UnknownIdError, match="'zz'"):
        ease.retrieve_many([["a"], ["zz"]], 2)
    with pytest.raises(ConfigError, match="k must be"):
        ease.retrieve_many([["a"]], 0)
