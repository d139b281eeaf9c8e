"""Fixtures for ranking tests: the tiny KG dataset and tiny random models (built in code, no download)."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmrec.data import load_dataset
from llmrec.models.tiny import tiny_loaded

DATA = Path(__file__).parents[1] / "data"


@pytest.fixture(scope="session")
def kg_tiny():
    return load_dataset(DATA / "kg_tiny")


@pytest.fixture(scope="session")
def knowledge(kg_tiny):
    from llmrec.knowledge import KnowledgeGraph

    return KnowledgeGraph.from_dataset(kg_tiny)


@pytest.fixture(scope="session")
def tiny_lm():
    """A 2-layer random Llama with a byte-level chat tokenizer (shared; tests must not modify it)."""
    return tiny_loaded(seed=0, init_range=0.3)


@pytest.fixture
def builder_for(kg_tiny, knowledge, tiny_lm):
    from llmrec.prompts import PromptBuilder

    def make(template: str, lm=None, **opts):
        lm = lm or tiny_lm
        return PromptBuilder(kg_tiny, lm.tokenizer, template, knowledge=knowledge, **opts)

    return make
