"""The default first stage: a z-score fusion of retrievers whose weights are fit on the dataset's own validation users.

Each member scores the whole catalogue for a user; each member's scores are z-scored over the items the user could
be shown (mean 0, deviation 1; history items and items a member can never propose left out), and the fused score is
``sum_m weight_m * z_m``. Scores of different scales (SASRec logits, EASE regression scores, cosine similarities)
mix on one scale, and unlike reciprocal-rank fusion every item keeps its member's margin, not only its position.

The weights are fit on the data the retriever is built on, never on anything held out from it: every user's last
interaction in `dataset` is a validation target, scored against `negatives` items the user never touched (seeded),
from the user's earlier history. A member scores those targets out of sample: EASE, co-occurrence, popularity and
dense leave the user's own interactions out of their statistics (``score(..., user_items=...)``), and SASRec never
trains on a user's last interaction (its early-stopping target). The weights maximise the targets' mean NDCG@10
(`llmrec.metrics.target_ndcg`, the reports' tie rule) over a grid; a 5-fold cross-validation over users checks the
fit against the best single member and equal weights, and is recorded with it. With fewer than `MIN_FIT_USERS`
validation users the weights are equal, and the record says so.

The fit is cached in ``$LLMREC_HOME/retrievers/zfusion-<key>.json`` (atomic write), keyed on the dataset's content,
the members, their options and versions, and the fit's settings; the members keep their own caches (SASRec's fitted
model, the dense embeddings). Data or members that differ give another key: a fit is never reused for them.

Example:
    >>> first_stage = build_retriever("zfusion", dataset)  # doctest: +SKIP  (SASRec + EASE + dense, fit once)
    >>> first_stage.fit_record["weights"], first_stage.fit_record["ndcg@10"]  # doctest: +SKIP
    >>> first_stage.retrieve(["50", "172", "181"], k=20)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from llmrec.errors import ConfigError
from llmrec.metrics import target_ndcg
from llmrec.retrieval.base import CatalogueRetriever
from llmrec.retrieval.popularity import PopularityRetriever
from llmrec.stats import mean_and_se, paired_bootstrap, zscore

if TYPE_CHECKING:
    from llmrec.data.dataset import Dataset

log = logging.getLogger(__name__)

#: Bump when the fit or the fused score changes (cached fits of older versions are then refit).
VERSION = 1
#: The default members: the best first stage measured (eval/results/ml100k-fusion-fit, ml100k-pointwise-disliked).
DEFAULT_MEMBERS = ("sasrec", "ease", "dense")
#: Weights searched for every member but the first, whose weight is 1.
WEIGHT_GRID = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
#: Below this many validation users the weights are equal (a grid search on a handful of users fits noise).
MIN_FIT_USERS = 50
#: Folds of the held-out check.
CV_FOLDS = 5


class ZScoreFusionRetriever(CatalogueRetriever):
    """``sum_m weight_m * z_m(item)``, each member's catalogue scores z-scored per user (see the module docstring).

    Attributes:
        members: the fused retrievers (one catalogue).
        member_names: their registry names.
        weights: one per member.
        fit_record: how the weights were chosen (validation users, NDCG@10 of the fit, of each member and of equal
            weights, the cross-validated check), or ``{"given": true}`` for weights passed in.
    """

    name = "zfusion"

    def __init__(
        self,
        members: Sequence[Any],
        member_names: Sequence[str],
        weights: Sequence[float],
        fallback: PopularityRetriever,
        *,
        fit_record: Mapping[str, Any] | None = None,
        dataset_name: str = "?",
    ) -> None:
        if not members or len(members) != len(member_names) or len(weights) != len(members):
            raise ConfigError(f"zfusion needs one weight per member, got {list(weights)} for {list(member_names)}")
        _check_weights(weights, member_names)
        item_ids = list(members[0].item_ids)
        for name, member in zip(member_names, members, strict=True):
            if list(getattr(member, "item_ids", ())) != item_ids:
                raise ConfigError(f"zfusion member {name!r} covers another catalogue than {member_names[0]!r}")
        super().__init__(item_ids, dataset_name, fallback=fallback)
        self.members = list(members)
        self.member_names = tuple(member_names)
        self.weights = tuple(float(w) for w in weights)
        self.fit_record: dict[str, Any] = dict(fit_record or {})
        self.name = "zfusion(" + "+".join(self.member_names) + ")"

    @classmethod
    def fit(
        cls,
        dataset: Dataset,
        members: Mapping[str, Any],
        *,
        out_of_sample: Mapping[str, str],
        versions: Mapping[str, Any],
        weights: Sequence[float] | None = None,
        validation_users: int = 1000,
        negatives: int = 99,
        seed: int = 0,
        cache_dir: str | Path | None = None,
    ) -> ZScoreFusionRetriever:
        """Fit the weights of `members` (built on `dataset`) on its own validation users, or load that fit.

        `llmrec.retrieval.build_retriever("zfusion", dataset, ...)` builds the members and calls this.

        Args:
            dataset: the interactions the members were built on (a training split in evaluation).
            members: the built members by registry name, in fusion order.
            out_of_sample: per member, how it scores a validation target out of sample: ``"user_items"`` (it leaves
                the user's interactions out of its statistics) or ``"holds_out_last"`` (it never trains on a
                user's last interaction).
            versions: per member, what identifies its behaviour (its options and registry version), for the key.
            weights: fixed weights instead of a fit.
            validation_users: fit on at most this many users (a seeded sample), each user's last interaction.
            negatives: items the user never touched, sampled per validation user, to rank the target among.
            seed: seed of the user sample and the negatives.
            cache_dir: where fits are kept (default ``$LLMREC_HOME/retrievers``).

        Raises:
            ConfigError: bad weights or settings.
        """
        names = tuple(members)
        built = [members[n] for n in names]
        for what, value, low in (("validation_users", validation_users, 2), ("negatives", negatives, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"zfusion {what} must be an integer >= {low}, got {value!r}")
        fallback = PopularityRetriever.fit(dataset)
        if weights is not None:
            _check_weights(weights, names)
            record: dict[str, Any] = {"given": True, "members": list(names), "weights": [float(w) for w in weights]}
            return cls(built, names, weights, fallback, fit_record=record, dataset_name=dataset.name)
        settings = {"validation_users": validation_users, "negatives": negatives, "seed": seed}
        key = _fit_key(dataset, names, versions, settings)
        path = _cache_path(cache_dir, key)
        cached = _read_fit(path, key, names)
        if cached is not None:
            record = cached
        else:
            log.info("zfusion: fitting the weights of %s on %s's own validation users", "+".join(names), dataset.name)
            cases = validation_cases(dataset, validation_users, negatives, seed)
            scores = [_member_scores(members[n], out_of_sample[n] == "user_items", cases) for n in names]
            record = fit_weights(names, scores, n_candidates=len(cases[0][1]) if cases else 0)
            record.update(key=key, version=VERSION, dataset=dataset.name, **settings)
            _write_fit(path, record)
            log.info("zfusion: %s", describe_fit(record))
        return cls(built, names, record["weights"], fallback, fit_record=record, dataset_name=dataset.name)

    # -- scores ---------------------------------------------------------------------------------------------------

    def _scores(self, history_idx: np.ndarray) -> np.ndarray:
        return self._batch_scores([history_idx])[0]

    def _batch_scores(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        """Each history's fused catalogue scores: the members' scores z-scored over the items not in the history."""
        total = np.zeros((len(histories), len(self.item_ids)))
        for member, weight in zip(self.members, self.weights, strict=True):
            if weight == 0:
                continue
            rows = np.asarray(member._batch_scores(histories), dtype=np.float64)
            for row, total_row, history in zip(rows, total, histories, strict=True):
                total_row += weight * _catalogue_z(row, history)
        return total

    def _scores_as_new(self, history_idx: np.ndarray, wanted: np.ndarray, own: np.ndarray) -> np.ndarray:
        """Not available: its weights were fit on the users' own last interactions and a member (SASRec) may not
        forget a user without a refit, so a training target scored "as new" would leak."""
        raise ConfigError(
            "zfusion cannot score items as new to a user whose interactions it was fitted on (a training target "
            "would leak); order or score training candidates with cooc, popularity or ease instead"
        )

    def describe(self) -> str:
        """One line: the members with their weights, and how the weights were chosen."""
        parts = ", ".join(f"{n} {w:g}" for n, w in zip(self.member_names, self.weights, strict=True))
        return f"zfusion({parts}): {describe_fit(self.fit_record)}"


def _catalogue_z(row: np.ndarray, history: np.ndarray) -> np.ndarray:
    """`row` z-scored by the mean and deviation of the items that could be shown (finite scores, not in `history`);
    items a member can never propose stay -inf."""
    shown = np.isfinite(row)
    shown[np.asarray(history, dtype=np.int64)] = False
    out = np.full(len(row), -np.inf)
    if not shown.any():
        return out
    mean, std = row[shown].mean(), row[shown].std()
    finite = np.isfinite(row)
    out[finite] = (row[finite] - mean) / std if std > 0 else 0.0
    return out


# -- the fit ------------------------------------------------------------------------------------------------------


def validation_cases(
    dataset: Dataset, max_users: int, negatives: int, seed: int
) -> list[tuple[list[str], list[str], set[str]]]:
    """(history, candidates with the target first, all of the user's items) for a seeded sample of at most
    `max_users` users with at least 3 interactions: the target is the user's last interaction, the history the ones
    before it, the other candidates `negatives` items the user never touched (at most half the catalogue; users
    who touched too much of it to leave that many are left out)."""
    rng = np.random.default_rng(seed)
    catalogue = np.asarray(sorted(dataset.items))
    negatives = min(negatives, len(catalogue) // 2)
    users = [u for u in dataset.user_ids if len(dataset.history(u)) >= 3]
    if len(users) > max_users:
        users = sorted(rng.choice(users, size=max_users, replace=False).tolist())
    cases = []
    for user in users:
        items = [x.item_id for x in dataset.history(user)]
        own = set(items)
        if len(catalogue) - len(own) < negatives:
            continue
        picked: list[str] = []
        while len(picked) < negatives:
            draw = catalogue[rng.integers(0, len(catalogue), size=2 * negatives)]
            picked.extend(dict.fromkeys(i for i in draw.tolist() if i not in own and i not in picked))
        cases.append((items[:-1], [items[-1], *picked[:negatives]], own))
    return cases


def _member_scores(member: Any, scores_as_new: bool, cases: Sequence[tuple[list[str], list[str], set[str]]]) -> np.ndarray:
    """(users, candidates) scores of one member; out of sample (see the module docstring)."""
    rows = []
    for history, candidates, own in cases:
        if scores_as_new:
            rows.append(member.score(history, candidates, user_items=own))
        else:
            rows.append(member.score(history, candidates))
    return np.asarray(rows, dtype=np.float64).reshape(len(cases), len(cases[0][1]) if cases else 0)


def fit_weights(names: Sequence[str], scores: Sequence[np.ndarray], *, n_candidates: int) -> dict[str, Any]:
    """Grid-search member weights (the first member's is 1) for the best mean NDCG@10 of the targets (candidate 0
    of each row of `scores`); a record with the weights, the NDCG@10s and a `CV_FOLDS`-fold held-out check.

    Ties prefer the earlier grid point (smaller weights). With fewer than `MIN_FIT_USERS` users: equal weights.
    """
    n_users = len(scores[0]) if scores else 0
    record: dict[str, Any] = {
        "members": list(names),
        "users": n_users,
        "candidates": n_candidates,
        "objective": "mean NDCG@10 of each user's last interaction among sampled unseen items",
    }
    if n_users == 0:
        record.update(weights=[1.0] * len(names), equal_weights="no user has 3 or more interactions to fit on")
        return record
    z = np.stack([np.stack([zscore(row) for row in member]) for member in scores])  # (members, users, candidates)
    combos = np.array([(1.0, *rest) for rest in itertools.product(WEIGHT_GRID, repeat=len(names) - 1)])
    table = np.stack([target_ndcg(np.einsum("m,muc->uc", c, z), 0) for c in combos], axis=1)  # (users, combos)
    alone = {name: float(target_ndcg(z[m], 0).mean()) for m, name in enumerate(names)}
    equal = target_ndcg(z.sum(axis=0), 0)
    record["ndcg@10"] = {"members_alone": alone, "equal_weights": float(equal.mean())}
    if n_users < MIN_FIT_USERS:
        record.update(
            weights=[1.0] * len(names),
            equal_weights=f"only {n_users} validation users (fewer than {MIN_FIT_USERS}): equal weights, not fit",
        )
        record["ndcg@10"]["fused"] = float(equal.mean())
        return record
    best = _first_best(table.mean(axis=0))
    record["weights"] = [float(w) for w in combos[best]]
    record["ndcg@10"]["fused"] = float(table[:, best].mean())
    record["cv"] = _held_out_check(table, np.stack([target_ndcg(z[m], 0) for m in range(len(names))], axis=1), equal)
    return record


def _first_best(values: np.ndarray) -> int:
    """Index of the best value (the first of equal values up to float rounding: the simpler weighting)."""
    return int(np.argmax(values >= values.max() - 1e-12))


def _held_out_check(table: np.ndarray, alone: np.ndarray, equal: np.ndarray, seed: int = 0) -> dict[str, Any]:
    """Per user, NDCG@10 of the weights fit on the other folds, against the member that is best on the other folds
    and against equal weights: held-out means, the paired gains, their SE and bootstrap CI."""
    n_users = len(table)
    folds = np.empty(n_users, dtype=int)
    folds[np.random.default_rng(seed).permutation(n_users)] = np.arange(n_users) % CV_FOLDS
    fused, single = np.empty(n_users), np.empty(n_users)
    for fold in range(CV_FOLDS):
        held, fit = folds == fold, folds != fold
        fused[held] = table[held, _first_best(table[fit].mean(axis=0))]
        single[held] = alone[held, _first_best(alone[fit].mean(axis=0))]
    out: dict[str, Any] = {"folds": CV_FOLDS, "ndcg@10_fused": float(fused.mean()),
                           "ndcg@10_best_member": float(single.mean()), "ndcg@10_equal_weights": float(equal.mean())}
    for other, values in (("best_member", single), ("equal_weights", equal)):
        gain, se = mean_and_se(fused - values)
        cmp = paired_bootstrap(fused, values, samples=1000, seed=0)
        out[f"gain_over_{other}"] = {"mean": gain, "se": se, "ci95": [cmp.low, cmp.high]}
    return out


def describe_fit(record: Mapping[str, Any]) -> str:
    """The fit record in one line (for logs, the CLI and the demo)."""
    if record.get("given"):
        return "weights given, not fit"
    if "equal_weights" in record:
        return str(record["equal_weights"])
    ndcg = record.get("ndcg@10", {})
    line = f"weights fit on {record.get('users')} validation users, NDCG@10 {ndcg.get('fused', float('nan')):.4f}"
    cv = record.get("cv")
    if cv:
        gain = cv["gain_over_best_member"]
        line += (
            f"; held out ({cv['folds']} folds) {cv['ndcg@10_fused']:.4f} vs best single member "
            f"{cv['ndcg@10_best_member']:.4f} ({gain['mean']:+.4f}, 95% CI [{gain['ci95'][0]:+.4f}, {gain['ci95'][1]:+.4f}])"
        )
    return line


# -- checks and the cache -----------------------------------------------------------------------------------------


def _check_weights(weights: Sequence[float], names: Sequence[str]) -> None:
    if len(weights) != len(names):
        raise ConfigError(f"zfusion has {len(weights)} weights for members {list(names)}")
    for name, w in zip(names, weights, strict=True):
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not np.isfinite(w) or w < 0:
            raise ConfigError(f"zfusion weight of {name!r} must be a finite number >= 0, got {w!r}")
    if not any(w > 0 for w in weights):
        raise ConfigError(f"zfusion needs at least one weight above 0, got {list(weights)}")


def _fit_key(
    dataset: Dataset, names: Sequence[str], versions: Mapping[str, Any], settings: Mapping[str, Any]
) -> str:
    blob = {
        "version": VERSION,
        "members": [[n, versions.get(n)] for n in names],
        "settings": dict(settings),
        "data": dataset.content_fingerprint(),
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _cache_path(cache_dir: str | Path | None, key: str) -> Path:
    if cache_dir is None:
        from llmrec.assets import llmrec_home

        cache_dir = llmrec_home() / "retrievers"
    return Path(cache_dir) / f"zfusion-{key}.json"


def _read_fit(path: Path, key: str, names: Sequence[str]) -> dict[str, Any] | None:
    """The cached fit if `path` holds one for exactly this key and these members, else None (then refit)."""
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        log.warning("zfusion: cannot read %s (%s); refitting", path, exc)
        return None
    if record.get("key") != key or record.get("members") != list(names) or len(record.get("weights", ())) != len(names):
        log.warning("zfusion: %s was fit on other data or members; refitting", path)
        return None
    log.info("zfusion: loaded the fitted weights from %s", path)
    return dict(record)


def _write_fit(path: Path, record: Mapping[str, Any]) -> None:
    from llmrec.io import atomic_write_text

    atomic_write_text(path, json.dumps(record, indent=2, sort_keys=True) + "\n")
