"""Training and validation examples from a dataset split, leakage-proof and seeded.

Two stages, so the sampling can be checked without a tokenizer:

1. `sample_training_specs` / `sample_validation_specs` choose *which* (user, history, target, candidates) tuples
   to build. Training targets are earlier positions of each user's *training* sequence; the history is what came
   before that position; negatives are items the user never interacted with at all (so neither the user's
   validation nor test item can ever appear in one of its training examples, not even as a negative).
   Validation targets are the split's validation interactions (never test ones).
2. `render_examples` renders each spec with the *same* `PromptBuilder` the rankers use, and finds the answer
   token: the target's label letter (listwise) or the Yes/No word (pointwise).

Example:
    >>> specs = sample_training_specs(split, mode="listwise", n_negatives=19, seed=0)  # doctest: +SKIP
    >>> examples = render_examples(specs, builder, lm, mode="listwise")  # doctest: +SKIP
    >>> examples[0].answer_id in examples[0].choice_ids  # doctest: +SKIP
    True
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tqdm.auto import tqdm

from llmrec.data.dataset import PositivePolicy
from llmrec.data.splits import Split
from llmrec.errors import ConfigError, LlmrecError

log = logging.getLogger(__name__)

DEFAULT_POLICY = PositivePolicy(4.0)


class NotEnoughDataError(LlmrecError):
    """The dataset or split is too small to build any example with the requested settings."""


@dataclass(frozen=True)
class ExampleSpec:
    """What one example shows, before rendering.

    Attributes:
        user_id: whose sequence it comes from.
        history: item ids before the target, oldest first.
        target: the held-out item at this position (the positive).
        candidates: listwise / validation: target and negatives in the order they are shown (shuffled);
            pointwise training: the single candidate of this example.
        label: pointwise training: whether the candidate is the positive; None otherwise.
        user_items: training: the user's liked items in the training split, left out of the collaborative
            evidence shown in the prompt (the target is one of them; see `llmrec.knowledge.interactions`).
    """

    user_id: str
    history: tuple[str, ...]
    target: str
    candidates: tuple[str, ...]
    label: bool | None = None
    user_items: tuple[str, ...] = ()


@dataclass(frozen=True)
class TrainExample:
    """A rendered example: the prompt text, the answer token and the tokens the answer is chosen among."""

    text: str
    input_ids: tuple[int, ...]
    answer_id: int
    choice_ids: tuple[int, ...]
    spec: ExampleSpec
    offset: float = 0.0  # added to the first choice's logit in the loss (`candidate_offsets`)

    @property
    def n_tokens(self) -> int:
        return len(self.input_ids)


# ---- negatives --------------------------------------------------------------------------------------------------


class NegativeSampler:
    """Negatives for a user: items the user never interacted with (in any part of the split).

    Args:
        split: the split; retrievers are fitted on its training part only.
        source: "random" (uniform), "popularity" (weighted by training popularity) or a retriever name
            ("cooc", "dense", ...) passed to `llmrec.retrieval.build_retriever` for hard negatives, topped up
            with uniform ones when the retriever returns too few.
        pool: hard negatives are drawn uniformly from the retriever's top `pool` unseen items (default: the top
            ones are taken in order), so they are plausible without all being the single hardest item.
        hard: how many of each user's negatives come from the retriever (default: all); the rest are uniform,
            so a model still sees easy negatives next to the hard ones.
        retriever_options: extra keyword arguments for `build_retriever`.
    """

    def __init__(
        self,
        split: Split,
        source: str = "random",
        *,
        pool: int | None = None,
        hard: int | None = None,
        **retriever_options: Any,
    ) -> None:
        for key, value in (("pool", pool), ("hard", hard)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ConfigError(f"negatives.{key} must be a non-negative integer, got {value!r}")
        self.split = split
        self.source = source
        self.pool = pool
        self.hard = hard
        self._items = sorted(split.dataset.items)
        self._retriever: Any = None
        self._pop_weights: list[float] | None = None
        if source == "popularity":
            pop = split.train_dataset.item_popularity
            self._pop_weights = [float(pop.get(i, 0)) + 1.0 for i in self._items]
        elif source != "random":
            from llmrec.retrieval import build_retriever

            self._retriever = build_retriever(source, split.train_dataset, **retriever_options)

    def seen(self, user_id: str) -> set[str]:
        """Every item of the user in the whole dataset (train, validation and test): never a negative."""
        return {x.item_id for x in self.split.dataset.history(user_id)}

    def sample(self, user_id: str, history: Sequence[str], n: int, rng: random.Random) -> list[str]:
        """`n` distinct negatives for `user_id` (fewer only if the catalogue is exhausted, then raises)."""
        seen = self.seen(user_id)
        out: list[str] = []
        if self._retriever is not None:
            n_hard = n if self.hard is None else min(self.hard, n)
            depth = max(n_hard, self.pool or 0)
            ranked = self._retriever.retrieve(list(history), depth + len(seen), exclude=seen)
            top = [c.item_id for c in ranked if c.item_id not in seen][:depth]
            out = rng.sample(top, min(n_hard, len(top))) if self.pool else top[:n_hard]
        pool_size = len(self._items) - len(seen)
        if pool_size < n:
            raise NotEnoughDataError(
                f"user {user_id!r}: only {pool_size} unseen items in the catalogue, {n} negatives requested"
            )
        chosen = set(out)
        while len(out) < n:
            if self._pop_weights is not None:
                item = rng.choices(self._items, weights=self._pop_weights, k=1)[0]
            else:
                item = self._items[rng.randrange(len(self._items))]
            if item not in seen and item not in chosen:
                chosen.add(item)
                out.append(item)
        return out


# ---- sampling which examples to build ---------------------------------------------------------------------------


def _shuffled(items: Sequence[str], rng: random.Random) -> tuple[str, ...]:
    out = list(items)
    rng.shuffle(out)
    return tuple(out)


def training_positions(
    split: Split,
    *,
    policy: PositivePolicy | None = None,
    min_history: int = 5,
    max_users: int | None = None,
    positions_per_user: int | None = None,
    seed: int = 0,
) -> list[tuple[str, int]]:
    """(user, position) pairs of the training part whose item is positive and has `min_history` items before it.

    Positions index the user's *training* sequence (`split.train_dataset.history(user)`), so the validation and
    test interactions are never targets nor history. Users and positions are sampled with `seed`.
    """
    rng = random.Random(seed)
    train = split.train_dataset
    users = train.user_ids
    if max_users is not None and max_users < len(users):
        users = sorted(rng.sample(users, max_users))
    pairs: list[tuple[str, int]] = []
    for user in users:
        history = train.history(user)
        positions = [
            n for n, x in enumerate(history) if n >= min_history and (policy is None or policy.is_positive(x))
        ]
        if positions_per_user is not None and len(positions) > positions_per_user:
            positions = sorted(rng.sample(positions, positions_per_user))
        pairs.extend((user, n) for n in positions)
    return pairs


def sample_training_specs(
    split: Split,
    *,
    mode: str,
    n_negatives: int,
    negatives: NegativeSampler | None = None,
    policy: PositivePolicy | None = DEFAULT_POLICY,
    min_history: int = 5,
    max_history: int = 20,
    max_users: int | None = None,
    positions_per_user: int | None = None,
    max_examples: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> list[ExampleSpec]:
    """Choose the training examples (seeded, leakage-proof; see the module docstring).

    Listwise: one spec per position, candidates = target + `n_negatives`, shuffled. Pointwise: per position one
    positive spec (label True) and `n_negatives` negative specs (label False).

    Raises:
        NotEnoughDataError: no position qualifies (too few users/interactions for `min_history`).
    """
    if mode not in ("listwise", "pointwise"):
        raise ConfigError(f"mode: expected 'listwise' or 'pointwise', got {mode!r}")
    pairs = training_positions(
        split,
        policy=policy,
        min_history=min_history,
        max_users=max_users,
        positions_per_user=positions_per_user,
        seed=seed,
    )
    rng = random.Random(seed + 1)
    if max_examples is not None and len(pairs) > max_examples:
        pairs = sorted(rng.sample(pairs, max_examples))
    if not pairs:
        raise NotEnoughDataError(
            f"no training example can be built from dataset {split.dataset.name!r}: no user has a positive "
            f"training interaction with at least {min_history} interactions before it (lower data.min_history, "
            "data.min_rating, or use a bigger dataset)"
        )
    negatives = negatives or NegativeSampler(split)
    train = split.train_dataset
    specs: list[ExampleSpec] = []
    for user, pos in tqdm(pairs, desc="sampling examples", leave=False, disable=not progress or len(pairs) < 200):
        seq = train.history(user)
        history = tuple(x.item_id for x in seq[max(0, pos - max_history) : pos])
        target = seq[pos].item_id
        negs = negatives.sample(user, history, n_negatives, rng)
        own = tuple(x.item_id for x in seq if policy is None or policy.is_positive(x))
        if mode == "listwise":
            specs.append(ExampleSpec(user, history, target, _shuffled([target, *negs], rng), user_items=own))
        else:
            specs.append(ExampleSpec(user, history, target, (target,), label=True, user_items=own))
            specs.extend(
                ExampleSpec(user, history, target, (neg,), label=False, user_items=own) for neg in negs
            )
    rng.shuffle(specs)
    return specs


def sample_validation_specs(
    split: Split,
    *,
    users: int,
    n_negatives: int,
    max_history: int = 20,
    seed: int = 0,
    negatives: NegativeSampler | None = None,
) -> list[ExampleSpec]:
    """Validation groups: a sample of the split's validation targets, each with `n_negatives` random negatives.

    The history is every interaction before the validation target (all in the training part). The candidates
    are shuffled with the seed, so the same seed gives the same sample and the same negatives: compare models on
    exactly the same groups.
    """
    if users <= 0:
        return []
    rng = random.Random(seed + 7919)
    targets = sorted(split.valid, key=lambda x: (x.user_id, x.timestamp))
    if len(targets) > users:
        targets = sorted(rng.sample(targets, users), key=lambda x: (x.user_id, x.timestamp))
    negatives = negatives or NegativeSampler(split)
    specs = []
    for target in targets:
        before = split.history_before(target)
        history = tuple(x.item_id for x in before[-max_history:])
        if not history:
            continue
        negs = negatives.sample(target.user_id, history, n_negatives, rng)
        specs.append(ExampleSpec(target.user_id, history, target.item_id, _shuffled([target.item_id, *negs], rng)))
    return specs


# ---- first-stage offsets (boosting) ----------------------------------------------------------------------------


def candidate_offsets(
    specs: Sequence[ExampleSpec],
    split: Split,
    retriever: str,
    *,
    reference: int = 19,
    seed: int = 0,
    progress: bool = True,
) -> list[float]:
    """Per pointwise spec, `retriever`'s score of its candidate z-scored among the candidates of its position (same
    user and history) and `reference` uniform unseen items, with the user's own training interactions left out of
    the retriever's statistics (so a training target is scored as a test target would be).

    Raises:
        ConfigError: a spec is not a one-candidate (pointwise) spec.
    """
    from llmrec.retrieval import build_retriever
    from llmrec.stats import zscore

    scorer: Any = build_retriever(retriever, split.train_dataset)  # a CatalogueRetriever: scores as new
    sampler = NegativeSampler(split)
    train = split.train_dataset
    groups: dict[tuple[str, tuple[str, ...]], list[int]] = {}
    for n, spec in enumerate(specs):
        if len(spec.candidates) != 1:
            raise ConfigError(f"first-stage offsets are for pointwise specs (one candidate), got {len(spec.candidates)}")
        groups.setdefault((spec.user_id, spec.history), []).append(n)
    rng = random.Random(seed + 104729)
    offsets = [0.0] * len(specs)
    bar = tqdm(groups.items(), desc="first-stage offsets", leave=False, disable=not progress or len(groups) < 200)
    for (user, history), members in bar:
        shown = list(dict.fromkeys(specs[n].candidates[0] for n in members))
        others = [i for i in sampler.sample(user, history, reference + len(shown), rng) if i not in shown][:reference]
        own = [x.item_id for x in train.history(user)]
        z = zscore(scorer.score(list(history), shown + others, user_items=own))
        at = {item: float(z[k]) for k, item in enumerate(shown)}
        for n in members:
            offsets[n] = at[specs[n].candidates[0]]
    return offsets


# ---- rendering --------------------------------------------------------------------------------------------------


def order_specs(specs: Sequence[ExampleSpec], split: Split, order: str) -> list[ExampleSpec]:
    """Specs with their candidates listed in `order` ("given" keeps the shuffle; else a retriever name, fitted on
    the training split). Each user's own interactions with the candidates are left out of the retriever's scores,
    so a training target (which is in the training split) is placed the way an unseen test target would be."""
    from llmrec.ranking.order import GIVEN, check_candidate_order, order_candidates

    if check_candidate_order(order, "prompt.candidate_order") == GIVEN:
        return list(specs)
    from llmrec.retrieval import build_retriever

    train = split.train_dataset
    retriever = build_retriever(order, train)
    own: dict[str, set[str]] = {}
    out = []
    for spec in specs:
        if len(spec.candidates) < 2:
            out.append(spec)
            continue
        if spec.user_id not in own:
            own[spec.user_id] = {x.item_id for x in train.history(spec.user_id)}
        shown = order_candidates(retriever, spec.history, spec.candidates, user_items=own[spec.user_id])
        out.append(dataclasses.replace(spec, candidates=tuple(shown)))
    return out


def render_examples(
    specs: Sequence[ExampleSpec],
    builder: Any,
    lm: Any,
    *,
    mode: str,
    progress: bool = True,
) -> list[TrainExample]:
    """Render specs with the rankers' `PromptBuilder`; tokenize and find answer tokens exactly as the scorers do.

    Args:
        specs: from `sample_training_specs`.
        builder: an `llmrec.prompts.PromptBuilder` (its template's mode must equal `mode`).
        lm: the `LoadedModel` (anything with a ``tokenizer``); prompts are encoded with `llmrec.ranking.base.encode`
            and answers looked up with `llmrec.ranking.base.answer_ids`, the scorers' own helpers.
        mode: "listwise" or "pointwise".

    Raises:
        ConfigError: the builder's template mode differs from `mode`.
        LlmrecError: a prompt hides the target candidate.
    """
    from llmrec.ranking.base import answer_ids, encode

    template = builder.template
    if template.mode != mode:
        raise ConfigError(f"prompt.template: {template.name!r} is a {template.mode} template but mode is {mode!r}")
    out: list[TrainExample] = []
    for spec in tqdm(specs, desc="rendering prompts", disable=not progress or len(specs) < 50, leave=False):
        prompts = builder.build(list(spec.history), list(spec.candidates), user_items=spec.user_items)
        if not prompts:
            raise LlmrecError(f"prompt builder returned no prompt for user {spec.user_id!r}")
        prompt = prompts[0]
        if mode == "listwise":
            if spec.target not in prompt.candidate_ids:
                raise LlmrecError(
                    f"user {spec.user_id!r}: the prompt does not show target item {spec.target!r} "
                    f"(shown {len(prompt.candidate_ids)} of {len(spec.candidates)} candidates)"
                )
            choices = tuple(answer_ids(lm, prompt, prompt.labels))
            answer = choices[prompt.candidate_ids.index(spec.target)]
        else:
            choices = tuple(answer_ids(lm, prompt, prompt.answer_tokens))
            answer = choices[0] if spec.label else choices[1]
        ids = tuple(encode(lm, prompt))
        out.append(TrainExample(prompt.text, ids, answer, choices, spec))
    return out


def label_prior_loss(examples: Sequence[TrainExample]) -> float:
    """The training loss (nats) of a model that answers with the answers' frequencies and reads nothing of the
    prompts: the entropy of the answer tokens over `examples` (listwise: the target's label letters; pointwise:
    Yes/No). A training loss that stays near it has learned the label prior, not the prompts."""
    counts: dict[int, int] = {}
    for example in examples:
        counts[example.answer_id] = counts.get(example.answer_id, 0) + 1
    total = sum(counts.values())
    return -sum(c / total * math.log(c / total) for c in counts.values()) if total else float("nan")


def leaked_items(split: Split, specs: Sequence[ExampleSpec]) -> list[tuple[str, str]]:
    """(user, item) pairs where a user's validation or test item appears anywhere in its training specs.

    An item the user also consumed within its training part (repeat consumption) is not a leak: it is known from
    training anyway. Used by tests and as a guard before training; an empty list means no leak.
    """
    train = split.train_dataset
    held: dict[str, set[str]] = {}
    for x in (*split.valid, *split.test):
        held.setdefault(x.user_id, set()).add(x.item_id)
    leaks: list[tuple[str, str]] = []
    for spec in specs:
        bad = held.get(spec.user_id, set()) & {*spec.history, spec.target, *spec.candidates}
        if bad:
            known = {x.item_id for x in train.history(spec.user_id)}
            leaks.extend((spec.user_id, item) for item in sorted(bad - known))
    return leaks
