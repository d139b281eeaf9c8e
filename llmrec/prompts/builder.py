"""Build the prompts a model sees from a (history, candidates) pair, a template and optionally a knowledge graph."""

from __future__ import annotations

import logging
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from llmrec.errors import ConfigError
from llmrec.prompts.labels import choose_labels, label_token_ids
from llmrec.prompts.settings import DEFAULT_SETTINGS
from llmrec.prompts.templates import PromptTemplate, load_template
from llmrec.types import Candidate, Interaction

if TYPE_CHECKING:
    from llmrec.data.dataset import Dataset
    from llmrec.knowledge import KnowledgeGraph

log = logging.getLogger(__name__)

#: Bump when the builder renders other prompts from the same template, settings and data (the template text is
#: keyed separately): evaluation caches key on it.
PROMPT_VERSION = 1
_WS = re.compile(r"\s+")


@dataclass(frozen=True)
class RenderedPrompt:
    """One prompt, ready for the model.

    Attributes:
        text: the final text (chat template already applied for chat models). It ends exactly where the answer
            begins: the next token the model predicts is a label (listwise), a yes/no word (pointwise) or the
            start of the generated list (generative).
        n_tokens: ``len(tokenizer(text, add_special_tokens=add_special_tokens).input_ids)``.
        candidate_ids: the candidates shown, in the order shown.
        labels: listwise/generative: the label of each shown candidate ("A", "B", ...); pointwise: ().
        answer_tokens: pointwise: the (positive, negative) answer words; listwise: the labels; generative: labels.
        facts: per shown candidate id, the KG sentences shown to the model (empty tuples without knowledge).
        metadata: template, mode, chat, history_shown, history_total, history_truncated, history_omitted,
            history_tokens, fact_tokens, ...
        answer_token_ids: the single token id of each answer token as it follows `text` (checked).
        add_special_tokens: pass this to the tokenizer when encoding `text` (False when a chat template already
            put the special tokens in the text).
    """

    text: str
    n_tokens: int
    candidate_ids: tuple[str, ...]
    labels: tuple[str, ...]
    answer_tokens: tuple[str, ...]
    facts: Mapping[str, tuple[str, ...]]
    metadata: Mapping[str, object]
    answer_token_ids: tuple[int, ...] = ()
    add_special_tokens: bool = False


@dataclass(frozen=True)
class _HistoryView:
    entries: list[dict[str, Any]]
    total: int
    tokens: int


@dataclass
class PromptBuilder:
    """Render prompts for one dataset, tokenizer and template.

    Args:
        dataset: items (titles, years, genres) are looked up here.
        tokenizer: the model's Hugging Face tokenizer; used for chat templates, token budgets and label checks.
        template: a `PromptTemplate` or the name of one (see `load_template`).
        knowledge: a `KnowledgeGraph` to select facts from (templates with ``knowledge: true`` show them).
        history_budget: most tokens the history list may take; the oldest items are dropped first.
        fact_budget: most tokens of KG facts per prompt (over all its candidates).
        facts_per_candidate: most facts shown per candidate.
        max_history: most history items shown, whatever the budget.
        show_ratings: show the user's rating next to history items when known.
        chat: apply the tokenizer's chat template; None means "if the tokenizer has one".
        search_dirs: extra template folders when `template` is a name.

    Example:
        >>> builder = PromptBuilder(ds, tok, "listwise_kg", knowledge=kg)  # doctest: +SKIP
        >>> [p] = builder.build(["1", "50"], ["181", "172", "100"])  # doctest: +SKIP
        >>> p.labels  # doctest: +SKIP
        ('A', 'B', 'C')
    """

    dataset: Dataset
    tokenizer: Any
    template: PromptTemplate | str
    knowledge: KnowledgeGraph | None = None
    history_budget: int = DEFAULT_SETTINGS.history_budget
    fact_budget: int = DEFAULT_SETTINGS.fact_budget
    facts_per_candidate: int = DEFAULT_SETTINGS.facts_per_candidate
    max_history: int = DEFAULT_SETTINGS.max_history
    show_ratings: bool = DEFAULT_SETTINGS.show_ratings
    chat: bool | None = None
    search_dirs: Sequence[str | Path] = ()
    _labels: tuple[str, ...] = field(init=False, repr=False, default=())
    _answer_ids: dict[str, int] = field(init=False, repr=False, default_factory=dict)
    _specials: tuple[str, ...] = field(init=False, repr=False, default=())

    def __post_init__(self) -> None:
        if isinstance(self.template, (str, Path)):
            self.template = load_template(self.template, self.search_dirs)
        for name in ("history_budget", "fact_budget", "facts_per_candidate", "max_history"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"PromptBuilder.{name} must be a non-negative integer, got {value!r}")
        if self.chat is None:
            self.chat = bool(getattr(self.tokenizer, "chat_template", None))
        elif self.chat and not getattr(self.tokenizer, "chat_template", None):
            raise ConfigError("PromptBuilder.chat is True but the tokenizer has no chat template")
        self._specials = special_strings(self.tokenizer)
        context = self._answer_context()
        tpl = self.template
        if tpl.mode == "pointwise":
            answers: tuple[str, ...] = tpl.answer_words
        else:
            assert tpl.max_candidates is not None
            self._labels = choose_labels(self.tokenizer, tpl.max_candidates, tpl.label_style, context)
            answers = self._labels
        self._answer_ids = dict(zip(answers, label_token_ids(self.tokenizer, answers, context)))

    # -- public -------------------------------------------------------------------------------------------------

    @property
    def mode(self) -> str:
        return self.tpl.mode

    @property
    def tpl(self) -> PromptTemplate:
        assert isinstance(self.template, PromptTemplate)
        return self.template

    @property
    def labels(self) -> tuple[str, ...]:
        """All labels this builder may use (listwise/generative), in order."""
        return self._labels

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` without special tokens (the unit of every budget)."""
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def build(
        self,
        history: Sequence[str | Interaction],
        candidates: Sequence[str | Candidate],
        *,
        user_items: Collection[str] = (),
    ) -> list[RenderedPrompt]:
        """Render the prompt(s) for a user history (oldest first) and candidates (in the order to show).

        Listwise and generative: one prompt. Pointwise: one prompt per candidate, in candidate order, sharing
        the same prefix (instructions and history first, the candidate at the end). `user_items`: the user's own
        items in the interactions behind the graph's collaborative evidence, left out of it (training examples,
        whose targets are in those interactions).

        Raises:
            UnknownIdError: an id is not in the dataset.
            ConfigError: no candidates, duplicates, or more than the template's ``max_candidates``.
        """
        tpl = self.tpl
        cand_ids = [c.item_id if isinstance(c, Candidate) else str(c) for c in candidates]
        hist_ids = [h.item_id if isinstance(h, Interaction) else str(h) for h in history]
        self.dataset.check_items(cand_ids)
        self.dataset.check_items(hist_ids)
        if not cand_ids:
            raise ConfigError(f"template {tpl.name!r}: no candidates to show")
        if len(set(cand_ids)) != len(cand_ids):
            dupes = sorted({c for c in cand_ids if cand_ids.count(c) > 1})
            raise ConfigError(f"duplicate candidate id(s): {', '.join(dupes)}")
        if tpl.max_candidates is not None and len(cand_ids) > tpl.max_candidates:
            raise ConfigError(
                f"template {tpl.name!r} shows at most {tpl.max_candidates} candidates, got {len(cand_ids)}"
            )
        view = self._history_view(history)
        base_vars: dict[str, Any] = {
            "history": view.entries,
            "history_omitted": view.total - len(view.entries),
            "n_history": len(view.entries),
            "show_ratings": self.show_ratings,
            "knowledge": bool(tpl.knowledge and self.knowledge is not None),
        }
        base_meta: dict[str, object] = {
            "template": tpl.name,
            "mode": tpl.mode,
            "chat": self.chat,
            "history_total": view.total,
            "history_shown": len(view.entries),
            "history_omitted": view.total - len(view.entries),
            "history_truncated": len(view.entries) < view.total,
            "history_tokens": view.tokens,
        }
        # Facts connect candidates to the history the model can see, not to items it was never shown.
        hist_ids = [e["item_id"] for e in view.entries]
        if tpl.mode == "pointwise":
            return [self._pointwise(hist_ids, cid, base_vars, base_meta, user_items) for cid in cand_ids]
        facts, fact_tokens = self._facts(hist_ids, cand_ids, self.fact_budget, user_items)
        labels = self._labels[: len(cand_ids)]
        cands = [self._candidate(cid, label, facts.get(cid, ())) for cid, label in zip(cand_ids, labels)]
        variables = {
            **base_vars,
            "candidates": cands,
            "labels": list(labels),
            "n_candidates": len(cands),
            "first_label": labels[0],
            "last_label": labels[-1],
        }
        if tpl.mode == "generative":
            variables["output_format"] = tpl.output_format
        meta = {
            **base_meta,
            "fact_tokens": fact_tokens,
            "n_candidates": len(cands),
            "label_style": tpl.label_style,
        }
        if tpl.mode == "generative":
            meta["output_separator"] = tpl.output_separator
        return [self._finish(variables, tuple(cand_ids), labels, labels, facts, meta)]

    # -- pieces ---------------------------------------------------------------------------------------------------

    def _pointwise(
        self,
        hist_ids: list[str],
        cid: str,
        base_vars: dict[str, Any],
        base_meta: dict[str, object],
        user_items: Collection[str] = (),
    ) -> RenderedPrompt:
        tpl = self.tpl
        facts, fact_tokens = self._facts(hist_ids, [cid], self.fact_budget, user_items)
        variables = {
            **base_vars,
            "candidate": self._candidate(cid, "", facts.get(cid, ())),
            "yes_word": tpl.answer_words[0],
            "no_word": tpl.answer_words[1],
            "answer_words": list(tpl.answer_words),
        }
        meta = {**base_meta, "fact_tokens": fact_tokens, "n_candidates": 1}
        return self._finish(variables, (cid,), (), tpl.answer_words, facts, meta)

    def _finish(
        self,
        variables: dict[str, Any],
        cand_ids: tuple[str, ...],
        labels: tuple[str, ...],
        answers: tuple[str, ...],
        facts: Mapping[str, tuple[str, ...]],
        meta: dict[str, object],
    ) -> RenderedPrompt:
        text = self._wrap(self.tpl.render(variables).strip())
        n_tokens = len(self.tokenizer(text, add_special_tokens=not self.chat)["input_ids"])
        return RenderedPrompt(
            text=text,
            n_tokens=n_tokens,
            candidate_ids=cand_ids,
            labels=labels,
            answer_tokens=tuple(answers),
            facts=MappingProxyType({c: tuple(facts.get(c, ())) for c in cand_ids}),
            metadata=MappingProxyType(meta),
            answer_token_ids=tuple(self._answer_ids[a] for a in answers),
            add_special_tokens=not self.chat,
        )

    def _wrap(self, body: str) -> str:
        """Chat models: apply the chat template with the generation prompt. Base models: plain text ending with
        the answer cue on its own line. Either way the text ends right after a newline, where the answer goes."""
        tpl = self.tpl
        if self.chat:
            messages = [{"role": "user", "content": body}]
            if tpl.system:
                messages.insert(0, {"role": "system", "content": tpl.system})
            try:
                return str(
                    self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
                )
            except Exception as exc:  # some chat templates reject a system turn; fold it into the user turn
                if not tpl.system:
                    raise ConfigError(f"the tokenizer's chat template failed: {exc}") from exc
                merged = [{"role": "user", "content": f"{tpl.system}\n\n{body}"}]
                return str(
                    self.tokenizer.apply_chat_template(merged, tokenize=False, add_generation_prompt=True)
                )
        parts = [tpl.system, body] if tpl.system else [body]
        text = "\n\n".join(parts) + "\n"
        if tpl.answer_cue:
            text += tpl.answer_cue + "\n"
        return text

    def _answer_context(self) -> str:
        """The text every prompt of this builder ends with (for checking answer tokens in place)."""
        return self._wrap("x")

    def _clean(self, value: str) -> str:
        """Make a data value safe to show: one line, no special-token strings (which the tokenizer would turn
        into control tokens such as an end-of-turn)."""
        return without_specials(_WS.sub(" ", value).strip(), self._specials)

    def _history_view(self, history: Sequence[str | Interaction]) -> _HistoryView:
        entries: list[dict[str, Any]] = []
        used = 0
        recent = list(history)[::-1][: self.max_history]
        for h in recent:
            item_id = h.item_id if isinstance(h, Interaction) else str(h)
            rating = h.rating if isinstance(h, Interaction) else None
            item = self.dataset.item(item_id)
            name = self._clean(item.display_name)
            rating_text = _format_rating(rating) if self.show_ratings and rating is not None else ""
            cost = self.count_tokens(f"- {name}" + (f" (rated {rating_text})" if rating_text else "") + "\n")
            if used + cost > self.history_budget:
                break
            used += cost
            entries.append(
                {
                    "item_id": item_id,
                    "title": self._clean(item.title),
                    "year": item.year,
                    "name": name,
                    "genres": ", ".join(self._clean(g) for g in item.genres),
                    "rating": rating if self.show_ratings else None,
                    "rating_text": rating_text,
                }
            )
        entries.reverse()  # most recent last
        return _HistoryView(entries=entries, total=len(history), tokens=used)

    def _candidate(self, cid: str, label: str, facts: Sequence[str]) -> dict[str, Any]:
        item = self.dataset.item(cid)
        return {
            "item_id": cid,
            "label": label,
            "title": self._clean(item.title),
            "year": item.year,
            "name": self._clean(item.display_name),
            "genres": ", ".join(self._clean(g) for g in item.genres),
            "facts": [self._clean(f) for f in facts],
        }

    def _facts(
        self, hist_ids: list[str], cand_ids: list[str], budget: int, user_items: Collection[str] = ()
    ) -> tuple[dict[str, tuple[str, ...]], int]:
        if not self.tpl.knowledge or self.knowledge is None or budget == 0 or self.facts_per_candidate == 0:
            return {c: () for c in cand_ids}, 0
        selection = self.knowledge.select_facts(
            hist_ids,
            cand_ids,
            max_per_candidate=self.facts_per_candidate,
            budget=budget,
            count_tokens=self.count_tokens,
            items=self.dataset.items,
            **({"user_items": user_items} if user_items else {}),
        )
        facts = {c: tuple(f.sentence for f in selection.get(c, ())) for c in cand_ids}
        tokens = sum(f.tokens for fs in selection.values() for f in fs)
        return facts, tokens


def _format_rating(rating: float) -> str:
    return f"{int(rating)}/5" if float(rating).is_integer() else f"{rating:g}/5"


def without_specials(text: str, specials: Sequence[str]) -> str:
    """`text` with every string of `specials` removed, repeatedly (removing one may join the pieces of another), so
    data shown in a prompt cannot become a control token such as an end-of-turn."""
    changed = True
    while changed and specials:
        changed = False
        for special in specials:
            if special in text:
                text = text.replace(special, "")
                changed = True
    return text


def special_strings(tokenizer: Any) -> tuple[str, ...]:
    """Strings the tokenizer turns into special (control) tokens, longest first."""
    found: set[str] = set(getattr(tokenizer, "all_special_tokens", ()) or ())
    decoder = getattr(tokenizer, "added_tokens_decoder", None) or {}
    for token in decoder.values():
        if getattr(token, "special", False):
            found.add(str(token.content))
    return tuple(sorted((s for s in found if s), key=lambda s: (-len(s), s)))
