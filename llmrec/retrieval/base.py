"""The `Retriever` protocol every candidate generator follows, and the shared top-K machinery.

A retriever turns a user's history (item ids, oldest first) into the K items most worth showing to the LLM.
Items in the history are excluded by default, as are caller-given ids; the result is best first.

Example:
    >>> retriever = PopularityRetriever.fit(dataset)  # doctest: +SKIP
    >>> retriever.retrieve(["50", "172"], k=3)  # doctest: +SKIP
    [Candidate(item_id='100', score=508.0, source='popularity'), ...]
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from typing import NamedTuple, Protocol, runtime_checkable

import numpy as np

from llmrec.errors import ConfigError, UnknownIdError
from llmrec.types import Candidate

log = logging.getLogger(__name__)

#: `Candidate.source` of candidates that came from the popularity fallback of a history-based retriever
#: (the user's history was empty, so the retriever had nothing to go on).
FALLBACK_SOURCE = "popularity-fallback"


class Ranked(NamedTuple):
    """A retriever's list as catalogue positions (best first), their scores and the list's source name."""

    positions: np.ndarray
    scores: np.ndarray
    source: str


_EMPTY = Ranked(np.empty(0, dtype=np.int64), np.empty(0), "")


@runtime_checkable
class Retriever(Protocol):
    """What the ranking, training and evaluation layers need from a candidate generator."""

    name: str

    def retrieve(self, history: Sequence[str], k: int, exclude: Collection[str] = ()) -> list[Candidate]:
        """The `k` best items for a user with this history (item ids, oldest first), best first.

        Items in `history` and in `exclude` are never returned. Fewer than `k` candidates come back only when
        the catalogue minus the excluded items holds fewer than `k` items.
        """
        ...

    def score(self, history: Sequence[str], item_ids: Sequence[str]) -> list[float]:
        """This retriever's score of each given item for a user with this history (higher is better)."""
        ...


def check_k(k: object, catalogue_size: int) -> int:
    """Validate a requested number of candidates against the catalogue size.

    Raises:
        ConfigError: `k` is not an int, is <= 0 or larger than the catalogue.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ConfigError(f"k must be an integer, got {k!r}")
    if k <= 0:
        raise ConfigError(f"k must be > 0, got {k}")
    if k > catalogue_size:
        raise ConfigError(f"k={k} is larger than the catalogue ({catalogue_size} items)")
    return int(k)


class CatalogueRetriever:
    """Shared machinery for retrievers that can score the whole catalogue at once.

    Subclasses set ``name`` and implement `_scores(history_idx)` returning one float per catalogue item
    (``-inf`` for items that can never be proposed). A retriever that learns from the history passes its
    `fallback` (popularity) here, and this class does the rest: an empty history is retrieved and scored by the
    fallback (candidates say ``FALLBACK_SOURCE``), and equal scores are ordered by the fallback's.
    """

    name: str = "catalogue"

    def __init__(
        self, item_ids: Sequence[str], dataset_name: str = "?", *, fallback: CatalogueRetriever | None = None
    ) -> None:
        if len(item_ids) == 0:
            raise ConfigError(f"dataset {dataset_name!r} has no items to retrieve from")
        self.item_ids: list[str] = [str(i) for i in item_ids]
        self.dataset_name = dataset_name
        self._index: dict[str, int] = {item: n for n, item in enumerate(self.item_ids)}
        if fallback is not None and fallback.item_ids != self.item_ids:
            raise ConfigError(
                f"the {fallback.name} fallback must cover the same catalogue as the {self.name} retriever"
            )
        # Retriever used instead of this one when a history is empty (results then say FALLBACK_SOURCE).
        self.fallback = fallback

    def __len__(self) -> int:
        return len(self.item_ids)

    # --- id <-> position ------------------------------------------------------------------------------------

    def _positions(self, item_ids: Sequence[str], what: str = "history") -> np.ndarray:
        """Catalogue positions of `item_ids`; raises `UnknownIdError` naming the unknown ones."""
        positions = [self._index.get(str(i), -1) for i in item_ids]
        unknown = [i for i, p in zip(item_ids, positions, strict=True) if p < 0]
        if unknown:
            shown = ", ".join(repr(i) for i in unknown[:5])
            more = f" (and {len(unknown) - 5} more)" if len(unknown) > 5 else ""
            raise UnknownIdError(
                f"{len(unknown)} {what} item id(s) not in the catalogue of {self.dataset_name!r}: {shown}{more}"
            )
        return np.asarray(positions, dtype=np.int64)

    def _excluded_positions(self, history_idx: np.ndarray, exclude: Collection[str]) -> np.ndarray:
        # Caller-given exclusions outside the catalogue cannot be proposed anyway, so they are simply ignored.
        extra = [self._index[str(i)] for i in exclude if str(i) in self._index]
        return np.unique(np.concatenate([history_idx, np.asarray(extra, dtype=np.int64)]))

    # --- to implement ---------------------------------------------------------------------------------------

    def _scores(self, history_idx: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _tiebreak(self) -> np.ndarray | None:
        """A secondary key (higher first) for equal scores: the fallback's scores for an empty history (its
        popularity); None (no fallback) means catalogue order."""
        if self.fallback is None:
            return None
        return self.fallback._scores(np.empty(0, dtype=np.int64))

    def _scores_of(self, history_idx: np.ndarray, wanted: np.ndarray) -> np.ndarray:
        """Scores of the catalogue positions `wanted` for a (non-empty, unless no fallback) history."""
        return np.asarray(self._scores(history_idx), dtype=np.float64)[wanted]

    def _scores_as_new(self, history_idx: np.ndarray, wanted: np.ndarray, own: np.ndarray) -> np.ndarray:
        """Scores of `wanted` with the user's interactions with them (`own`: the user's items) left out of the
        fitted statistics. Retrievers that learn nothing from interactions need no override."""
        return self._scores_of(history_idx, wanted)

    def _ranked_batch(self, histories: Sequence[np.ndarray], k: int, excluded: Sequence[np.ndarray]) -> list[Ranked]:
        """The best `k` for each (non-empty, unless no fallback) history, `excluded[n]` left out: the catalogue
        scored at once (`_batch_scores`) and ranked. A retriever that searches instead of scoring overrides this."""
        scores = np.asarray(self._batch_scores(histories), dtype=np.float64)
        return [self._rank(row.copy(), k, out, self.name) for row, out in zip(scores, excluded, strict=True)]

    # --- protocol -------------------------------------------------------------------------------------------

    def retrieve(self, history: Sequence[str], k: int, exclude: Collection[str] = ()) -> list[Candidate]:
        """The `k` best catalogue items for this history, best first; history and `exclude` are left out.

        Raises:
            ConfigError: bad `k`.
            UnknownIdError: a history item is not in the catalogue.
        """
        return self.retrieve_many([history], k, [exclude])[0]

    def score(
        self, history: Sequence[str], item_ids: Sequence[str], *, user_items: Collection[str] = ()
    ) -> list[float]:
        """Scores of the given items for this history (history items are scored as any other).

        Args:
            history: the user's items, oldest first.
            item_ids: the items to score.
            user_items: all items of the user in the data this retriever was fitted on. The user's own
                interactions with the scored items are then left out of the statistics, so each item is scored
                as if it were new to the user: what a training example needs, whose target is in the fitted
                data. Candidates the user never interacted with score the same either way.

        Raises:
            UnknownIdError: a history or candidate item is not in the catalogue.
        """
        history_idx = self._positions(list(history))
        wanted = self._positions(list(item_ids), what="candidate")
        source = self.fallback if len(history_idx) == 0 and self.fallback is not None else self
        own = np.asarray([self._index[str(i)] for i in user_items if str(i) in self._index], dtype=np.int64)
        if len(own):
            scores = source._scores_as_new(history_idx, wanted, own)
        else:
            scores = source._scores_of(history_idx, wanted)
        return [float(s) for s in np.asarray(scores, dtype=np.float64)]

    def retrieve_many(
        self,
        histories: Sequence[Sequence[str]],
        k: int,
        excludes: Sequence[Collection[str]] | None = None,
        *,
        batch_size: int = 256,
    ) -> list[list[Candidate]]:
        """`retrieve` for many users at once: the same candidates, with the catalogue scored `batch_size` users
        at a time where the retriever has a batched way (EASE, SASRec).

        Raises:
            ConfigError: bad `k`, or `excludes` not one per history.
            UnknownIdError: a history item is not in the catalogue.
        """
        ids = self.item_ids
        return [
            [Candidate(ids[i], s, found.source) for i, s in zip(found.positions.tolist(), found.scores.tolist())]
            for found in self.ranked_many(histories, k, excludes, batch_size=batch_size)
        ]

    def ranked_many(
        self,
        histories: Sequence[Sequence[str]],
        k: int,
        excludes: Sequence[Collection[str]] | None = None,
        *,
        batch_size: int = 256,
    ) -> list[Ranked]:
        """`retrieve_many` as catalogue positions and scores (what fusion combines, with no `Candidate` made)."""
        k = check_k(k, len(self.item_ids))
        excludes = check_excludes(histories, excludes)
        positions = [self._positions(list(h)) for h in histories]
        out: list[Ranked] = [_EMPTY] * len(histories)
        batched = []
        for n, history_idx in enumerate(positions):
            if len(history_idx) == 0 and self.fallback is not None:
                log.debug("%s: empty history, falling back to %s", self.name, self.fallback.name)
                scores = np.asarray(self.fallback._scores(history_idx), dtype=np.float64).copy()
                excluded = self._excluded_positions(history_idx, excludes[n])
                out[n] = self.fallback._rank(scores, k, excluded, FALLBACK_SOURCE)
            else:
                batched.append(n)
        size = max(1, int(batch_size))
        for start in range(0, len(batched), size):
            chunk = batched[start : start + size]
            left_out = [self._excluded_positions(positions[n], excludes[n]) for n in chunk]
            for n, found in zip(chunk, self._ranked_batch([positions[n] for n in chunk], k, left_out), strict=True):
                out[n] = found
        return out

    def _batch_scores(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        """Catalogue scores of several histories, one row each. A retriever with a faster batched way overrides
        this and computes `_scores` through it, so that one user and many get the same numbers."""
        return np.stack([np.asarray(self._scores(h), dtype=np.float64) for h in histories])

    def _rank(self, scores: np.ndarray, k: int, excluded: np.ndarray, source: str) -> Ranked:
        """The best `k` of the catalogue `scores` (modified: `excluded` set to -inf), best first."""
        scores[excluded] = -np.inf
        allowed = np.flatnonzero(np.isfinite(scores))
        if len(allowed) == 0:
            return Ranked(allowed, scores[allowed], source)
        tie = self._tiebreak()
        if len(allowed) > 4 * k:
            # Only the best k matter: partition first so that large catalogues stay cheap (ties at the k-th
            # score are all kept, so the order below, tie-break included, is the same as a full sort's).
            kth = np.partition(-scores[allowed], k - 1)[k - 1]
            allowed = allowed[-scores[allowed] <= kth]
        # Deterministic order: score desc, then tie-break key desc, then catalogue position asc.
        keys = [np.arange(len(allowed))] + ([] if tie is None else [-tie[allowed]]) + [-scores[allowed]]
        order = allowed[np.lexsort(keys)][:k]
        return Ranked(order, scores[order], source)


def check_excludes(
    histories: Sequence[Sequence[str]], excludes: Sequence[Collection[str]] | None
) -> Sequence[Collection[str]]:
    """One exclusion set per history (none given: nothing excluded); raises `ConfigError` on a count mismatch."""
    if excludes is None:
        return [()] * len(histories)
    if len(excludes) != len(histories):
        raise ConfigError(f"{len(excludes)} exclusion lists for {len(histories)} histories")
    return excludes


def retrieve_many(
    retriever: Retriever,
    histories: Sequence[Sequence[str]],
    k: int,
    excludes: Sequence[Collection[str]] | None = None,
) -> list[list[Candidate]]:
    """`retriever.retrieve` for every history: batched where the retriever can (``retrieve_many``), one by one
    for a retriever that only follows the `Retriever` protocol."""
    batched = getattr(retriever, "retrieve_many", None)
    if batched is not None:
        return list(batched(histories, k, excludes))
    return [retriever.retrieve(h, k, e) for h, e in zip(histories, check_excludes(histories, excludes), strict=True)]


def recency_weights(n: int, decay: float) -> np.ndarray:
    """Weights of `n` history items, oldest first: the newest weighs 1, each older one `decay` times less."""
    return decay ** np.arange(n - 1, -1, -1, dtype=np.float64)


def check_history_options(history_len: object, recency_decay: object) -> None:
    """Validate the shared history options of history-based retrievers (raises `ConfigError`)."""
    if isinstance(history_len, bool) or not isinstance(history_len, int) or history_len <= 0:
        raise ConfigError(f"history_len must be a positive integer, got {history_len!r}")
    if (
        isinstance(recency_decay, bool)
        or not isinstance(recency_decay, (int, float))
        or not 0 < recency_decay <= 1
    ):
        raise ConfigError(f"recency_decay must be in (0, 1], got {recency_decay!r}")
