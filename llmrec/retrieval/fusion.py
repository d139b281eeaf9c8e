"""Score fusion of several retrievers by weighted reciprocal rank (RRF), so different score scales mix."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from llmrec.errors import ConfigError
from llmrec.retrieval.base import FALLBACK_SOURCE, Retriever, check_k
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
        self.name = "fusion(" + "+".join(r.name for r in retrievers) + ")"

    def _fused(
        self, history: Sequence[str], k: int, exclude: Collection[str]
    ) -> tuple[dict[str, float], bool]:
        depth = min(len(self.item_ids), max(self.depth, k))
        fused: dict[str, float] = {}
        all_fallback = True
        for retriever, weight in zip(self.retrievers, self.weights, strict=True):
            candidates = retriever.retrieve(history, depth, exclude)
            all_fallback &= all(c.source == FALLBACK_SOURCE for c in candidates)
            for rank, candidate in enumerate(candidates, start=1):
                fused[candidate.item_id] = fused.get(candidate.item_id, 0.0) + weight / (self.rrf_k + rank)
        return fused, all_fallback

    def retrieve(self, history: Sequence[str], k: int, exclude: Collection[str] = ()) -> list[Candidate]:
        """The `k` items with the highest fused score, best first (ties: first member's order)."""
        k = check_k(k, len(self.item_ids))
        fused, all_fallback = self._fused(history, k, exclude)
        source = FALLBACK_SOURCE if all_fallback else "fusion"
        # dicts keep insertion order and sorted() is stable, so ties keep the first member's ranking.
        best = sorted(fused.items(), key=lambda kv: -kv[1])[:k]
        return [Candidate(item_id, score, source) for item_id, score in best]

    def score(self, history: Sequence[str], item_ids: Sequence[str]) -> list[float]:
        """Fused score of each given item (0 for items outside every member's top `depth`)."""
        fused, _ = self._fused(history, min(self.depth, len(self.item_ids)), ())
        return [fused.get(str(i), 0.0) for i in item_ids]
