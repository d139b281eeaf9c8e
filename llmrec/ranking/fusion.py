"""Score fusion: the LLM's score combined with first-stage retriever scores, per user.

Each score list is z-scored over one user's candidates (mean 0, standard deviation 1; a constant list gives 0s),
so a yes/no margin, a label log-probability and a retriever score mix on one scale. The final score is
``llm_weight * z(llm) + sum_m weight_m * z(member_m)``. Weights are fit on validation users only
(`fit_score_fusion`), stored in the adapter card (key ``fusion``) and applied by `Reranker` and the evaluation
harness unless switched off.

With an ``llm_depth`` the LLM scores only the best `llm_depth` candidates of the members' own fusion (as LlamaRec
reranks the first stage's top 20): the fused score reorders those, z-scoring the LLM over them, and the other
candidates follow below in the members' order. At a small LLM weight the LLM rarely lifts a candidate from further
down into the top 10, so this buys most of the quality at a fraction of the LLM's cost.

Example:
    >>> fusion = ScoreFusion(members=("sasrec",), weights=(1.0,), llm_weight=0.5)
    >>> [round(s, 3) for s in fusion.combine([0.0, 2.0, 1.0], [[3.0, 1.0, 2.0]])]
    [0.612, -0.612, 0.0]
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from llmrec.errors import ConfigError
from llmrec.metrics import target_ndcg
from llmrec.stats import mean_and_se, paired_bootstrap, zscore

#: Candidate weights of the grid search (relative to the first member, whose weight is 1).
LLM_WEIGHT_GRID = tuple(round(0.05 * n, 2) for n in range(0, 21)) + (1.25, 1.5, 2.0, 3.0)
MEMBER_WEIGHT_GRID = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5)


@dataclass(frozen=True)
class ScoreFusion:
    """Weights of a per-user z-score fusion of the LLM score with first-stage retriever scores.

    Attributes:
        members: retriever names (``llmrec.retrieval.build_retriever``), fit on the data the ranker is given.
        weights: one per member.
        llm_weight: the LLM score's weight (0: the members alone, the "fusion without the LLM" ablation).
        fitted: where the weights come from (split, users, metric before and after), for the card and reports.
        llm_depth: the LLM scores only this many candidates, the best of the members' fusion; None: all of them.
    """

    members: tuple[str, ...]
    weights: tuple[float, ...]
    llm_weight: float
    fitted: Mapping[str, Any] = field(default_factory=dict)
    llm_depth: int | None = None

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
        depth = self.llm_depth
        if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int) or depth < 1):
            raise ConfigError(f"fusion llm_depth must be null or an integer >= 1, got {depth!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "fusion") -> ScoreFusion:
        """From the plain form `to_dict` writes (an adapter card's ``fusion`` entry, an arm's ``fusion``)."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where} must be a mapping with members, weights and llm_weight, got {data!r}")
        unknown = sorted(set(data) - {"members", "weights", "llm_weight", "fitted", "llm_depth"})
        missing = sorted({"members", "weights", "llm_weight"} - set(data))
        if unknown or missing:
            raise ConfigError(f"{where}: unknown keys {unknown}, missing keys {missing}")
        fitted = dict(data.get("fitted", {}))
        return cls(tuple(data["members"]), tuple(data["weights"]), data["llm_weight"], fitted, data.get("llm_depth"))

    def to_dict(self) -> dict[str, Any]:
        out = {
            "members": list(self.members),
            "weights": list(self.weights),
            "llm_weight": self.llm_weight,
            "fitted": dict(self.fitted),
        }
        if self.llm_depth is not None:
            out["llm_depth"] = self.llm_depth
        return out

    def without_llm(self) -> ScoreFusion:
        """The same fusion with the LLM's weight set to 0 (what the LLM adds is the difference)."""
        return replace(self, llm_weight=0.0)

    def _members_total(self, member_scores: Sequence[Sequence[float]]) -> np.ndarray:
        if len(member_scores) != len(self.members):
            raise ConfigError(f"{len(member_scores)} member score lists for members {list(self.members)}")
        n = len(member_scores[0])
        total = np.zeros(n)
        for weight, scores in zip(self.weights, member_scores, strict=True):
            if len(scores) != n:
                raise ConfigError(f"member scores for {len(scores)} candidates, expected {n}")
            total += weight * zscore(scores)
        return total

    def llm_candidates(self, member_scores: Sequence[Sequence[float]]) -> list[int]:
        """Indices (in candidate order) of the candidates the LLM must score: with an `llm_depth` below the
        number of candidates and an LLM weight, the best `llm_depth` of the members' fusion (ties: the earlier
        candidate); else all of them."""
        return self._llm_indices(self._members_total(member_scores))

    def _llm_indices(self, members_total: np.ndarray) -> list[int]:
        if self.llm_depth is None or self.llm_depth >= len(members_total) or not self.llm_weight:
            return list(range(len(members_total)))
        return sorted(int(i) for i in np.argsort(-members_total, kind="stable")[: self.llm_depth])

    def combine(self, llm_scores: Sequence[float] | None, member_scores: Sequence[Sequence[float]]) -> list[float]:
        """Fused scores of one user's candidates (candidate order).

        Args:
            llm_scores: the LLM's score per candidate (None when `llm_weight` is 0). With an `llm_depth`, only
                those of `llm_candidates` are read (the others may be NaN).
            member_scores: per member (in `members` order), its score per candidate.
        """
        total = self._members_total(member_scores)
        n = len(total)
        if not self.llm_weight:
            return [float(s) for s in total]
        if llm_scores is None or len(llm_scores) != n:
            raise ConfigError(f"fusion needs the LLM's {n} candidate scores")
        scored = self._llm_indices(total)
        llm = [float(llm_scores[i]) for i in scored]
        if scored and not any(math.isfinite(x) for x in llm):
            raise ConfigError(f"fusion needs the LLM's scores of candidates {scored}, got none")
        fused: np.ndarray = total.copy()
        fused[scored] = fused[scored] + self.llm_weight * zscore(llm)
        if len(scored) < n:  # the unscored candidates follow below, in the members' order
            rest = np.setdiff1d(np.arange(n), scored)
            fused[rest] -= max(0.0, fused[rest].max() - fused[scored].min()) + 1.0
        return [float(s) for s in fused]


def _first_best(table: np.ndarray) -> tuple[int, ...]:
    """Index of the best value of `table` (C order; the first of equal values, i.e. the simpler weighting)."""
    flat = table.ravel()
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(flat >= flat.max() - 1e-12)), table.shape))


#: Folds of the cross-validation that decides whether the LLM earns a weight in the fusion.
CV_FOLDS = 5


def _cross_validate(table: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per user, held-out NDCG@10 of the fusion fit on the other folds, with and without the LLM.

    `table[u, c, l]` is user u's NDCG@10 under member weighting c and LLM weight l (index 0: weight 0).
    """
    n_users = table.shape[0]
    folds = np.empty(n_users, dtype=int)
    folds[np.random.default_rng(seed).permutation(n_users)] = np.arange(n_users) % min(CV_FOLDS, n_users)
    with_llm, without_llm = np.empty(n_users), np.empty(n_users)
    for fold in np.unique(folds):
        held, fit = folds == fold, folds != fold
        mean = table[fit].mean(axis=0)
        combo, weight = _first_best(mean)
        with_llm[held] = table[held, combo, weight]
        (combo,) = _first_best(mean[:, 0])
        without_llm[held] = table[held, combo, 0]
    return with_llm, without_llm


def fit_score_fusion(
    llm_scores: Sequence[Sequence[float]],
    member_scores: Mapping[str, Sequence[Sequence[float]]],
    targets: Sequence[int],
    *,
    fitted: Mapping[str, Any] | None = None,
    keep_llm: bool = False,
) -> ScoreFusion:
    """Grid-search the weights that maximise mean NDCG@10 of the targets (validation users only!).

    Args:
        llm_scores: per user, the LLM's score of each candidate.
        member_scores: per member name, per user, the member's score of each candidate (same order).
        targets: per user, the index of the held-out target among the candidates.
        fitted: provenance to record (the split and users it was fit on).
        keep_llm: keep the LLM's fitted weight even when cross-validation says it does not help (to measure
            what the LLM adds, as a study does); by default such an LLM gets weight 0.

    The first member's weight is 1; the others and the LLM's are searched over `MEMBER_WEIGHT_GRID` and
    `LLM_WEIGHT_GRID`. Ties prefer the earlier grid point (smaller member weights, then the smaller LLM weight).
    A user's NDCG@10 is the reports' (`llmrec.metrics.target_ndcg`): a candidate scored equal to the target ranks
    before it when it comes earlier in the candidate list.

    A weight fit on a few hundred users gives even a useless LLM some weight by chance. So the fit is also
    cross-validated (`CV_FOLDS` folds of users): each fold is scored by weights fit on the others, once with the
    LLM and once without it. Unless the LLM raises that held-out NDCG@10 by more than one standard error of the
    paired gain (the one-standard-error rule: the simpler model wins unless clearly beaten), it gets weight 0 and
    the members keep the weights fit without it; `fitted["cv"]` records the held-out gain, its standard error and
    its 95% paired bootstrap interval (`llmrec.stats`, seed 0, as the reports' comparisons).
    """
    members = list(member_scores)
    if not members:
        raise ConfigError("fit_score_fusion needs at least one first-stage member")
    n_users = len(targets)
    if n_users == 0 or len(llm_scores) != n_users or any(len(member_scores[m]) != n_users for m in members):
        raise ConfigError("fit_score_fusion needs the same users (at least one) in every score list")
    combos = np.array([(1.0, *rest) for rest in itertools.product(MEMBER_WEIGHT_GRID, repeat=len(members) - 1)])
    llm_grid = np.array(LLM_WEIGHT_GRID)
    table = np.empty((n_users, len(combos), len(llm_grid)))
    llm_alone, first = np.empty(n_users), np.empty(n_users)
    for u in range(n_users):
        z_llm = zscore(llm_scores[u])
        z_members = np.stack([zscore(member_scores[m][u]) for m in members])
        base = combos @ z_members  # (combos, candidates)
        grid = base[:, None, :] + llm_grid[None, :, None] * z_llm[None, None, :]
        table[u] = target_ndcg(grid.reshape(-1, len(z_llm)), targets[u]).reshape(len(combos), len(llm_grid))
        llm_alone[u] = target_ndcg(z_llm[None, :], targets[u])[0]
        first[u] = target_ndcg(z_members[:1], targets[u])[0]
    mean = table.mean(axis=0)
    combo, weight = _first_best(mean)
    value = float(mean[combo, weight])
    llm_weight = float(llm_grid[weight])
    record: dict[str, Any] = {
        **dict(fitted or {}),
        "users": n_users,
        "objective": "mean NDCG@10 of the target",
        "ndcg@10": {"fused": value, "llm_alone": float(llm_alone.mean()), members[0]: float(first.mean())},
    }
    if n_users >= 2:
        with_llm, without_llm = _cross_validate(table)
        gain, se = mean_and_se(with_llm - without_llm)
        cmp = paired_bootstrap(with_llm, without_llm, samples=1000, seed=0)
        record["cv"] = {
            "folds": min(CV_FOLDS, n_users),
            "ndcg@10_with_llm": float(with_llm.mean()),
            "ndcg@10_without_llm": float(without_llm.mean()),
            "llm_gain": gain,
            "llm_gain_ci95": [cmp.low, cmp.high],
            "llm_gain_se": se,
        }
        if gain <= se and llm_weight > 0 and not keep_llm:
            (combo,) = _first_best(mean[:, 0])
            record["llm_weight_fit"] = llm_weight
            record["llm_dropped"] = (
                f"the LLM (fitted weight {llm_weight:g}) did not raise held-out NDCG@10 in {min(CV_FOLDS, n_users)}"
                f"-fold cross-validation by more than one standard error (gain {gain:+.4f}, SE {se:.4f}): "
                "weight 0, members fit without it"
            )
            record["ndcg@10"]["fused"] = float(mean[combo, 0])
            llm_weight = 0.0
    return ScoreFusion(tuple(members), tuple(float(w) for w in combos[combo]), llm_weight, record)
