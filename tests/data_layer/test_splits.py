from __future__ import annotations

from pathlib import Path

import pytest

from llmrec.data import (
    PositivePolicy,
    SplitLeakError,
    SplitSettings,
    check_training_split,
    leave_one_out,
    load_atomic,
    load_dataset,
    time_split,
)
from llmrec.data.splits import held_out_in_training
from llmrec.errors import ConfigError
from llmrec.types import Interaction


def test_leave_one_out_takes_last_two_per_user(tiny_dir: Path) -> None:
    split = leave_one_out(load_atomic(tiny_dir))
    assert {(x.user_id, x.item_id) for x in split.test} == {("u1", "i4"), ("u2", "i5")}
    assert {(x.user_id, x.item_id) for x in split.valid} == {("u1", "i3"), ("u2", "i1")}
    # u3 has a single interaction: it stays in train and gets no targets
    assert ("u3", "i5") in {(x.user_id, x.item_id) for x in split.train}
    assert len(split.train) + len(split.valid) + len(split.test) == 9


def test_leave_one_out_with_a_positive_policy_skips_disliked_targets(tiny_dir: Path) -> None:
    split = leave_one_out(load_atomic(tiny_dir), policy=PositivePolicy(4.0))
    # u2's history: i3(4) i2(4) i1(2) i5(5): test = i5, valid = i2 (i1 is disliked), train = i3 only
    assert ("u2", "i5") in {(x.user_id, x.item_id) for x in split.test}
    assert ("u2", "i2") in {(x.user_id, x.item_id) for x in split.valid}
    assert [x.item_id for x in split.train if x.user_id == "u2"] == ["i3"]


def test_history_before_excludes_the_target_and_later(tiny_dir: Path) -> None:
    split = leave_one_out(load_atomic(tiny_dir))
    target = next(x for x in split.test if x.user_id == "u1")
    assert [x.item_id for x in split.history_before(target)] == ["i1", "i2", "i3"]


def test_time_split_orders_parts_globally(tiny_dir: Path) -> None:
    split = time_split(load_atomic(tiny_dir), valid_fraction=0.2, test_fraction=0.2)
    assert max(x.timestamp for x in split.train) < min(x.timestamp for x in split.valid)
    assert max(x.timestamp for x in split.valid) < min(x.timestamp for x in split.test)
    assert len(split.train) + len(split.valid) + len(split.test) == 9


def test_time_split_rejects_bad_fractions(tiny_dir: Path) -> None:
    with pytest.raises(ConfigError, match="test_fraction"):
        time_split(load_atomic(tiny_dir), test_fraction=1.5)
    with pytest.raises(ConfigError, match="< 1"):
        time_split(load_atomic(tiny_dir), valid_fraction=0.5, test_fraction=0.5)


def test_positive_policy() -> None:
    x = Interaction("u", "i", 0.0, rating=3.5)
    assert not PositivePolicy(4.0).is_positive(x)
    assert PositivePolicy(None).is_positive(x)
    assert PositivePolicy(4.0).is_positive(Interaction("u", "i", 0.0))
    with pytest.raises(ConfigError, match="min_rating"):
        PositivePolicy("high")  # type: ignore[arg-type]


@pytest.mark.slow
def test_ml100k_leave_one_out_never_leaks_test_into_train() -> None:
    ds = load_dataset("ml-100k")
    split = leave_one_out(ds)
    assert len(split.test) == len(split.valid) == 943
    train_by_user: dict[str, list[Interaction]] = {}
    for x in split.train:
        train_by_user.setdefault(x.user_id, []).append(x)
    for target, valid in zip(sorted(split.test, key=lambda x: x.user_id), sorted(split.valid, key=lambda x: x.user_id)):
        train = train_by_user[target.user_id]
        assert target not in train and valid not in train
        assert all(x.timestamp <= valid.timestamp <= target.timestamp for x in train)


def test_split_settings_record_how_a_split_was_made(tiny_dir: Path) -> None:
    ds = load_atomic(tiny_dir)
    split = leave_one_out(ds, min_history=1, policy=PositivePolicy(4.0))
    assert split.settings == SplitSettings(
        "leave_one_out", 4.0, 1, dataset=ds.name, dataset_fingerprint=ds.content_fingerprint()
    )
    assert split.train_dataset.source_split is split  # a reranker given the train part can find the split
    assert SplitSettings.from_dict(split.settings.to_dict()) == split.settings
    assert split.settings.apply(ds).train == split.train
    assert "min_history 1" in split.settings.describe() and "positive rating >= 4" in split.settings.describe()
    with pytest.raises(ConfigError, match="min_history"):
        SplitSettings(min_history=-1)
    with pytest.raises(ConfigError, match="unknown split setting"):
        SplitSettings.from_dict({"kind": "leave_one_out", "min_histroy": 2})


def test_training_split_holding_evaluation_targets_is_refused(tiny_dir: Path) -> None:
    ds = load_atomic(tiny_dir)
    evaluated = leave_one_out(ds, min_history=1)
    fp = ds.content_fingerprint()
    # u1 (i1 i2 i3 i4) has its validation target at position 2: a training split asking for 3 items of history
    # keeps all of u1 in train, so its held-out i3 and i4 could be training examples.
    trained = SplitSettings(positive_min_rating=None, min_history=3, dataset=ds.name, dataset_fingerprint=fp)
    assert {(x.user_id, x.item_id) for x in held_out_in_training(trained, evaluated)} >= {("u1", "i3"), ("u1", "i4")}
    with pytest.raises(SplitLeakError) as err:
        check_training_split(trained, evaluated, model="adapter 'a'")
    message = str(err.value)
    assert "adapter 'a'" in message and "min_history 3" in message and "min_history 1" in message
    assert "user u1: i3, i4" in message
    # only the users a model is evaluated on count: leaked items of users it is not tested on leak nothing
    others = sorted({x.user_id for x in held_out_in_training(trained, evaluated)} - {"u1"})
    assert others and {x.user_id for x in held_out_in_training(trained, evaluated, others)} == set(others)
    with pytest.raises(SplitLeakError, match=f"user {others[0]}"):
        check_training_split(trained, evaluated, users=others)  # u1 not evaluated: another user is named
    assert check_training_split(trained, evaluated, users=[]) is None
    # the same settings, or a training split that holds out at least as much, cannot leak
    for ok in (
        SplitSettings(positive_min_rating=None, min_history=1, dataset=ds.name, dataset_fingerprint=fp),
        SplitSettings(positive_min_rating=None, min_history=0, dataset=ds.name, dataset_fingerprint=fp),
    ):
        assert check_training_split(ok, evaluated) is None
    # another positive rating is checked item by item: training on every rating holds out u2's i1 and i5, but an
    # evaluation on liked items holds out i2 and i5, and i2 is then a training item; the other way round holds
    # out more than the evaluation needs and passes
    liked = leave_one_out(ds, min_history=1, policy=PositivePolicy(4.0))
    with pytest.raises(SplitLeakError, match=r"any rating.*positive rating >= 4.*user u2: i2"):
        check_training_split(
            SplitSettings(positive_min_rating=None, min_history=1, dataset=ds.name, dataset_fingerprint=fp), liked
        )
    assert check_training_split(
        SplitSettings(positive_min_rating=4.0, min_history=1, dataset=ds.name, dataset_fingerprint=fp), evaluated
    ) is None
    # another dataset cannot leak; another version of this one cannot be checked (a warning, not a refusal)
    assert check_training_split(SplitSettings(min_history=9, dataset="other", dataset_fingerprint="x"), evaluated) is None
    warning = check_training_split(SplitSettings(min_history=9, dataset=ds.name, dataset_fingerprint="x"), evaluated)
    assert warning is not None and "another version" in warning
