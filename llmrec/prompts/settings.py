"""Prompt settings: the budgets and options of a `PromptBuilder`, with their defaults defined once.

`llmrec.prompts.factory.make_builder` turns them into a builder for the ranker, the trainer, training
validation and `llmrec prompt`; an adapter card's ``prompt`` section records them.

Example:
    >>> from llmrec.prompts import PromptSettings
    >>> PromptSettings().history_budget, PromptSettings().fact_budget, PromptSettings().facts_per_candidate
    (400, 600, 3)
    >>> PromptSettings.resolve({"fact_budget": None}, {"fact_budget": 200, "template": "x"}).fact_budget
    200
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from llmrec.errors import ConfigError

#: The settings a `PromptBuilder` takes itself (the rest are read by those who pick knowledge and candidates).
BUILDER_FIELDS = ("history_budget", "fact_budget", "facts_per_candidate", "max_history", "show_ratings")


@dataclass(frozen=True)
class PromptSettings:
    """How prompts are rendered; what an adapter card's ``prompt`` section records and rankers reuse.

    Attributes:
        history_budget: most tokens the history list may take; the oldest items are dropped first.
        fact_budget: most tokens of KG facts per prompt (over all its candidates).
        facts_per_candidate: most facts shown per candidate.
        max_history: most history items shown, whatever the budget.
        show_ratings: show the user's rating next to history items when known.
        candidate_order: how candidates are listed: ``"given"`` or best-first by a retriever (checked by
            `llmrec.ranking.order.check_candidate_order` where it is applied).
        cf_evidence: show collaborative evidence from the interactions next to the KG facts.
    """

    history_budget: int = 400
    fact_budget: int = 600
    facts_per_candidate: int = 3
    max_history: int = 50
    show_ratings: bool = False
    candidate_order: str = "given"
    cf_evidence: bool = False

    def __post_init__(self) -> None:
        for name in ("history_budget", "fact_budget", "facts_per_candidate", "max_history"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"PromptSettings.{name} must be a non-negative integer, got {value!r}")
        for name in ("show_ratings", "cf_evidence"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"PromptSettings.{name} must be true or false, got {getattr(self, name)!r}")
        if not isinstance(self.candidate_order, str):
            raise ConfigError(f"PromptSettings.candidate_order must be a string, got {self.candidate_order!r}")

    @classmethod
    def resolve(cls, *layers: Mapping[str, Any] | None) -> PromptSettings:
        """Settings from mappings in priority order: per field the first non-None value, else the default.

        Keys that are not settings (e.g. ``template`` in a card's ``prompt`` section) are ignored, so a caller's
        explicit options can come first and an adapter card's recorded settings after them.
        """
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            for layer in layers:
                if layer is not None and layer.get(f.name) is not None:
                    values[f.name] = layer[f.name]
                    break
        return cls(**values)

    def builder_options(self) -> dict[str, Any]:
        """The keyword arguments of `PromptBuilder` these settings fill."""
        return {name: getattr(self, name) for name in BUILDER_FIELDS}


#: The defaults, defined once (`PromptBuilder`'s own defaults read them).
DEFAULT_SETTINGS = PromptSettings()
