"""What every scorer shares: the `Scorer` protocol, `ScoreResult`, errors, and model-call helpers.

A scorer turns the prompt(s) `PromptBuilder.build` rendered for ONE (history, candidates) pair into one score
per candidate (higher = better). Listwise and generative scorers take one prompt; pointwise takes one per
candidate.
"""

from __future__ import annotations

import functools
import inspect
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from llmrec.errors import ConfigError, LlmrecError

if TYPE_CHECKING:
    from llmrec.models import LoadedModel
    from llmrec.prompts import RenderedPrompt

#: How a score is to be read. Scores of one kind are comparable across prompts of that kind.
SCORE_KINDS = ("label_logprob", "yes_no_margin", "rank")


class RankingError(LlmrecError):
    """A ranking request cannot be served as asked (bad candidates, bad prompts)."""


class ContextLengthError(RankingError):
    """A prompt (plus any tokens to generate) is longer than the model's context window."""


class NonFiniteLogitsError(RankingError):
    """The model produced NaN/inf logits where scores are read; ranking on them would be silently wrong."""


@dataclass(frozen=True)
class ScoreResult:
    """The scores of one candidate set.

    Attributes:
        candidate_ids: the candidates, in the order they were shown.
        scores: one score per candidate (higher = better), aligned with `candidate_ids`.
        score_kind: one of `SCORE_KINDS`.
        forward_passes: model forward calls spent (a batched call counts once; each generated token counts one).
        prompt_tokens: tokens of the rendered prompt(s), as the model would see each one on its own.
        encoded_tokens: tokens actually pushed through the model (less than `prompt_tokens` with a prefix cache).
        parse_failures: generative: 1 if the output did not name every candidate exactly once, else 0.
        raw_output: generative: the generated text.
        seconds: wall time of the scoring.
    """

    candidate_ids: tuple[str, ...]
    scores: tuple[float, ...]
    score_kind: str
    forward_passes: int
    prompt_tokens: int
    encoded_tokens: int
    parse_failures: int = 0
    raw_output: str | None = None
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Scorer(Protocol):
    """Scores the candidates of the prompt(s) rendered for one (history, candidates) pair."""

    mode: str

    def score(self, prompts: Sequence[RenderedPrompt]) -> ScoreResult: ...

    def score_many(self, batch: Sequence[Sequence[RenderedPrompt]]) -> list[ScoreResult]: ...


# ------------------------------------------------------------------------------------------------ helpers


def encode(lm: LoadedModel, prompt: RenderedPrompt) -> list[int]:
    """Token ids of a prompt as the model sees it."""
    add_special = bool(getattr(prompt, "add_special_tokens", False))
    return list(lm.tokenizer(prompt.text, add_special_tokens=add_special)["input_ids"])


def check_context(lm: LoadedModel, n_tokens: int, extra: int = 0, what: str = "prompt") -> None:
    """Raise `ContextLengthError` when `n_tokens` (+ `extra` tokens to generate) do not fit the model."""
    limit = lm.context_length
    if n_tokens + extra > limit:
        more = f" + {extra} tokens to generate" if extra else ""
        raise ContextLengthError(
            f"{what} has {n_tokens} tokens{more}, more than the model's context of {limit}; show fewer candidates, "
            "lower the history/fact budgets, or use a model with a longer context"
        )


def answer_ids(lm: LoadedModel, prompt: RenderedPrompt, words: Sequence[str]) -> list[int]:
    """The single token id of each answer word right after this prompt (the builder's check, or recomputed)."""
    ids = tuple(getattr(prompt, "answer_token_ids", ()) or ())
    if ids and len(ids) == len(prompt.answer_tokens) and tuple(words) == tuple(prompt.answer_tokens):
        return list(ids)
    from llmrec.prompts import label_token_ids

    return label_token_ids(lm.tokenizer, list(words), context=prompt.text[-64:])


@functools.lru_cache(maxsize=32)
def _forward_params(cls: Any) -> frozenset[str]:
    return frozenset(inspect.signature(cls.forward).parameters)


def base_model(model: Any) -> Any:
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def cache_kwarg(model: Any) -> str:
    """Name of the KV-cache argument of the model's forward (``cache`` since transformers 5.x)."""
    params = _forward_params(type(base_model(model)))  # type: ignore[arg-type]
    return "cache" if "cache" in params else "past_key_values"


def supports_logits_to_keep(model: Any) -> bool:
    return "logits_to_keep" in _forward_params(type(base_model(model)))  # type: ignore[arg-type]


def output_cache(output: Any) -> Any:
    cache = getattr(output, "cache", None)
    return cache if cache is not None else getattr(output, "past_key_values", None)


def check_finite(values: Sequence[float], what: str) -> None:
    bad = [n for n, v in enumerate(values) if not math.isfinite(v)]
    if bad:
        raise NonFiniteLogitsError(
            f"{what}: the model returned non-finite logits (NaN/inf) at {len(bad)} of {len(values)} scored positions; "
            "the model weights or the quantisation are broken for this input, refusing to rank on them"
        )


def check_prompts(prompts: Sequence[RenderedPrompt], mode: str) -> None:
    """Validate the prompts handed to a scorer (shape, not content)."""
    if not prompts:
        raise RankingError(f"{mode} scorer: no prompts to score (empty candidate list?)")
    if mode in ("listwise", "generative"):
        if len(prompts) != 1:
            raise RankingError(f"{mode} scorer takes one prompt per candidate set, got {len(prompts)}")
        p = prompts[0]
        if not p.candidate_ids:
            raise RankingError(f"{mode} scorer: the prompt shows no candidates")
        if len(p.labels) != len(p.candidate_ids):
            raise RankingError(
                f"{mode} scorer: the prompt has {len(p.labels)} labels for {len(p.candidate_ids)} candidates"
            )
        if len(set(p.labels)) != len(p.labels):
            raise RankingError(f"{mode} scorer: duplicate labels {p.labels}")
    else:
        for p in prompts:
            if len(p.candidate_ids) != 1:
                raise RankingError(
                    f"pointwise scorer: each prompt must show one candidate, got {p.candidate_ids}"
                )
            if len(p.answer_tokens) != 2:
                raise ConfigError(f"pointwise scorer: need (yes, no) answer words, got {p.answer_tokens}")
    ids = [c for p in prompts for c in p.candidate_ids]
    if len(set(ids)) != len(ids):
        dupes = sorted({c for c in ids if ids.count(c) > 1})
        raise RankingError(f"{mode} scorer: duplicate candidate id(s) {dupes}")


class Timer:
    """``with Timer() as t: ...; t.seconds``."""

    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start
