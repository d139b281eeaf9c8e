"""Retrieval for a user of a dataset: the history comes from the dataset's interactions."""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING

from llmrec.errors import UnknownIdError
from llmrec.retrieval.base import FALLBACK_SOURCE, Retriever
from llmrec.types import Candidate

if TYPE_CHECKING:
    from llmrec.data.dataset import Dataset


@dataclass(frozen=True)
class UserRetrieval:
    """Candidates for one user, with whether the popularity fallback was used and how long it took."""

    user_id: str
    candidates: list[Candidate]
    history_length: int
    fallback: bool
    seconds: float


def user_history(dataset: Dataset, user_id: str) -> list[str]:
    """The user's item ids, oldest first. A known user without interactions has an empty history.

    Raises:
        UnknownIdError: the user is neither in the interactions nor in the user table.
    """
    user_id = str(user_id)
    try:
        return [x.item_id for x in dataset.history(user_id)]
    except UnknownIdError:
        if user_id in dataset.users:
            return []
        raise


def retrieve_for_user(
    retriever: Retriever, dataset: Dataset, user_id: str, k: int, exclude: Collection[str] = ()
) -> UserRetrieval:
    """Retrieve `k` candidates for `user_id` from the user's history in `dataset`.

    Example:
        >>> result = retrieve_for_user(build_retriever("cooc", ds), ds, "196", k=20)  # doctest: +SKIP
        >>> result.fallback, [c.item_id for c in result.candidates][:3]  # doctest: +SKIP
    """
    history = user_history(dataset, user_id)
    started = time.perf_counter()
    candidates = retriever.retrieve(history, k, exclude)
    seconds = time.perf_counter() - started
    fallback = bool(candidates) and all(c.source == FALLBACK_SOURCE for c in candidates)
    return UserRetrieval(str(user_id), candidates, len(history), fallback, seconds)
