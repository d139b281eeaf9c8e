from __future__ import annotations

from pathlib import Path

import pytest

from llmrec.data import load_dataset
from llmrec.knowledge import KnowledgeGraph

DATA = Path(__file__).parents[1] / "data"


@pytest.fixture(scope="session")
def tiny():
    return load_dataset(DATA / "kg_tiny")


@pytest.fixture()
def kg(tiny):
    return KnowledgeGraph.from_dataset(tiny)
