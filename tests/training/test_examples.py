"""Example sampling: earlier positions of each user's training sequence, no held-out item ever shown, seeded."""

from __future__ import annotations

import dataclasses

import pytest

from llmrec.data import PositivePolicy, leave_one_out, time_split
from llmrec.training import (
    NegativeSampler,
    NotEnoughDataError,
    leaked_items,
    sample_training_specs,
    sample_validation_specs,
)

POLICY = PositivePolicy(4.0)


@pytest.fixture(scope="module")
def split(synth):
    return leave_one_out(synth, min_history=3, policy=POLICY)


def test_listwise_specs_come_from_earlier_training_positions(split):
    specs = sample_training_specs(split, mode="listwise", n_negatives=9, min_history=3, seed=1)
    assert specs
    train = split.train_dataset
    for spec in specs:
        seq = [x.item_id for x in train.history(spec.user_id)]
        pos = seq.index(spec.target)
        assert pos >= 3
        assert spec.history == tuple(seq[max(0, pos - 20) : pos])  # exactly what came before, most recent kept
        rated = train.history(spec.user_id)[pos]
        assert POLICY.is_positive(rated)
        assert len(spec.candidates) == 10 and spec.candidates.count(spec.target) == 1
        seen = {x.item_id for x in split.dataset.history(spec.user_id)}
        assert not (set(spec.candidates) - {spec.target}) & seen  # negatives: never anything the user touched


@pytest.mark.parametrize("mode", ["listwise", "pointwise"])
@pytest.mark.parametrize("kind", ["loo", "time"])
def test_no_validation_or_test_item_in_training(synth, mode, kind):
    sp = leave_one_out(synth, min_history=3, policy=POLICY) if kind == "loo" else time_split(synth, valid_fraction=0.2)
    specs = sample_training_specs(sp, mode=mode, n_negatives=5, min_history=2, seed=0)
    assert specs
    assert leaked_items(sp, specs) == []
    test_keys = {(x.user_id, x.item_id, x.timestamp) for x in (*sp.valid, *sp.test)}
    train = sp.train_dataset
    for spec in specs:
        target = next(x for x in train.history(spec.user_id) if x.item_id == spec.target)
        assert (target.user_id, target.item_id, target.timestamp) not in test_keys


def test_leak_check_catches_a_leak(split):
    specs = sample_training_specs(split, mode="listwise", n_negatives=5, min_history=3, seed=0)
    user = specs[0].user_id
    test_item = next(x.item_id for x in split.test if x.user_id == user)
    bad = dataclasses.replace(specs[0], candidates=(*specs[0].candidates[:-1], test_item))
    assert leaked_items(split, [bad]) == [(user, test_item)]


def test_pointwise_is_balanced(split):
    specs = sample_training_specs(split, mode="pointwise", n_negatives=1, min_history=3, seed=0)
    pos = [s for s in specs if s.label]
    neg = [s for s in specs if s.label is False]
    assert len(pos) == len(neg) > 0
    assert all(s.candidates == (s.target,) for s in pos)
    assert all(s.candidates != (s.target,) and len(s.candidates) == 1 for s in neg)


def test_seeded_and_capped(split):
    a = sample_training_specs(split, mode="listwise", n_negatives=5, min_history=3, seed=4)
    b = sample_training_specs(split, mode="listwise", n_negatives=5, min_history=3, seed=4)
    c = sample_training_specs(split, mode="listwise", n_negatives=5, min_history=3, seed=5)
    assert a == b and a != c
    capped = sample_training_specs(
        split, mode="listwise", n_negatives=5, min_history=3, positions_per_user=1, max_users=5, seed=4
    )
    assert len(capped) == 5 and len({s.user_id for s in capped}) == 5
    assert len(sample_training_specs(split, mode="listwise", n_negatives=5, min_history=3, max_examples=7)) == 7


def test_popularity_negatives_prefer_popular_items(split):
    sampler = NegativeSampler(split, "popularity")
    import random

    rng = random.Random(0)
    pop = split.train_dataset.item_popularity
    drawn = [i for _ in range(40) for i in sampler.sample("u1", (), 5, rng)]
    uniform = [i for _ in range(40) for i in NegativeSampler(split).sample("u1", (), 5, rng)]
    assert sum(pop.get(i, 0) for i in drawn) > sum(pop.get(i, 0) for i in uniform)


def test_too_small_dataset_is_a_clear_error(split):
    with pytest.raises(NotEnoughDataError, match="min_history"):
        sample_training_specs(split, mode="listwise", n_negatives=5, min_history=500)
    with pytest.raises(NotEnoughDataError, match="unseen items"):
        sample_training_specs(split, mode="listwise", n_negatives=59, min_history=3)


def test_validation_specs_use_validation_targets_only(split):
    specs = sample_validation_specs(split, users=6, n_negatives=9, seed=0)
    assert len(specs) == 6
    valid = {(x.user_id, x.item_id) for x in split.valid}
    test = {(x.user_id, x.item_id) for x in split.test}
    for spec in specs:
        assert (spec.user_id, spec.target) in valid
        assert not {(spec.user_id, c) for c in spec.candidates} & test
        assert spec.target in spec.candidates and len(spec.candidates) == 10
    assert specs == sample_validation_specs(split, users=6, n_negatives=9, seed=0)
    assert sample_validation_specs(split, users=0, n_negatives=9) == []


def test_ordered_specs_list_candidates_by_cooc_as_new_to_the_user(split):
    from llmrec.ranking.order import order_candidates
    from llmrec.retrieval import build_retriever
    from llmrec.training.examples import order_specs

    specs = sample_training_specs(split, mode="listwise", n_negatives=5, min_history=3, seed=0)
    ordered = order_specs(specs, split, "cooc")
    assert [s.target for s in ordered] == [s.target for s in specs]
    assert all(sorted(a.candidates) == sorted(b.candidates) for a, b in zip(specs, ordered))
    cooc = build_retriever("cooc", split.train_dataset)
    for spec in ordered[:10]:
        own = {x.item_id for x in split.train_dataset.history(spec.user_id)}
        assert list(spec.candidates) == order_candidates(cooc, spec.history, spec.candidates, user_items=own)
    assert order_specs(specs, split, "given") == specs


def test_first_stage_offsets_are_z_scores_of_the_candidate_scored_as_new_to_the_user(split):
    from llmrec.errors import ConfigError
    from llmrec.retrieval import build_retriever
    from llmrec.training.examples import candidate_offsets

    specs = sample_training_specs(split, mode="pointwise", n_negatives=2, min_history=3, max_examples=20, seed=2)
    offsets = candidate_offsets(specs, split, "cooc", reference=9, seed=0)
    assert len(offsets) == len(specs) and len(set(offsets)) > 1
    assert offsets == candidate_offsets(specs, split, "cooc", reference=9, seed=0)  # seeded
    # each z-score lies within a reference set of 9 + the position's 3 candidates: |z| <= sqrt(n - 1)
    assert all(abs(o) <= (12 - 1) ** 0.5 + 1e-9 for o in offsets)
    # within a position the offsets order its candidates as co-occurrence does with the user's own training
    # interactions left out (a training target scored as a test target would be)
    cooc = build_retriever("cooc", split.train_dataset)
    checked = 0
    for spec in (s for s in specs if s.label):
        group = [(o, s) for o, s in zip(offsets, specs) if (s.user_id, s.history) == (spec.user_id, spec.history)]
        own = [x.item_id for x in split.train_dataset.history(spec.user_id)]
        scores = cooc.score(list(spec.history), [s.candidates[0] for _, s in group], user_items=own)
        for (a, _), sa in zip(group, scores):
            for (b, _), sb in zip(group, scores):
                assert (sa > sb) == (a > b) or sa == sb
        checked += len(group) == 3
    assert checked
    listwise = sample_training_specs(split, mode="listwise", n_negatives=3, min_history=3, max_examples=2, seed=2)
    with pytest.raises(ConfigError, match="pointwise specs"):
        candidate_offsets(listwise, split, "cooc")
