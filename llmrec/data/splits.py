"""Chronological splits: per-user leave-one-out and a global time split."""

from __future__ import annotations

from dataclasses import dataclass

from llmrec.data.dataset import Dataset, PositivePolicy
from llmrec.errors import ConfigError, LlmrecError
from llmrec.types import Interaction


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

    @property
    def train_dataset(self) -> Dataset:
        return self.dataset.with_interactions(self.train)

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
    return Split("leave_one_out", dataset, tuple(train), tuple(valid), tuple(test))


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
