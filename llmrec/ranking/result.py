"""`RankedList`: one user's ranked candidates with what produced them (counters, timings, facts, fusion)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class RankedList:
    """The result of ranking one user's candidates, best first.

    Attributes:
        item_ids, scores, ranks: aligned, best first; ranks start at 1.
        score_kind: how to read the scores (``label_logprob``, ``yes_no_margin`` or ``rank``: windows and
            generative ranking give rank-derived scores, n for the best).
        mode, template, adapter: what produced it.
        prompt_tokens: tokens of all prompts rendered (summed over windows and bootstrap orders).
        encoded_tokens: tokens actually run through the model (fewer with the pointwise prefix cache).
        forward_passes: model forward calls (one per generated token in generative mode).
        parse_failures: generative outputs that did not name every candidate exactly once.
        timings: seconds: ``retrieve``, ``prompt``, ``score``, ``total``.
        facts: per item, the KG sentences the model was shown about it (why it is here).
        windows, permutations: prompts per order and candidate orders scored.
        candidate_source: where candidates came from (a retriever name, ``"popularity-fallback"`` when the
            history was empty, or ``"given"``).
        llm_scores: with score fusion, the LLM's own score per item it scored (`scores` are then the fused ones;
            with an ``llm_depth`` only the items the LLM scored are here).
        first_stage_scores: with score fusion, the members' fusion without the LLM per item (what `scores` would
            be at LLM weight 0: the ranking the LLM is measured against).
        fusion: with score fusion, its members and weights (from the adapter card or the config).
        llm_skipped: why the LLM did not score (its fusion weight is 0), when it did not: the list is then the
            first stage's order (`scores` are `first_stage_scores`).
        prompts: the exact texts the model read (one per candidate in pointwise mode); not in `to_dict` unless
            asked.
    """

    item_ids: tuple[str, ...]
    scores: tuple[float, ...]
    ranks: tuple[int, ...]
    score_kind: str
    mode: str
    template: str
    adapter: str | None
    prompt_tokens: int
    encoded_tokens: int
    forward_passes: int
    parse_failures: int
    timings: Mapping[str, float]
    facts: Mapping[str, tuple[str, ...]]
    windows: int = 1
    permutations: int = 1
    candidate_source: str = "given"
    raw_outputs: tuple[str, ...] = ()
    llm_scores: Mapping[str, float] = field(default_factory=dict)
    first_stage_scores: Mapping[str, float] = field(default_factory=dict)
    fusion: Mapping[str, Any] | None = None
    llm_skipped: str | None = None
    prompts: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.item_ids)

    def top(self, k: int) -> RankedList:
        """The first `k` entries (with the same counters)."""
        kept = self.item_ids[:k]
        return replace(
            self,
            item_ids=kept,
            scores=self.scores[:k],
            ranks=self.ranks[:k],
            facts={i: self.facts.get(i, ()) for i in kept},
            llm_scores={i: self.llm_scores[i] for i in kept if i in self.llm_scores},
            first_stage_scores={i: self.first_stage_scores[i] for i in kept if i in self.first_stage_scores},
        )

    def to_dict(self, *, prompts: bool = False) -> dict[str, Any]:
        """JSON-ready: ``ranked`` = [{item_id, score, rank, facts}], plus the counters and timings (and the
        prompt texts with `prompts`)."""
        data = asdict(self)
        for key in ("item_ids", "scores", "ranks", "facts") + (() if prompts else ("prompts",)):
            data.pop(key)
        data["ranked"] = [
            {"item_id": i, "score": s, "rank": r, "facts": list(self.facts.get(i, ()))}
            for i, s, r in zip(self.item_ids, self.scores, self.ranks)
        ]
        data["timings"] = dict(self.timings)
        data["raw_outputs"] = list(self.raw_outputs)
        if prompts:
            data["prompts"] = list(self.prompts)
        return data
