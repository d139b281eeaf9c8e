from __future__ import annotations

import os
from pathlib import Path

import pytest

from llmrec.errors import ConfigError, UnknownIdError
from llmrec.knowledge import KnowledgeGraph
from llmrec.prompts import PromptBuilder, PromptTemplate, RenderedPrompt
from llmrec.types import Triple

GOLDEN = Path(__file__).parent / "golden"
HISTORY = ["2", "3", "4", "1", "6"]  # user u1, oldest first
CANDIDATES = ["5", "7", "8", "9", "12"]


def _ids(tok, prompt: RenderedPrompt, suffix: str = "") -> list[int]:
    return tok(prompt.text + suffix, add_special_tokens=prompt.add_special_tokens)["input_ids"]


def test_listwise_chat_prompt_ends_where_the_label_goes(tiny, chat_tok, kg):
    builder = PromptBuilder(tiny, chat_tok, "listwise_kg", knowledge=kg)
    [p] = builder.build(HISTORY, CANDIDATES)
    assert p.text.endswith("<|im_start|>assistant\n")
    assert p.candidate_ids == tuple(CANDIDATES) and p.labels == ("A", "B", "C", "D", "E")
    assert p.answer_tokens == p.labels
    assert p.n_tokens == len(_ids(chat_tok, p))
    for label, token_id in zip(p.labels, p.answer_token_ids):
        assert _ids(chat_tok, p, label) == _ids(chat_tok, p) + [token_id]
    # candidates in the order given, each after its label
    positions = [p.text.index(f"{label}. {tiny.item(c).title}") for label, c in zip(p.labels, ["5", "7"])]
    assert positions == sorted(positions)
    assert p.metadata["template"] == "listwise_kg" and p.metadata["mode"] == "listwise" and p.metadata["chat"]


def test_base_model_prompt_is_plain_text_with_answer_cue(tiny, base_tok):
    [p] = PromptBuilder(tiny, base_tok, "listwise").build(HISTORY, CANDIDATES[:3])
    assert "<|im_start|>" not in p.text and p.text.endswith("Answer:\n")
    assert p.text.startswith("You are a movie recommender.")
    assert p.add_special_tokens and p.n_tokens == len(_ids(base_tok, p))


def test_history_most_recent_last_with_ratings(tiny, chat_tok):
    history = list(tiny.history("u1"))
    [p] = PromptBuilder(tiny, chat_tok, "listwise", show_ratings=True).build(history, ["5", "7"])
    names = [tiny.item(x.item_id).display_name for x in history]
    positions = [p.text.index(f"- {n}") for n in names]
    assert positions == sorted(positions)
    assert "- Fargo (1996) (rated 5/5)" in p.text and "- Toy Story (1995) (rated 3/5)" in p.text
    assert p.metadata["history_shown"] == 5 and not p.metadata["history_truncated"]


def test_history_over_budget_drops_the_oldest_and_says_so(tiny, chat_tok):
    builder = PromptBuilder(tiny, chat_tok, "listwise", history_budget=40)
    [p] = builder.build(HISTORY, ["5", "7"])
    meta = p.metadata
    assert meta["history_truncated"] and 0 < meta["history_shown"] < len(HISTORY)
    assert meta["history_omitted"] == len(HISTORY) - meta["history_shown"]
    assert meta["history_tokens"] <= 40
    shown = HISTORY[-meta["history_shown"] :]
    dropped = HISTORY[: -meta["history_shown"]]
    assert all(f"- {tiny.item(i).display_name}" in p.text for i in shown)
    assert not any(f"- {tiny.item(i).display_name}" in p.text for i in dropped)
    assert f"({meta['history_omitted']} older ones not shown)" in p.text
    [empty] = PromptBuilder(tiny, chat_tok, "listwise", history_budget=0).build(HISTORY, ["5"])
    assert "(no history)" in empty.text and empty.metadata["history_shown"] == 0


def test_pointwise_prompts_share_a_prefix(tiny, chat_tok, kg):
    prompts = PromptBuilder(tiny, chat_tok, "pointwise_kg", knowledge=kg).build(HISTORY, CANDIDATES)
    assert [p.candidate_ids for p in prompts] == [(c,) for c in CANDIDATES]
    assert all(p.labels == () and p.answer_tokens == ("Yes", "No") for p in prompts)
    prefix = os.path.commonprefix([p.text for p in prompts])
    assert f"- {tiny.item(HISTORY[-1]).display_name}" in prefix
    assert not any(tiny.item(c).title in prefix for c in CANDIDATES)
    assert len(prefix) > 0.6 * min(len(p.text) for p in prompts)
    for p in prompts:
        assert p.text.endswith("<|im_start|>assistant\n")
        for word, token_id in zip(p.answer_tokens, p.answer_token_ids):
            assert _ids(chat_tok, p, word) == _ids(chat_tok, p) + [token_id]


def test_generative_prompt_states_the_output_format(tiny, chat_tok):
    [p] = PromptBuilder(tiny, chat_tok, "generative").build(HISTORY, CANDIDATES)
    assert "separated by ' > '" in p.text and p.metadata["output_separator"] == ">"
    assert p.labels == ("A", "B", "C", "D", "E")


def test_bad_candidates(tiny, chat_tok):
    builder = PromptBuilder(tiny, chat_tok, "listwise")
    with pytest.raises(UnknownIdError, match="'404'"):
        builder.build(HISTORY, ["5", "404"])
    with pytest.raises(UnknownIdError, match="'nope'"):
        builder.build(["nope"], ["5"])
    with pytest.raises(ConfigError, match="duplicate"):
        builder.build(HISTORY, ["5", "5"])
    with pytest.raises(ConfigError, match="no candidates"):
        builder.build(HISTORY, [])
    small = PromptTemplate.from_string(
        "three",
        "---\nmode: listwise\nrequired: [history, candidates]\nmax_candidates: 3\n---\n{{ history }}{{ candidates }}",
    )
    with pytest.raises(ConfigError, match="'three' shows at most 3 candidates, got 4"):
        PromptBuilder(tiny, chat_tok, small).build([], ["1", "2", "3", "4"])
    with pytest.raises(ConfigError, match="history_budget"):
        PromptBuilder(tiny, chat_tok, "listwise", history_budget=-1)


def test_template_syntax_in_titles_is_shown_not_run(tiny, chat_tok):
    [p] = PromptBuilder(tiny, chat_tok, "listwise").build(["8", "10"], ["9", "11"])
    assert tiny.item("8").title in p.text  # "{{ 7*7 }} {% if true %}Injected{% endif %}" verbatim
    assert "49" not in p.text
    assert "The \"Quoted\" {Braces} and 'Apostrophes' }}" in p.text
    assert "Amélie (Le Fabuleux Destin d'Amélie Poulain) (2001)" in p.text
    # a title holding the chat control tokens cannot end the user turn early
    assert p.text.count("<|im_start|>") == 3 and p.text.count("<|im_end|>") == 2
    assert "assistant Injection (1999)" in p.text


def test_knowledge_facts_within_caps_and_budget(tiny, chat_tok, kg):
    builder = PromptBuilder(
        tiny, chat_tok, "listwise_kg", knowledge=kg, facts_per_candidate=2, fact_budget=120
    )
    [p] = builder.build(HISTORY, CANDIDATES)
    assert set(p.facts) == set(CANDIDATES)
    assert all(len(f) <= 2 for f in p.facts.values())
    assert p.metadata["fact_tokens"] <= 120
    shown = [s for facts in p.facts.values() for s in facts]
    assert shown and all(s in p.text for s in shown)
    assert sum(len(chat_tok(s + "; ", add_special_tokens=False)["input_ids"]) for s in shown) <= 120
    assert any("sequel to Toy Story (1995)" in s for s in p.facts["5"])
    assert p.facts["12"] == () or all("genre" in s for s in p.facts["12"])
    # templates without knowledge ignore the graph
    [plain] = PromptBuilder(tiny, chat_tok, "listwise", knowledge=kg).build(HISTORY, CANDIDATES)
    assert all(f == () for f in plain.facts.values()) and "Connections" not in plain.text


def test_kg_changes_take_effect_on_the_next_build(tiny, chat_tok):
    kg = KnowledgeGraph.from_dataset(tiny)
    builder = PromptBuilder(tiny, chat_tok, "listwise_kg", knowledge=kg)
    [before] = builder.build(["3"], ["9"])
    assert not any("composer" in s for s in before.facts["9"])
    kg.add_names({"wd:tiersen": "Yann Tiersen"})
    kg.add_triples(
        [Triple("m.f3", "composer", "wd:tiersen", "live"), Triple("m.f9", "composer", "wd:tiersen", "live")]
    )
    [after] = builder.build(["3"], ["9"])
    assert "composer Yann Tiersen, as in Raising Arizona (1987)" in after.facts["9"]
    kg.remove_triples(source="live")
    [again] = builder.build(["3"], ["9"])
    assert again.facts == before.facts


@pytest.mark.parametrize("name", ["listwise_kg", "listwise", "pointwise_kg", "pointwise", "generative"])
def test_golden(name, tiny, base_tok, chat_tok, kg):
    """Pin each shipped template's output on the fixture (plain text and chat). Regenerate with
    LLMREC_UPDATE_GOLDEN=1 after an intended change, and review the diff."""
    texts = []
    for tok in (base_tok, chat_tok):
        prompts = PromptBuilder(tiny, tok, name, knowledge=kg, show_ratings=True).build(
            tiny.history("u1"), CANDIDATES[:3]
        )
        texts.append("\n==== next prompt ====\n".join(p.text for p in prompts))
    text = "\n==== chat ====\n".join(texts)
    path = GOLDEN / f"{name}.txt"
    if os.environ.get("LLMREC_UPDATE_GOLDEN"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")
