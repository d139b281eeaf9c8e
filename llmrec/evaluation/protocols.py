"""Evaluation cases: for each user, the history an arm sees, the held-out target and the candidates to rank; and
what an arm returns for a case (`ArmOutput`), the contract between the cases, the arms, the cache and the runner.

Data discipline (leave-one-out): each evaluated user's last positive interaction is the test target and the one
before it the validation target. Retrievers and baselines are fit on the *train* interactions only. The history an
arm is given for a test target is every interaction of that user before the target, in time order -- it includes
the validation item, as a deployed recommender would know it; nothing from the target's time or later is shown.

Protocols:
    * ``sampled`` (LLMRank): target + N items drawn uniformly, seeded, from those the user never interacted with
      (in the whole dataset), shuffled.
    * ``retrieved`` (LlamaRec): the retriever's top-K for the history, in the retriever's order; the target may
      be absent (a miss for every arm).
    * ``pointwise`` (TALLRec): the (liked) target and N unseen items, each to be scored on its own; AUC is the
      headline metric.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from llmrec.data.dataset import Dataset, PositivePolicy
from llmrec.data.splits import Split, SplitSettings
from llmrec.errors import ConfigError, LlmrecError
from llmrec.evaluation.config import ExperimentConfig

log = logging.getLogger(__name__)


class EmptySplitError(LlmrecError):
    """The split has no target to evaluate (no user has enough interactions)."""


@dataclass(frozen=True)
class EvalCase:
    """One user's evaluation input.

    Attributes:
        user_id: the user.
        history: item ids the user interacted with before the target, oldest first.
        target: the held-out item id.
        candidates: item ids to rank, in the order shown to the arm.
        target_index: the target's position in `candidates`, or None when the protocol's retriever missed it.
        target_train_count: interactions the target has in the train split (its popularity; cold items are low).
    """

    user_id: str
    history: tuple[str, ...]
    target: str
    candidates: tuple[str, ...]
    target_index: int | None
    target_train_count: int

    @property
    def target_present(self) -> bool:
        return self.target_index is not None


@dataclass(frozen=True)
class ArmOutput:
    """What an arm returns for one case: one score per candidate (candidate order) and its costs.

    A fused LLM arm (`llmrec.ranking.Reranker` with score fusion) also returns, in candidate order, the LLM's own
    scores (NaN for candidates an ``llm_depth`` left unscored) and the first-stage members' fusion without the
    LLM: the report's ``.llm-only`` and ``.no-llm`` rows, from the same call.
    """

    scores: tuple[float, ...]
    prompt_tokens: int = 0
    forward_passes: int = 0
    parse_failures: int = 0
    latency_s: float = 0.0
    llm_scores: tuple[float, ...] | None = None
    first_stage_scores: tuple[float, ...] | None = None


RetrieverFactory = Callable[[str, dict], object]


#: Bump when a protocol makes other cases (users, histories, candidates) from the same split and config.
PROTOCOL_VERSION = 1


def make_split(dataset: Dataset, config: ExperimentConfig) -> Split:
    """The split the config asks for. Raises EmptySplitError when it holds no target."""
    settings = SplitSettings(
        kind=config.split.kind,
        positive_min_rating=config.split.positive_min_rating,
        min_history=config.split.min_history,
    )
    split = settings.apply(dataset)  # the one owner of split construction, as training makes its split
    targets = split.test if config.split.target == "test" else split.valid
    if not targets:
        raise EmptySplitError(
            f"the {config.split.target} split of {dataset.name!r} is empty: no user has two positive interactions "
            f"(rating >= {config.split.positive_min_rating}) after {config.split.min_history} train interactions"
        )
    return split


def user_order(split: Split, config: ExperimentConfig) -> list[str]:
    """All users with a target, in a seeded random order. The first N are 'the seeded sample of N users'.

    A prefix of the order is a sample, so a sample of 300 is contained in a sample of 943 and cached results
    carry over between sample sizes.
    """
    targets = split.test if config.split.target == "test" else split.valid
    users = sorted({x.user_id for x in targets})
    if config.protocol.negatives_from == "disliked":
        by_user = {x.user_id: x for x in targets}
        policy = PositivePolicy(config.split.positive_min_rating)
        kept = [u for u in users if len(_disliked_after(split.dataset, by_user[u], policy)) >= config.protocol.negatives]
        log.info("negatives_from: disliked: %d of %d users rated enough items low after their target", len(kept), len(users))
        users = kept
    random.Random(f"llmrec-eval-users:{config.seed}").shuffle(users)
    return users


def _disliked_after(dataset: Dataset, target: Any, policy: PositivePolicy) -> list[str]:
    """Items the user rated below the positive threshold after `target` (never in training or the history)."""
    history = dataset.history(target.user_id)
    cut = next(n for n, x in enumerate(history) if x is target or x == target)
    seen_before = {x.item_id for x in history[: cut + 1]}
    out = [x.item_id for x in history[cut + 1 :] if not policy.is_positive(x) and x.item_id not in seen_before]
    return list(dict.fromkeys(out))


def build_cases(
    split: Split,
    config: ExperimentConfig,
    users: Sequence[str],
    retriever_factory: RetrieverFactory | None = None,
) -> list[EvalCase]:
    """Evaluation cases of `users` (in that order) under the config's protocol.

    Args:
        split: the leave-one-out split.
        config: the experiment (protocol, seed).
        users: user ids, each with a target in the split.
        retriever_factory: ``(name, options) -> Retriever`` fit on the train split; needed by the retrieved
            protocol.

    Raises:
        ConfigError: the protocol needs more negatives than some user has unseen items, or the retrieved
            protocol has no retriever factory.
    """
    dataset = split.dataset
    targets = {x.user_id: x for x in (split.test if config.split.target == "test" else split.valid)}
    train_counts: dict[str, int] = {}
    for x in split.train:
        train_counts[x.item_id] = train_counts.get(x.item_id, 0) + 1
    protocol = config.protocol
    retriever: Any = None
    if protocol.kind == "retrieved":
        if retriever_factory is None:
            raise ConfigError("the retrieved protocol needs a retriever")
        retriever = retriever_factory(protocol.retriever, dict(protocol.retriever_options))
    all_items = sorted(dataset.items)
    missing = [u for u in users if u not in targets]
    if missing:
        raise ConfigError(f"user {missing[0]!r} has no {config.split.target} target in the split")
    histories = {u: tuple(x.item_id for x in split.history_before(targets[u])) for u in users}
    retrieved: dict[str, list[Any]] = {}
    if retriever is not None:  # all users at once: batched where the retriever can
        from llmrec.retrieval import retrieve_many

        lists = retrieve_many(retriever, [histories[u] for u in users], protocol.k)
        retrieved = dict(zip(users, lists, strict=True))
    cases = []
    for user in users:
        target = targets[user]
        history = histories[user]
        if protocol.kind == "retrieved":
            candidates = tuple(c.item_id for c in retrieved[user])
            index = candidates.index(target.item_id) if target.item_id in candidates else None
        elif protocol.negatives_from == "disliked":
            pool = _disliked_after(dataset, target, PositivePolicy(config.split.positive_min_rating))
            if len(pool) < protocol.negatives:
                raise ConfigError(f"user {user!r} rated fewer than {protocol.negatives} items low after the target")
            rng = random.Random(f"llmrec-eval-negatives:{config.seed}:{user}")
            shown = [target.item_id, *rng.sample(pool, protocol.negatives)]
            rng.shuffle(shown)
            candidates, index = tuple(shown), shown.index(target.item_id)
        else:
            candidates, index = _sampled(
                dataset, user, target.item_id, all_items, protocol.negatives, config.seed
            )
        cases.append(
            EvalCase(
                user_id=user,
                history=history,
                target=target.item_id,
                candidates=candidates,
                target_index=index,
                target_train_count=train_counts.get(target.item_id, 0),
            )
        )
    return cases


def _sampled(
    dataset: Dataset, user: str, target: str, all_items: list[str], negatives: int, seed: int
) -> tuple[tuple[str, ...], int]:
    seen = {x.item_id for x in dataset.history(user)}
    unseen = [i for i in all_items if i not in seen]
    if len(unseen) < negatives:
        raise ConfigError(
            f"the protocol needs {negatives} negatives but user {user!r} has only {len(unseen)} items they never "
            f"interacted with in {dataset.name!r}; lower protocol.negatives"
        )
    rng = random.Random(f"llmrec-eval-negatives:{seed}:{user}")
    candidates = [target, *rng.sample(unseen, negatives)]
    rng.shuffle(candidates)
    return tuple(candidates), candidates.index(target)


def slice_membership(case: EvalCase, config: ExperimentConfig) -> dict[str, bool]:
    """Which report slices the case belongs to (``all`` always)."""
    out = {
        "all": True,
        "cold_items": case.target_train_count <= config.slices.cold_item_max_train,
        "short_history": len(case.history) <= config.slices.short_history_max,
    }
    if config.protocol.kind == "retrieved":
        out["target_retrieved"] = case.target_present
    return out
