"""Score fusion of several retrievers by weighted reciprocal rank (RRF), so different score scales mix."""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np

from llmrec.errors import ConfigError
from llmrec.retrieval.base import FALLBACK_SOURCE, Ranked, Retriever, check_excludes, check_k, retrieve_many
from llmrec.types import Candidate


class FusionRetriever:
    """Fuses retrievers: item score = ``sum_r weight_r / (rrf_k + rank_r(item))`` over the top-`depth` lists.

    Ranks start at 1; an item missing from a retriever's top `depth` gets nothing from it. All members must share
    one catalogue. Candidates say ``source="fusion"`` (or ``FALLBACK_SOURCE`` when every member fell back).

    Example:
        >>> fused = FusionRetriever([dense, cooc], weights=[1.0, 1.0])  # doctest: +SKIP
        >>> fused.retrieve(history, k=20)  # doctest: +SKIP
    """

    def __init__(
        self,
        retrievers: Sequence[Retriever],
        *,
        weights: Sequence[float] | None = None,
        rrf_k: float = 60.0,
        depth: int = 200,
    ) -> None:
        if not retrievers:
            raise ConfigError("fusion needs at least one retriever")
        weights = [1.0] * len(retrievers) if weights is None else [float(w) for w in weights]
        if len(weights) != len(retrievers):
            raise ConfigError(f"{len(weights)} fusion weights for {len(retrievers)} retrievers")
        if any(w < 0 for w in weights) or not any(w > 0 for w in weights):
            raise ConfigError(f"fusion weights must be >= 0 with at least one > 0, got {weights}")
        if rrf_k < 0:
            raise ConfigError(f"rrf_k must be >= 0, got {rrf_k}")
        if isinstance(depth, bool) or not isinstance(depth, int) or depth <= 0:
            raise ConfigError(f"depth must be a positive integer, got {depth!r}")
        sizes = {len(getattr(r, "item_ids", ())) for r in retrievers}
        if len(sizes) != 1 or 0 in sizes:
            raise ConfigError("fused retrievers must expose item_ids over one and the same catalogue")
        self.retrievers = list(retrievers)
        self.weights = weights
        self.rrf_k = float(rrf_k)
        self.depth = depth
        self.item_ids: list[str] = list(getattr(retrievers[0], "item_ids"))  # noqa: B009
        self._index = {item: n for n, item in enumerate(self.item_ids)}
        self.name = "fusion(" + "+".join(r.name for r in retrievers) + ")"

    def _member_lists(
        self, histories: Sequence[Sequence[str]], k: int, excludes: Sequence[Collection[str]]
    ) -> list[list[Ranked]]:
        """Each member's top-`depth` (at least `k`) list for every history: ``[member][user]``."""
        depth = min(len(self.item_ids), max(self.depth, k))
        out = []
        for retriever in self.retrievers:
            ranked_many = getattr(retriever, "ranked_many", None)
            if ranked_many is not None:
                out.append(ranked_many(histories, depth, excludes))
                continue
            lists = retrieve_many(retriever, histories, depth, excludes)  # a retriever of the protocol alone
            out.append([self._as_ranked(found, retriever.name) for found in lists])
        return out

    def _as_ranked(self, candidates: Sequence[Candidate], name: str) -> Ranked:
        positions = np.fromiter((self._index[c.item_id] for c in candidates), dtype=np.int64, count=len(candidates))
        fell_back = bool(candidates) and all(c.source == FALLBACK_SOURCE for c in candidates)
        return Ranked(positions, np.asarray([c.score for c in candidates]), FALLBACK_SOURCE if fell_back else name)

    def _fuse(self, lists: Sequence[Ranked]) -> tuple[np.ndarray, np.ndarray, bool]:
        """One user's fused scores from the members' lists: (catalogue positions in order of first appearance,
        the whole catalogue's fused scores, whether every member fell back)."""
        fused = np.zeros(len(self.item_ids))
        for found, weight in zip(lists, self.weights, strict=True):
            # members are added in order, as a running sum per item: the same float sums as one item at a time
            np.add.at(fused, found.positions, weight / (self.rrf_k + np.arange(1, len(found.positions) + 1)))
        everything = np.concatenate([found.positions for found in lists])
        _, first = np.unique(everything, return_index=True)
        all_fallback = all(found.source == FALLBACK_SOURCE or len(found.positions) == 0 for found in lists)
        return everything[np.sort(first)], fused, all_fallback

    def retrieve(self, history: Sequence[str], k: int, exclude: Collection[str] = ()) -> list[Candidate]:
        """The `k` items with the highest fused score, best first (ties: first member's order)."""
        return self.retrieve_many([history], k, [exclude])[0]

    def retrieve_many(
        self,
        histories: Sequence[Sequence[str]],
        k: int,
        excludes: Sequence[Collection[str]] | None = None,
    ) -> list[list[Candidate]]:
        """`retrieve` for many users, each member retrieving for all of them at once (batched where it can)."""
        k = check_k(k, len(self.item_ids))
        excludes = check_excludes(histories, excludes)
        per_member = self._member_lists(histories, k, excludes)
        out = []
        for user in range(len(histories)):
            order, fused, all_fallback = self._fuse([lists[user] for lists in per_member])
            source = FALLBACK_SOURCE if all_fallback else "fusion"
            best = order[np.argsort(-fused[order], kind="stable")[:k]]  # stable: ties keep the first member's order
            ids = self.item_ids
            out.append([Candidate(ids[i], s, source) for i, s in zip(best.tolist(), fused[best].tolist(), strict=True)])
        return out

    def score(self, history: Sequence[str], item_ids: Sequence[str]) -> list[float]:
        """Fused score of each given item (0 for items outside every member's top `depth`)."""
        k = min(self.depth, len(self.item_ids))
        _, fused, _ = self._fuse([lists[0] for lists in self._member_lists([history], k, [()])])
        return [float(fused[self._index[str(i)]]) if str(i) in self._index else 0.0 for i in item_ids]
