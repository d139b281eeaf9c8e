"""Ranking metrics over one held-out target per user, and AUC: the one owner of the tie rule.

Below all of their users: the evaluation reports (`llmrec.evaluation`), training validation
(`llmrec.training.validation`), the score-fusion fit (`llmrec.ranking.fusion`) and SASRec's early stopping
(`llmrec.retrieval.sequential`) score with these same functions, so weights and epochs are chosen under the rule
the reports measure.

Every metric here works from the target's 1-based rank among the candidates an arm scored (``None`` when the
target was not among the candidates: a miss that scores 0 on every ranking metric). Ties are broken by candidate
position: an equal score earlier in the list ranks before the target (the candidates are shuffled with a seed, so
this is a seeded random tie-break, never in the target's favour by construction). NaN ranks last. `target_rank`
applies the rule to one list, `target_ranks` / `target_ndcg` to many rows at once.

Example:
    >>> target_rank([0.1, 0.9, 0.5], 2)
    2
    >>> round(ndcg_at(2, 5), 4)
    0.6309
    >>> target_ranks([[0.5, 0.5, 0.1], [0.2, 0.9, 0.9]], [1, 2]).tolist()
    [2, 2]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike

from llmrec.errors import ConfigError

#: Cut-offs of the default metric set.
NDCG_KS = (1, 5, 10)
HIT_KS = (5, 10)


def target_rank(scores: Sequence[float], target_index: int | None) -> int | None:
    """1-based rank of the candidate at `target_index` when candidates are sorted by score, best first.

    A candidate with an equal score that comes earlier in the list ranks before the target; NaN scores rank last.
    Returns None when `target_index` is None (the target was not a candidate).
    """
    if target_index is None:
        return None
    if not 0 <= target_index < len(scores):
        raise ConfigError(f"target_index {target_index} out of range for {len(scores)} candidates")
    t = clean_score(scores[target_index])
    rank = 1
    for n, s in enumerate(scores):
        if n == target_index:
            continue
        s = clean_score(s)
        if s > t or (s == t and n < target_index):
            rank += 1
    return rank


def target_ranks(scores: ArrayLike, targets: int | ArrayLike) -> np.ndarray:
    """1-based rank of each row's target (`target_rank`'s rule, row by row, vectorised).

    Args:
        scores: a 2-D array, one row per ranking (a user, a weighting), one column per candidate.
        targets: the target's column, one for all rows or one per row.

    Returns:
        An int64 array with one rank per row.

    Raises:
        ConfigError: `scores` is not 2-D, or a target is out of range.
    """
    x = np.asarray(scores)
    if x.ndim != 2:
        raise ConfigError(f"target_ranks needs a 2-D array of scores (rows x candidates), got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    n_rows, n_cols = x.shape
    t = np.broadcast_to(np.asarray(targets, dtype=np.int64), (n_rows,))
    if ((t < 0) | (t >= n_cols)).any():
        bad = int(t[(t < 0) | (t >= n_cols)][0])
        raise ConfigError(f"target_index {bad} out of range for {n_cols} candidates")
    nan = np.isnan(x)
    if nan.any():  # as `clean_score`: NaN sorts last
        x = np.where(nan, -np.inf, x)
    at_target = x[np.arange(n_rows), t][:, None]
    earlier = np.arange(n_cols)[None, :] < t[:, None]
    better = (x > at_target).sum(axis=1) + ((x == at_target) & earlier).sum(axis=1)
    return (better + 1).astype(np.int64)


def target_ndcg(scores: ArrayLike, targets: int | ArrayLike, k: int = 10) -> np.ndarray:
    """NDCG@k of each row's target (`ndcg_at` of `target_ranks`; bit for bit the scalar functions' values).

    Example:
        >>> target_ndcg([[0.3, 0.9, 0.3]], 2, k=2).tolist()
        [0.0]
    """
    return ndcg_at_ranks(target_ranks(scores, targets), k)


def ndcg_at_ranks(ranks: ArrayLike, k: int) -> np.ndarray:
    """`ndcg_at` of each rank in an integer array (all ranks present: no misses)."""
    r = np.asarray(ranks, dtype=np.int64)
    # A table of the scalar function's own values, so a vectorised mean equals a mean of `ndcg_at` exactly.
    gains = np.array([0.0] + [ndcg_at(n, k) for n in range(1, k + 1)])
    return np.where(r <= k, gains[np.clip(r, 0, k)], 0.0)


def clean_score(score: float) -> float:
    """`score` as a float that sorts NaN and None last (as -inf)."""
    return -math.inf if score is None or math.isnan(score) else float(score)


def ndcg_at(rank: int | None, k: int) -> float:
    """NDCG@k for a single relevant item: ``1 / log2(rank + 1)`` if it ranks within the top k, else 0."""
    if rank is None or rank > k:
        return 0.0
    return 1.0 / math.log2(rank + 1)


def hit_at(rank: int | None, k: int) -> float:
    """HR@k, which equals Recall@k with one relevant item: 1 if the target ranks within the top k."""
    return 1.0 if rank is not None and rank <= k else 0.0


def reciprocal_rank(rank: int | None) -> float:
    """1 / rank (0 for a miss). Averaged over users this is MRR."""
    return 0.0 if rank is None else 1.0 / rank


def ranking_auc(rank: int | None, n_candidates: int) -> float:
    """Share of the other candidates the target beats: ``(n - rank) / (n - 1)``; 0 for a miss, 0.5 for n = 1."""
    if rank is None:
        return 0.0
    if n_candidates <= 1:
        return 0.5
    return (n_candidates - rank) / (n_candidates - 1)


def user_metrics(rank: int | None, n_candidates: int) -> dict[str, float]:
    """The per-user ranking metrics of the default set, keyed ``ndcg@1``, ``hr@5``, ``mrr``, ``auc`` ..."""
    out = {f"ndcg@{k}": ndcg_at(rank, k) for k in NDCG_KS}
    out.update({f"hr@{k}": hit_at(rank, k) for k in HIT_KS})
    out.update({f"recall@{k}": hit_at(rank, k) for k in HIT_KS})
    out["mrr"] = reciprocal_rank(rank)
    out["auc"] = ranking_auc(rank, n_candidates)
    return out


def pairwise_auc(positive_scores: Sequence[float], negative_scores: Sequence[float]) -> float:
    """ROC AUC of positives against negatives (Mann-Whitney U; a tie counts one half).

    Raises:
        ConfigError: one of the two groups is empty (AUC is undefined).
    """
    if not positive_scores or not negative_scores:
        raise ConfigError("AUC needs at least one positive and one negative score")
    pos = sorted(clean_score(s) for s in positive_scores)
    neg = sorted(clean_score(s) for s in negative_scores)
    # Count negatives below / equal to each positive with two pointers over the sorted lists: O(n log n).
    wins = 0.0
    lo = hi = 0
    for p in pos:
        while lo < len(neg) and neg[lo] < p:
            lo += 1
        hi = max(hi, lo)
        while hi < len(neg) and neg[hi] <= p:
            hi += 1
        wins += lo + 0.5 * (hi - lo)
    return wins / (len(pos) * len(neg))


def mean_metrics(rows: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Average each metric over rows (users). Keys are those of the first row; an empty input gives ``{}``."""
    if not rows:
        return {}
    keys = list(rows[0])
    return {k: sum(r[k] for r in rows) / len(rows) for k in keys}
