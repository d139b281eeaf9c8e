"""Score fusion: the LLM's score combined with first-stage retriever scores, per user.

Each score list is z-scored over one user's candidates (mean 0, standard deviation 1; a constant list gives 0s),
so a yes/no margin, a label log-probability and a retriever score mix on one scale. The final score is
``llm_weight * z(llm) + sum_m weight_m * z(member_m)``. Weights are fit on validation users only
(`fit_score_fusion`), stored in the adapter card (key ``fusion``) and applied by `Reranker` and the evaluation
harness unless switched off.

Example:
    >>> fusion = ScoreFusion(members=("sasrec",), weights=(1.0,), llm_weight=0.5)
    >>> [round(s, 3) for s in fusion.combine([0.0, 2.0, 1.0], [[3.0, 1.0, 2.0]])]
    [0.612, -0.612, 0.0]
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from llmrec.errors import ConfigError

#: Candidate weights of the grid search (relative to the first member, whose weight is 1).
LLM_WEIGHT_GRID = tuple(round(0.05 * n, 2) for n in range(0, 21)) + (1.25, 1.5, 2.0, 3.0)
MEMBER_WEIGHT_GRID = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5)


def zscore(values: Sequence[float]) -> np.ndarray:
    """(x - mean) / std over one user's candidates; 0s when all values are equal. NaN counts as the minimum."""
    x = np.asarray(values, dtype=np.float64)
    if len(x) == 0:
        return x
    finite = np.isfinite(x)
    if not finite.any():
        return np.zeros(len(x))
    x = np.where(finite, x, x[finite].min())
    std = x.std()
    return (x - x.mean()) / std if std > 0 else np.zeros(len(x))


@dataclass(frozen=True)
class ScoreFusion:
    """Weights of a per-user z-score fusion of the LLM score with first-stage retriever scores.

    Attributes:
        members: retriever names (``llmrec.retrieval.build_retriever``), fit on the data the ranker is given.
        weights: one per member.
        llm_weight: the LLM score's weight (0: the members alone, the "fusion without the LLM" ablation).
        fitted: where the weights come from (split, users, metric before and after), for the card and reports.
    """

    members: tuple[str, ...]
    weights: tuple[float, ...]
    llm_weight: float
    fitted: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "members", tuple(str(m) for m in self.members))
        object.__setattr__(self, "weights", tuple(float(w) for w in self.weights))
        if not self.members:
            raise ConfigError("fusion.members must name at least one retriever")
        if len(self.weights) != len(self.members):
            raise ConfigError(f"fusion has {len(self.weights)} weights for {len(self.members)} members")
        for name, w in (*zip(self.members, self.weights), ("llm_weight", self.llm_weight)):
            if not isinstance(w, (int, float)) or isinstance(w, bool) or not math.isfinite(w) or w < 0:
                raise ConfigError(f"fusion weight of {name!r} must be a finite number >= 0, got {w!r}")
        object.__setattr__(self, "llm_weight", float(self.llm_weight))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "fusion") -> ScoreFusion:
        """From the plain form `to_dict` writes (an adapter card's ``fusion`` entry, an arm's ``fusion``)."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where} must be a mapping with members, weights and llm_weight, got {data!r}")
        unknown = sorted(set(data) - {"members", "weights", "llm_weight", "fitted"})
        missing = sorted({"members", "weights", "llm_weight"} - set(data))
        if unknown or missing:
            raise ConfigError(f"{where}: unknown keys {unknown}, missing keys {missing}")
        return cls(tuple(data["members"]), tuple(data["weights"]), data["llm_weight"], dict(data.get("fitted", {})))

    def to_dict(self) -> dict[str, Any]:
        return {
            "members": list(self.members),
            "weights": list(self.weights),
            "llm_weight": self.llm_weight,
            "fitted": dict(self.fitted),
        }

    def without_llm(self) -> ScoreFusion:
        """The same fusion with the LLM's weight set to 0 (what the LLM adds is the difference)."""
        return ScoreFusion(self.members, self.weights, 0.0, self.fitted)

    def combine(self, llm_scores: Sequence[float] | None, member_scores: Sequence[Sequence[float]]) -> list[float]:
        """Fused scores of one user's candidates (candidate order).

        Args:
            llm_scores: the LLM's score per candidate (None when `llm_weight` is 0).
            member_scores: per member (in `members` order), its score per candidate.
        """
        if len(member_scores) != len(self.members):
            raise ConfigError(f"{len(member_scores)} member score lists for members {list(self.members)}")
        n = len(member_scores[0]) if member_scores else len(llm_scores or ())
        total = np.zeros(n)
        for weight, scores in zip(self.weights, member_scores, strict=True):
            if len(scores) != n:
                raise ConfigError(f"member scores for {len(scores)} candidates, expected {n}")
            total += weight * zscore(scores)
        if self.llm_weight:
            if llm_scores is None or len(llm_scores) != n:
                raise ConfigError(f"fusion needs the LLM's {n} candidate scores")
            total += self.llm_weight * zscore(llm_scores)
        return [float(s) for s in total]


def _ndcg10(scores: np.ndarray, target: int) -> float:
    """NDCG@10 of one target; ties with the target count half (neither optimistic nor pessimistic)."""
    others = np.delete(scores, target)
    rank = 1 + float((others > scores[target]).sum()) + 0.5 * float((others == scores[target]).sum())
    return 1.0 / math.log2(rank + 1) if rank <= 10 else 0.0


def fit_score_fusion(
    llm_scores: Sequence[Sequence[float]],
    member_scores: Mapping[str, Sequence[Sequence[float]]],
    targets: Sequence[int],
    *,
    fitted: Mapping[str, Any] | None = None,
) -> ScoreFusion:
    """Grid-search the weights that maximise mean NDCG@10 of the targets (validation users only!).

    Args:
        llm_scores: per user, the LLM's score of each candidate.
        member_scores: per member name, per user, the member's score of each candidate (same order).
        targets: per user, the index of the held-out target among the candidates.
        fitted: provenance to record (the split and users it was fit on).

    The first member's weight is 1; the others and the LLM's are searched over `MEMBER_WEIGHT_GRID` and
    `LLM_WEIGHT_GRID`. Ties prefer the smaller LLM weight, then smaller member weights (a simpler model).
    """
    members = list(member_scores)
    if not members:
        raise ConfigError("fit_score_fusion needs at least one first-stage member")
    n_users = len(targets)
    if n_users == 0 or len(llm_scores) != n_users or any(len(member_scores[m]) != n_users for m in members):
        raise ConfigError("fit_score_fusion needs the same users (at least one) in every score list")
    z_llm = [zscore(s) for s in llm_scores]
    z_members = {m: [zscore(s) for s in member_scores[m]] for m in members}
    best: tuple[float, tuple[float, ...], float] | None = None
    for rest in itertools.product(MEMBER_WEIGHT_GRID, repeat=len(members) - 1):
        weights = (1.0, *rest)
        base = [sum(w * z_members[m][u] for m, w in zip(members, weights, strict=True)) for u in range(n_users)]
        for llm_weight in LLM_WEIGHT_GRID:
            value = float(np.mean([_ndcg10(base[u] + llm_weight * z_llm[u], targets[u]) for u in range(n_users)]))
            if best is None or value > best[0] + 1e-12:
                best = (value, weights, llm_weight)
    assert best is not None
    value, weights, llm_weight = best
    llm_alone = float(np.mean([_ndcg10(z_llm[u], targets[u]) for u in range(n_users)]))
    first = float(np.mean([_ndcg10(z_members[members[0]][u], targets[u]) for u in range(n_users)]))
    record = {
        **dict(fitted or {}),
        "users": n_users,
        "objective": "mean NDCG@10 of the target",
        "ndcg@10": {"fused": value, "llm_alone": llm_alone, members[0]: first},
    }
    return ScoreFusion(tuple(members), weights, llm_weight, record)
