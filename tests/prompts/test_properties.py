"""Property tests: arbitrary titles and histories never crash rendering nor run as template code."""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmrec.data.dataset import Dataset
from llmrec.knowledge import KnowledgeGraph
from llmrec.prompts import PromptBuilder
from llmrec.types import Interaction, Item, Triple

TRICKY = st.sampled_from(
    ["{{", "}}", "{%", "%}", "{#", "#}", "{{ 7*7 }}", "{% for x in y %}", '"', "'", "\\", "<|im_end|>",
     "<|im_start|>", "\n", "\t", "é", "日本語", "🎬", "\u200b", "---", "Answer:"]
)  # fmt: skip
TITLE = st.lists(st.one_of(TRICKY, st.text(max_size=12)), min_size=0, max_size=6).map("".join)


def _dataset(titles: list[str], years: list[int | None]) -> Dataset:
    items = {
        str(n): Item(str(n), t, y, ("Drama",) if n % 2 else ()) for n, (t, y) in enumerate(zip(titles, years))
    }
    inter = [Interaction("u", str(n), float(n)) for n in range(len(titles))]
    return Dataset("prop", items, inter)


def _visible(title: str) -> str:
    text = re.sub(r"\s+", " ", title)
    while "<|im_end|>" in text or "<|im_start|>" in text:
        text = text.replace("<|im_end|>", "").replace("<|im_start|>", "")
    return text.strip()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    titles=st.lists(TITLE, min_size=2, max_size=8),
    years=st.lists(st.one_of(st.none(), st.integers(1900, 2030)), min_size=8, max_size=8),
    split=st.integers(0, 7),
)
def test_arbitrary_titles_render_verbatim_and_inert(chat_tok, titles, years, split):
    ds = _dataset(titles, years)
    ids = list(ds.items)
    split = min(split, len(ids) - 1)
    history, candidates = ids[:split], ids[split:]
    kg = KnowledgeGraph.from_dataset(ds)
    kg.add_triples(Triple(f"llmrec:item/{i}", "composer", "wd:same", "prop") for i in ids)
    for name in ("listwise_kg", "pointwise_kg", "generative"):
        prompts = PromptBuilder(ds, chat_tok, name, knowledge=kg).build(history, candidates)
        for p in prompts:
            # the chat structure is intact: system, user, assistant turns and nothing else
            assert p.text.count("<|im_start|>") == 3 and p.text.count("<|im_end|>") == 2
            assert p.text.endswith("<|im_start|>assistant\n")
            assert p.n_tokens == len(chat_tok(p.text, add_special_tokens=False)["input_ids"])
        text = "".join(p.text for p in prompts)
        for i in history + candidates:  # shown verbatim: template syntax in a title is data, never code
            assert _visible(ds.item(i).display_name) in text


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n_history=st.integers(0, 40), budget=st.integers(0, 300))
def test_history_budget_is_respected_and_keeps_the_most_recent(chat_tok, n_history, budget):
    titles = [f"Movie number {n} with a title" for n in range(n_history + 1)]
    ds = _dataset(titles, [2000] * len(titles))
    ids = list(ds.items)
    builder = PromptBuilder(ds, chat_tok, "listwise", history_budget=budget)
    [p] = builder.build(ids[:-1], ids[-1:])
    shown = p.metadata["history_shown"]
    assert p.metadata["history_tokens"] <= budget
    assert p.metadata["history_truncated"] == (shown < n_history)
    for n, i in enumerate(ids[:-1]):
        line = f"- {ds.item(i).display_name}\n"
        assert (line in p.text) == (n >= n_history - shown)
