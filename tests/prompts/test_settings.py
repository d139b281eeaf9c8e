"""`PromptSettings` (defaults defined once) and `make_builder`, the one path from settings to a builder."""

from __future__ import annotations

import dataclasses

import pytest

from llmrec.errors import ConfigError
from llmrec.prompts import DEFAULT_SETTINGS, PromptBuilder, PromptSettings, make_builder

HISTORY = ["2", "3", "4", "1", "6"]
CANDIDATES = ["5", "7", "8"]


def test_builder_defaults_are_the_settings_defaults():
    builder_defaults = {f.name: f.default for f in dataclasses.fields(PromptBuilder)}
    for name, value in DEFAULT_SETTINGS.builder_options().items():
        assert builder_defaults[name] == value
    assert (DEFAULT_SETTINGS.history_budget, DEFAULT_SETTINGS.fact_budget, DEFAULT_SETTINGS.facts_per_candidate) == (
        400,
        600,
        3,
    )


def test_resolve_takes_the_first_non_none_value_and_ignores_other_keys():
    card = {"template": "listwise_kg", "knowledge": "auto", "history_budget": 200, "fact_budget": None,
            "candidate_order": "cooc", "cf_evidence": True}
    settings = PromptSettings.resolve({"history_budget": None, "fact_budget": 100, "cf_evidence": False}, card)
    assert settings.history_budget == 200 and settings.fact_budget == 100
    assert settings.candidate_order == "cooc" and settings.cf_evidence is False
    assert settings.facts_per_candidate == DEFAULT_SETTINGS.facts_per_candidate
    assert PromptSettings.resolve() == DEFAULT_SETTINGS == PromptSettings.resolve(None, {})


@pytest.mark.parametrize("bad", [{"history_budget": -1}, {"fact_budget": 1.5}, {"max_history": True},
                                 {"cf_evidence": "yes"}])
def test_settings_validate_on_their_own(bad):
    with pytest.raises(ConfigError, match=next(iter(bad))):
        PromptSettings(**bad)


def test_make_builder_renders_what_a_builder_with_the_same_options_renders(tiny, chat_tok, kg):
    settings = PromptSettings(history_budget=120, fact_budget=200, facts_per_candidate=2, show_ratings=True)
    made = make_builder(tiny, chat_tok, "listwise_kg", settings, knowledge=kg)
    direct = PromptBuilder(tiny, chat_tok, "listwise_kg", knowledge=kg, history_budget=120, fact_budget=200,
                           facts_per_candidate=2, show_ratings=True)
    assert made.build(HISTORY, CANDIDATES) == direct.build(HISTORY, CANDIDATES)


def test_make_builder_builds_the_graph_when_the_template_header_asks(tiny, chat_tok, kg):
    [built] = make_builder(tiny, chat_tok, "listwise_kg").build(HISTORY, CANDIDATES)
    [given] = PromptBuilder(tiny, chat_tok, "listwise_kg", knowledge=kg).build(HISTORY, CANDIDATES)
    assert built == given and any(built.facts.values())
    # no triples and no CF evidence: no facts, even for a template that shows them
    [plain] = make_builder(tiny, chat_tok, "listwise_kg", knowledge=kg, triples=False).build(HISTORY, CANDIDATES)
    assert not any(plain.facts.values())
    # a template without `knowledge: true` gets no graph built
    assert make_builder(tiny, chat_tok, "listwise").knowledge is None
