"""The one path from prompt settings to a `PromptBuilder`: used by `Reranker`, the trainer (and so training
validation, which scores the trainer's prompts) and `llmrec prompt`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmrec.prompts.builder import PromptBuilder
from llmrec.prompts.settings import DEFAULT_SETTINGS, PromptSettings
from llmrec.prompts.templates import PromptTemplate, load_template

if TYPE_CHECKING:
    from llmrec.data.dataset import Dataset


def make_builder(
    dataset: Dataset,
    tokenizer: Any,
    template: PromptTemplate | str | Path,
    settings: PromptSettings | None = None,
    *,
    knowledge: Any = None,
    triples: bool = True,
    chat: bool | None = None,
    search_dirs: Sequence[str | Path] = (),
) -> PromptBuilder:
    """The `PromptBuilder` for `template` with `settings`, and the knowledge graph its facts come from.

    Whether facts are shown comes from the template header (``knowledge: true``). When it asks for them and
    either `triples` or ``settings.cf_evidence`` is on, the facts come from `knowledge` (a `KnowledgeGraph`;
    given CF evidence it gets `dataset`'s interaction evidence if it has none), or from a graph built from
    `dataset` (KG triples when `triples`, interaction evidence when ``settings.cf_evidence``).

    Args:
        dataset: the catalogue (and interactions for CF evidence).
        tokenizer: the model's tokenizer.
        template: a `PromptTemplate`, or a template name or path (looked up in `search_dirs` first).
        settings: budgets, facts per candidate, CF evidence ... (default `PromptSettings()`).
        knowledge: a ready `KnowledgeGraph`, or None to build one when needed.
        triples: show KG triples (False: no KG facts; CF evidence alone when ``settings.cf_evidence``).
        chat: apply the tokenizer's chat template; None = if it has one.
        search_dirs: extra template folders.

    Example:
        >>> builder = make_builder(ds, tok, "listwise_kg", PromptSettings(fact_budget=300))  # doctest: +SKIP
    """
    settings = settings or DEFAULT_SETTINGS
    if not isinstance(template, PromptTemplate):
        template = load_template(template, search_dirs)
    shows_facts = triples or settings.cf_evidence
    if template.knowledge and shows_facts:
        if knowledge is None:
            from llmrec.knowledge import KnowledgeGraph

            knowledge = KnowledgeGraph.from_dataset(dataset, triples=triples, interactions=settings.cf_evidence)
        elif settings.cf_evidence and getattr(knowledge, "evidence", None) is None:
            knowledge.add_interaction_evidence(dataset)
    return PromptBuilder(
        dataset,
        tokenizer,
        template,
        knowledge=knowledge if shows_facts else None,
        chat=chat,
        search_dirs=search_dirs,
        **settings.builder_options(),
    )
