"""Prompt templates (validated Jinja files), single-token answer labels and the prompt builder.

Example:
    >>> from llmrec.prompts import PromptBuilder, load_template, list_templates
    >>> "listwise_kg" in list_templates()
    True
"""

from __future__ import annotations

from llmrec.prompts.builder import PromptBuilder, RenderedPrompt
from llmrec.prompts.factory import make_builder
from llmrec.prompts.labels import LabelTokenError, choose_labels, label_token_ids
from llmrec.prompts.settings import DEFAULT_SETTINGS, PromptSettings
from llmrec.prompts.templates import (
    MODES,
    PromptTemplate,
    TemplateError,
    builtin_template_dir,
    list_templates,
    load_template,
)

__all__ = [
    "DEFAULT_SETTINGS",
    "MODES",
    "LabelTokenError",
    "PromptBuilder",
    "PromptSettings",
    "PromptTemplate",
    "RenderedPrompt",
    "TemplateError",
    "builtin_template_dir",
    "choose_labels",
    "label_token_ids",
    "list_templates",
    "load_template",
    "make_builder",
]
