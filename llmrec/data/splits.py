"""Chronological splits: per-user leave-one-out and a global time split; the settings that make one, and the
check that a model trained on one split is not evaluated on items that split trained on."""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from llmrec.data.dataset import Dataset, PositivePolicy
from llmrec.errors import ConfigError, LlmrecError
from llmrec.types import Interaction

#: Bump when a split puts other interactions in train, validation or test: evaluation caches key on it.
SPLIT_VERSION = 1
SPLIT_KINDS = ("leave_one_out", "time")


class SplitLeakError(LlmrecError):
    """A model's training split holds items an evaluation holds out (its scores would be inflated)."""


@dataclass(frozen=True)
class SplitSettings:
    """How a split was made: what an adapter card records about its training split, and what the leak check
    compares with the evaluation's split.

    Args:
        kind: ``leave_one_out`` or ``time``.
        positive_min_rating: leave-one-out targets need this rating (None: every interaction is positive).
        min_history: leave-one-out: a user needs this many train interactions before the validation target.
        dataset: the dataset's name.
        dataset_fingerprint: `Dataset.content_fingerprint` of the split's dataset (None: not recorded).
    """

    kind: str = "leave_one_out"
    positive_min_rating: float | None = 4.0
    min_history: int = 1
    dataset: str | None = None
    dataset_fingerprint: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in SPLIT_KINDS:
            raise ConfigError(f"SplitSettings.kind must be one of {SPLIT_KINDS}, got {self.kind!r}")
        rating = self.positive_min_rating
        if rating is not None and (isinstance(rating, bool) or not isinstance(rating, (int, float))):
            raise ConfigError(f"SplitSettings.positive_min_rating must be a number or None, got {rating!r}")
        if isinstance(self.min_history, bool) or not isinstance(self.min_history, int) or self.min_history < 0:
            raise ConfigError(f"SplitSettings.min_history must be an integer >= 0, got {self.min_history!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "positive_min_rating": self.positive_min_rating,
            "min_history": self.min_history,
            "dataset": self.dataset,
            "dataset_fingerprint": self.dataset_fingerprint,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SplitSettings:
        """Build from a mapping; unknown keys raise `ConfigError` naming them."""
        unknown = sorted(set(data) - set(cls().to_dict()))
        if unknown:
            raise ConfigError(f"unknown split setting(s) {', '.join(map(repr, unknown))}")
        return cls(**dict(data))

    def apply(self, dataset: Dataset) -> Split:
        """The split these settings describe, made on `dataset` (time splits use the default fractions)."""
        if self.kind == "leave_one_out":
            return leave_one_out(
                dataset, min_history=self.min_history, policy=PositivePolicy(self.positive_min_rating)
            )
        return time_split(dataset)

    def describe(self) -> str:
        """E.g. ``leave_one_out split of 'ml-100k' (positive rating >= 4.0, min_history 6)``."""
        of = f" of {self.dataset!r}" if self.dataset else ""
        if self.kind != "leave_one_out":
            return f"{self.kind} split{of}"
        rating = "any rating" if self.positive_min_rating is None else f"positive rating >= {self.positive_min_rating:g}"
        return f"{self.kind} split{of} ({rating}, min_history {self.min_history})"


@dataclass(frozen=True)
class Split:
    """Train / validation / test interactions of one dataset.

    For leave-one-out, `valid` and `test` hold at most one interaction per user (their second-last and last);
    `train` holds everything strictly before them. `dataset.with_interactions(split.train)` is what retrievers and
    training may see.
    """

    kind: str
    dataset: Dataset
    train: tuple[Interaction, ...]
    valid: tuple[Interaction, ...]
    test: tuple[Interaction, ...]
    positive_min_rating: float | None = field(default=None, compare=False)
    min_history: int = field(default=0, compare=False)

    @property
    def train_dataset(self) -> Dataset:
        """The dataset with the train interactions only; it remembers this split (`Dataset.source_split`), so a
        reranker given it can check its adapter was not trained on this split's held-out items."""
        train = self.dataset.with_interactions(self.train)
        train.source_split = self
        return train

    @cached_property
    def settings(self) -> SplitSettings:
        """How this split was made, with its dataset's name and content fingerprint."""
        return SplitSettings(
            kind=self.kind,
            positive_min_rating=self.positive_min_rating,
            min_history=self.min_history,
            dataset=self.dataset.name,
            dataset_fingerprint=self.dataset.content_fingerprint(),
        )

    def history_before(self, target: Interaction) -> tuple[Interaction, ...]:
        """The target user's interactions strictly before `target` (chronological, target excluded)."""
        history = self.dataset.history(target.user_id)
        cut = next(n for n, x in enumerate(history) if x is target or x == target)
        return history[:cut]


def leave_one_out(dataset: Dataset, *, min_history: int = 1, policy: PositivePolicy | None = None) -> Split:
    """Per user: last interaction = test, second last = validation, the rest = train.

    Args:
        dataset: the dataset to split.
        min_history: a user needs at least this many train interactions (plus validation and test) to get
            validation/test targets; users with fewer keep all their interactions in train.
        policy: if given, only interactions it counts as positive may become validation/test targets; the
            targets are then the user's last two positive interactions, and everything after the validation
            target except the test target stays out of train (no leak of the future into training).
    """
    if min_history < 0:
        raise ConfigError(f"min_history must be >= 0, got {min_history}")
    train: list[Interaction] = []
    valid: list[Interaction] = []
    test: list[Interaction] = []
    for user in dataset.user_ids:
        history = dataset.history(user)
        positions = [n for n, x in enumerate(history) if policy is None or policy.is_positive(x)]
        if len(positions) < 2 or positions[-2] < min_history:
            train.extend(history)
            continue
        v, t = positions[-2], positions[-1]
        train.extend(history[:v])
        valid.append(history[v])
        test.append(history[t])
    rating = policy.min_rating if policy is not None else None
    return Split("leave_one_out", dataset, tuple(train), tuple(valid), tuple(test), rating, min_history)


def time_split(dataset: Dataset, *, valid_fraction: float = 0.1, test_fraction: float = 0.1) -> Split:
    """Global time split: the oldest interactions train, the newest `test_fraction` test, validation between.

    Cut points are timestamps (quantiles over all interactions), so every train interaction is older than every
    validation one, which is older than every test one (ties go to the later part).
    """
    for name, value in (("valid_fraction", valid_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= value < 1.0:
            raise ConfigError(f"{name} must be in [0, 1), got {value}")
    if valid_fraction + test_fraction >= 1.0:
        raise ConfigError("valid_fraction + test_fraction must be < 1")
    stamps = sorted(x.timestamp for x in dataset.interactions)
    if not stamps:
        raise LlmrecError(f"dataset {dataset.name!r} has no interactions to split")
    n = len(stamps)
    t_valid = stamps[min(n - 1, int(n * (1.0 - valid_fraction - test_fraction)))]
    t_test = stamps[min(n - 1, int(n * (1.0 - test_fraction)))]
    train = tuple(x for x in dataset.interactions if x.timestamp < t_valid)
    valid = tuple(x for x in dataset.interactions if t_valid <= x.timestamp < t_test)
    test = tuple(x for x in dataset.interactions if x.timestamp >= t_test)
    return Split("time", dataset, train, valid, test)


def held_out_in_training(
    trained: SplitSettings, evaluated: Split, users: Collection[str] | None = None
) -> list[Interaction]:
    """The validation and test interactions of `evaluated` (of `users` only, when given) that the split `trained`
    (remade on the same dataset) keeps in its train part, where training examples (targets or history) could be
    drawn from."""
    train = set(trained.apply(evaluated.dataset).train)
    wanted = None if users is None else set(users)
    return [
        x for x in (*evaluated.valid, *evaluated.test) if x in train and (wanted is None or x.user_id in wanted)
    ]


def check_training_split(
    trained: SplitSettings, evaluated: Split, *, model: str = "the model", users: Collection[str] | None = None
) -> str | None:
    """Refuse a model trained on a split that holds `evaluated`'s held-out items.

    The check is exact: when `trained` names the same dataset content (fingerprint, or name when no fingerprint
    was recorded; neither: assumed the same), the training split is remade on `evaluated.dataset` and compared item by item. Settings that
    cannot leak (same kind and positive rating, training ``min_history`` no larger than the evaluation's) skip
    the remake. With `users`, only those users' held-out items count: a model that trained on the held-out items
    of users it is not evaluated on has seen nothing it is tested on.

    Returns:
        None when no leak is possible, or a warning when it cannot be checked (the model was trained on another
        version of the dataset).

    Raises:
        SplitLeakError: naming both split settings and an example user with its leaked items.
    """
    here = evaluated.settings
    if trained.dataset_fingerprint is not None and trained.dataset_fingerprint != here.dataset_fingerprint:
        if trained.dataset is not None and trained.dataset == here.dataset:
            return (
                f"{model} was trained on another version of dataset {trained.dataset!r} (content fingerprint "
                f"{trained.dataset_fingerprint}, this one {here.dataset_fingerprint}): cannot check that its "
                "training split holds none of this evaluation's held-out items"
            )
        return None  # another dataset: nothing it trained on is held out here
    if trained.dataset_fingerprint is None and trained.dataset is not None and trained.dataset != here.dataset:
        return None  # no fingerprint: the names tell (no name either: check as if it were this dataset)
    same_targets = (
        trained.kind == here.kind == "leave_one_out"
        and _same_rating(trained.positive_min_rating, here.positive_min_rating)
        and trained.min_history <= here.min_history
    )
    if same_targets:
        return None
    leaked = held_out_in_training(trained, evaluated, users)
    if not leaked:
        return None
    by_user: dict[str, list[str]] = {}
    for x in leaked:
        by_user.setdefault(x.user_id, []).append(x.item_id)
    user, items = next(iter(sorted(by_user.items())))
    raise SplitLeakError(
        f"{model} was trained on a {trained.describe()}, but this evaluation uses a {here.describe()}: "
        f"{len(leaked)} held-out item(s) of {len(by_user)} user(s) are in the training split (e.g. user {user}: "
        f"{', '.join(items)}). Evaluate with the training split's settings (e.g. min_history >= "
        f"{trained.min_history}) or use an adapter trained with this evaluation's settings"
    )


def _same_rating(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(float(a), float(b))
