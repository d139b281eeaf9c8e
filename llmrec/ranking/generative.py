"""Generative ranking: the model writes the ranked list; a robust parser reads it (RankGPT style).

The parser accepts labels (``C > A > B``, ``[C], [A]``, one per line ...), item ids and titles, drops
duplicates, and appends candidates the model did not name in their input order. An output that does not name
every candidate exactly once is counted as malformed (`ScoreResult.parse_failures`), never hidden.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from llmrec.ranking.base import ScoreResult, Timer, check_context, check_prompts, encode

if TYPE_CHECKING:
    from llmrec.models import LoadedModel
    from llmrec.prompts import RenderedPrompt

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ParsedRanking:
    """A parsed generated ranking.

    Attributes:
        order: indices into the candidate list, best first; always a permutation of all candidates.
        named: how many distinct candidates the output named (the rest were appended in input order).
        duplicates: how many times the output named a candidate it had already named.
        unknown: label-like tokens that matched no candidate (e.g. a label beyond the last one shown).
    """

    order: tuple[int, ...]
    named: int
    duplicates: int
    unknown: tuple[str, ...]

    @property
    def malformed(self) -> bool:
        """True unless the output named every candidate exactly once and nothing else label-like."""
        return self.named < len(self.order) or self.duplicates > 0 or bool(self.unknown)


def _label_pattern(labels: Sequence[str]) -> re.Pattern[str]:
    def one(label: str) -> str:
        # "A" or "I" followed by a lower-case word is the article/pronoun of a sentence, not a label.
        guard = r"(?!\s+[a-z])" if label in ("A", "I") else ""
        return rf"{re.escape(label)}(?![A-Za-z0-9]){guard}"

    alternatives = "|".join(one(label) for label in sorted(labels, key=len, reverse=True))
    # A label stands alone, not inside a word or a number.
    return re.compile(rf"(?<![A-Za-z0-9])({alternatives})")


def parse_ranking(
    text: str,
    labels: Sequence[str],
    candidate_ids: Sequence[str],
    titles: Mapping[str, str] | None = None,
) -> ParsedRanking:
    """Read a generated ranking of the candidates shown with `labels`.

    Args:
        text: the generated text.
        labels: the label of each candidate, in the order shown.
        candidate_ids: the candidates' item ids, same order.
        titles: optional item id -> title; titles named in the text count too (case-insensitive).

    Example:
        >>> parse_ranking("C > A > C", ["A", "B", "C"], ["10", "20", "30"]).order
        (2, 0, 1)
    """
    if len(labels) != len(candidate_ids):
        raise ValueError(f"{len(labels)} labels for {len(candidate_ids)} candidates")
    matches: list[tuple[int, int, int]] = []  # (start, end, candidate index)
    lowered = text.lower()
    taken: list[tuple[int, int]] = []
    if titles:
        # Longest titles first, so "Godfather Part II" wins over "Godfather" where both fit.
        by_len = sorted(
            ((str(titles[c]).lower(), n) for n, c in enumerate(candidate_ids) if titles.get(c)),
            key=lambda x: -len(x[0]),
        )
        for title, n in by_len:
            if len(title) < 3:
                continue
            for m in re.finditer(re.escape(title), lowered):
                span = (m.start(), m.end())
                if not any(s < span[1] and span[0] < e for s, e in taken):
                    matches.append((span[0], span[1], n))
                    taken.append(span)
    label_index = {label: n for n, label in enumerate(labels)}
    for m in _label_pattern(labels).finditer(text):
        if not any(s < m.end() and m.start() < e for s, e in taken):
            matches.append((m.start(), m.end(), label_index[m.group(1)]))
    id_index = {c: n for n, c in enumerate(candidate_ids) if c not in label_index}
    # Item ids are a fallback for outputs that name no label and no title: numeric ids would otherwise match
    # any number in prose ("20 movies").
    if id_index and not matches:
        ids_alt = "|".join(re.escape(c) for c in sorted(id_index, key=len, reverse=True))
        for m in re.finditer(rf"(?<![A-Za-z0-9])({ids_alt})(?![A-Za-z0-9])", text):
            if not any(s < m.end() and m.start() < e for s, e in taken):
                matches.append((m.start(), m.end(), id_index[m.group(1)]))
    matches.sort()
    order: list[int] = []
    seen: set[int] = set()
    duplicates = 0
    for _, _, n in matches:
        if n in seen:
            duplicates += 1
            continue
        seen.add(n)
        order.append(n)
    named = len(order)
    order.extend(n for n in range(len(candidate_ids)) if n not in seen)
    unknown = _unknown_labels(text, labels, taken)
    return ParsedRanking(order=tuple(order), named=named, duplicates=duplicates, unknown=unknown)


def _unknown_labels(text: str, labels: Sequence[str], taken: Sequence[tuple[int, int]]) -> tuple[str, ...]:
    """Tokens shaped like the labels (single capitals or small numbers) that are not among them."""
    if all(label.isalpha() and len(label) == 1 and label.isupper() for label in labels):
        shape = re.compile(r"(?<![A-Za-z0-9])([A-Z])(?![A-Za-z0-9])")
    elif all(label.isdigit() for label in labels):
        shape = re.compile(r"(?<![A-Za-z0-9])(\d{1,2})(?![A-Za-z0-9])")
    else:
        return ()
    known = set(labels)
    found = []
    for m in shape.finditer(text):
        if m.group(1) in known or any(s < m.end() and m.start() < e for s, e in taken):
            continue
        if m.group(1) in ("A", "I") and re.match(r"\s+[a-z]", text[m.end() :]):
            continue  # an article / pronoun
        found.append(m.group(1))
    return tuple(found)


class GenerativeScorer:
    """Greedy-decodes a ranked list and parses it; scores are rank-based (n for the best, 1 for the last).

    Args:
        lm: the loaded model.
        max_new_tokens: tokens to generate; None = 4 per candidate + 8.
        titles: item id -> title, to also accept titles in the output.
    """

    #: Bump when this scorer computes other scores from the same prompts (caches and the score memo key on it).
    VERSION = 1

    mode = "generative"

    def __init__(
        self, lm: LoadedModel, max_new_tokens: int | None = None, titles: Mapping[str, str] | None = None
    ) -> None:
        self.lm = lm
        self.max_new_tokens = max_new_tokens
        self.titles = titles

    def score_many(self, batch: Sequence[Sequence[RenderedPrompt]]) -> list[ScoreResult]:
        return [self.score(prompts) for prompts in batch]

    def score(self, prompts: Sequence[RenderedPrompt]) -> ScoreResult:
        import torch

        check_prompts(prompts, self.mode)
        prompt = prompts[0]
        n = len(prompt.candidate_ids)
        budget = self.max_new_tokens or 4 * n + 8
        ids = encode(self.lm, prompt)
        check_context(self.lm, len(ids), extra=budget, what=f"generative prompt ({n} candidates)")
        tok = self.lm.tokenizer
        input_ids = torch.tensor([ids], dtype=torch.long, device=self.lm.device)
        with Timer() as timer, torch.inference_mode():
            out = self.lm.model.generate(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                max_new_tokens=budget,
                do_sample=False,
                num_beams=1,
                pad_token_id=tok.pad_token_id,
            )
        new = out[0, len(ids) :].tolist()
        text = tok.decode(new, skip_special_tokens=True)
        parsed = parse_ranking(text, prompt.labels, prompt.candidate_ids, self.titles)
        if parsed.malformed:
            log.debug(
                "malformed generated ranking (%d/%d named, %d duplicates): %r",
                parsed.named,
                n,
                parsed.duplicates,
                text,
            )
        scores = [0.0] * n
        for position, idx in enumerate(parsed.order):
            scores[idx] = float(n - position)
        return ScoreResult(
            candidate_ids=tuple(prompt.candidate_ids),
            scores=tuple(scores),
            score_kind="rank",
            forward_passes=max(1, len(new)),
            prompt_tokens=len(ids),
            encoded_tokens=len(ids) + len(new),
            parse_failures=int(parsed.malformed),
            raw_output=text,
            seconds=timer.seconds,
            details={
                "generated_tokens": len(new),
                "named": parsed.named,
                "duplicates": parsed.duplicates,
                "unknown_labels": list(parsed.unknown),
            },
        )
