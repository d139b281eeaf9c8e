"""Prompt templates (validated Jinja files), single-token answer labels and the prompt builder.

Example:
    >>> from llmrec.prompts import PromptBuilder, load_template, list_templates
    >>> "listwise_kg" in list_templates()
    True
"""

from __future__ import annotations

from llmrec.prompts.builder import PromptBuilder, RenderedPrompt
from llmrec.prompts.labels import LabelTokenError, choose_labels, label_token_ids
from llmrec.prompts.templates import (
    MODES,
    PromptTemplate,
    TemplateError,
    builtin_template_dir,
    list_templates,
    load_template,
)

__all__ = [
    "MODES",
    "LabelTokenError",
    "PromptBuilder",
    "PromptTemplate",
    "RenderedPrompt",
    "TemplateError",
    "builtin_template_dir",
    "choose_labels",
    "label_token_ids",
    "list_templates",
    "load_template",
]
