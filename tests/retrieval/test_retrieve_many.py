"""`retrieve_many`: every retriever gives many users at once what it gives each one alone."""

from __future__ import annotations

import pytest
from numerics import batching_tolerance

from llmrec.errors import ConfigError, UnknownIdError
from llmrec.retrieval import FALLBACK_SOURCE, build_retriever, retrieve_many

from .conftest import HISTORIES, assert_same_top_k

SASREC = {"settings": {"max_len": 4, "dim": 8, "heads": 1, "blocks": 1, "max_epochs": 3}}
CASES = [*HISTORIES.values(), [], ["h"], ["a", "a", "c"]]  # an empty history falls back; a repeat counts once


def _ids(lists):
    return [[c.item_id for c in found] for found in lists]


def _assert_same_lists(together, alone):
    """Each user's list as it came alone, up to the last bits of scores computed in another batching (EASE's
    batched product, SASRec's batched forward): see `assert_same_top_k`."""
    for a, b in zip(alone, together, strict=True):
        ref_scores = [c.score for c in a]
        tol = batching_tolerance(ref_scores)
        assert_same_top_k([c.item_id for c in b], [c.score for c in b], [c.item_id for c in a], ref_scores, tol=tol)
        assert [c.source for c in a] == [c.source for c in b]


@pytest.mark.parametrize("name", ["popularity", "cooc", "ease", "als", "sasrec", "fusion"])
def test_many_users_get_what_each_gets_alone(tiny, tmp_path, monkeypatch, name):
    monkeypatch.setenv("LLMREC_HOME", str(tmp_path))
    opts = {"sasrec": SASREC, "fusion": {"members": ["sasrec", "ease", "cooc"], "member_opts": {"sasrec": SASREC}}}
    retriever = build_retriever(name, tiny, progress=False, **opts.get(name, {}))
    excludes = [("d",) if n % 2 else () for n in range(len(CASES))]
    alone = [retriever.retrieve(h, 4, e) for h, e in zip(CASES, excludes, strict=True)]
    if name == "fusion":  # no batch size of its own: each member batches all users its way
        _assert_fused_as_alone(retriever, excludes, alone)
    else:
        for batch_size in (1, 3, 256):
            _assert_same_lists(retriever.retrieve_many(CASES, 4, excludes, batch_size=batch_size), alone)
    if name != "popularity":  # the others fall back to popularity on an empty history
        assert {c.source for c in alone[len(HISTORIES)]} == {FALLBACK_SOURCE}


def _assert_fused_as_alone(fused, excludes, alone):
    """Fusion adds up the members' ranks, so one member's near-tie that another batching breaks the other way
    moves fused scores by a rank's worth, not by float noise. What fusion itself guarantees is checked: a user whose
    every member list came out the same together as alone gets the same fused list, exactly (the members' own
    batching is each member's case above)."""
    together = fused.retrieve_many(CASES, 4, excludes)
    depth = len(fused.item_ids)
    members_together = [m.ranked_many(CASES, depth, excludes) for m in fused.retrievers]
    same_members = 0
    for n, (history, exclude) in enumerate(zip(CASES, excludes, strict=True)):
        members_alone = [m.ranked_many([history], depth, [exclude])[0] for m in fused.retrievers]
        if all(
            list(a.positions) == list(lists[n].positions)
            for a, lists in zip(members_alone, members_together, strict=True)
        ):
            same_members += 1
            assert [(c.item_id, c.score, c.source) for c in together[n]] == [
                (c.item_id, c.score, c.source) for c in alone[n]
            ]
    # At least the empty history is compared (every member falls back to popularity, which batches nothing); a
    # near-tie is rare, so on most CPUs every user is.
    assert same_members >= 1


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
