"""Collaborative evidence as knowledge: what the training interactions say about a candidate, in words.

Built from interactions (the train split in evaluation and training), with provenance ``interactions``. Per
candidate it offers two facts, selected and token-budgeted with the KG facts:

- ``co_liked``: "liked by 31% of those who liked Fargo (1996)", the strongest P(liked candidate | liked h) over
  the recent history items h with enough support;
- ``popularity``: a popularity band, "liked by 212 users, among the top 5% of the catalogue".

A training example's target is in the interactions the evidence was built from, an evaluation target is not. So
that a training target reads like a test one, the user's own interactions can be left out (``user_items``):
a co-like of the user with the candidate no longer counts, and the candidate loses the user's like.

Example:
    >>> evidence = InteractionEvidence.fit(split.train_dataset)  # doctest: +SKIP
    >>> [f.sentence for f in evidence.facts("172", ["50", "181"], recency={"50": 0.9, "181": 1.0})]  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from llmrec.data.dataset import PositivePolicy
from llmrec.data.matrix import InteractionMatrix
from llmrec.errors import ConfigError
from llmrec.knowledge.selection import Fact, item_name

if TYPE_CHECKING:
    from llmrec.data.dataset import Dataset
    from llmrec.types import Item

INTERACTIONS_SOURCE = "interactions"
#: Popularity bands: (share of the catalogue, words), the first whose share the item's like-rank falls in.
POPULARITY_BANDS = ((0.01, "top 1%"), (0.05, "top 5%"), (0.10, "top 10%"), (0.25, "top 25%"), (0.50, "top half"))
#: Fact scores, on the scale of `llmrec.knowledge.selection` (a same-director fact scores about 5).
CO_LIKED_WEIGHT = 8.0
POPULARITY_WEIGHT = 2.0


@dataclass(frozen=True)
class InteractionEvidence:
    """Like counts and co-like counts of the items, from one set of interactions.

    Attributes:
        item_ids: catalogue order.
        liked: users who liked each item.
        co_liked: sparse item x item counts of users who liked both.
        min_support: a history item needs this many likes before "x% of those who liked it" is said.
        history_len: only the most recent history items are looked at.
    """

    item_ids: tuple[str, ...]
    liked: np.ndarray
    co_liked: Any
    min_support: int = 10
    history_len: int = 20

    @classmethod
    def fit(
        cls,
        dataset: Dataset,
        *,
        policy: PositivePolicy | None = None,
        min_support: int = 10,
        history_len: int = 20,
    ) -> InteractionEvidence:
        """Count likes (interactions the policy calls positive; rating >= 4 by default) per item and item pair."""
        if min_support < 1 or history_len < 1:
            raise ConfigError(f"min_support and history_len must be >= 1, got {min_support}, {history_len}")
        likes = InteractionMatrix.build(dataset, policy or PositivePolicy(4.0))
        return cls(tuple(likes.item_ids), likes.item_counts, likes.cooccurrence(), min_support, history_len)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {item: n for n, item in enumerate(self.item_ids)})
        # Competition rank: the number of items liked by strictly more users (ties share the better rank).
        descending = -np.sort(self.liked)[::-1]
        object.__setattr__(self, "_like_rank", np.searchsorted(descending, -self.liked, side="left"))

    def facts(
        self,
        candidate: str,
        history: Sequence[str],
        *,
        recency: Mapping[str, float],
        items: Mapping[str, Item] | None = None,
        user_items: Collection[str] = (),
    ) -> list[Fact]:
        """The candidate's evidence facts (co-liked, popularity band), unranked; [] for an unknown candidate.

        Args:
            candidate: the candidate item id.
            history: item ids, most recent first (only the first `history_len` are looked at).
            recency: a weight per history item (1 for the newest), as the KG facts use.
            items: metadata for names in sentences.
            user_items: the user's own items in the counted interactions, left out (see the module docstring).
        """
        index: dict[str, int] = self._index  # type: ignore[attr-defined]
        c = index.get(candidate)
        if c is None:
            return []
        own = {index[i] for i in user_items if i in index}
        out: list[Fact] = []
        best: tuple[float, float, str, int] | None = None
        for h_id in history[: self.history_len]:
            h = index.get(h_id)
            if h is None or h == c or self.liked[h] < self.min_support:
                continue
            together = float(self.co_liked[h, c]) - (1.0 if h in own and c in own else 0.0)
            share = max(0.0, together) / float(self.liked[h])
            weight = recency.get(h_id, 0.0)
            if together > 0 and (best is None or share * weight > best[0] * best[1]):
                best = (share, weight, h_id, int(together))
        if best is not None:
            share, weight, h_id, _ = best
            percent = max(1, round(100 * share))
            out.append(
                Fact(
                    candidate, "co_liked", f"liked by {percent}% of those who liked {item_name(h_id, items)}",
                    CO_LIKED_WEIGHT * np.sqrt(share) * weight, (h_id,), (), (INTERACTIONS_SOURCE,),
                )
            )  # fmt: skip
        likes = int(self.liked[c]) - (1 if c in own else 0)
        out.append(
            Fact(
                candidate, "popularity", self._popularity_sentence(c, likes), POPULARITY_WEIGHT, (), (),
                (INTERACTIONS_SOURCE,),
            )
        )  # fmt: skip
        return out

    def _popularity_sentence(self, c: int, likes: int) -> str:
        if likes <= 0:
            return "liked by no one yet"
        share = (int(self._like_rank[c]) + 1) / len(self.item_ids)  # type: ignore[attr-defined]
        band = next((words for cut, words in POPULARITY_BANDS if share <= cut), None)
        users = "user" if likes == 1 else "users"
        if band is None:
            return f"liked by {likes} {users}, less than most"
        return f"liked by {likes} {users}, among the {band} of the catalogue"
