"""Shared fixtures: the tiny atomic dataset under tests/data/tiny, and a copy helper for bad-input tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def tiny():
    """The KG fixture dataset (tests/data/kg_tiny): titles with template syntax, quotes and non-ASCII."""
    from llmrec.data import load_dataset

    return load_dataset(DATA / "kg_tiny")


@pytest.fixture()
def kg(tiny):
    from llmrec.knowledge import KnowledgeGraph

    return KnowledgeGraph.from_dataset(tiny)


@pytest.fixture
def tiny_dir() -> Path:
    return DATA / "tiny"


@pytest.fixture
def tiny_copy(tmp_path: Path) -> Path:
    """A writable copy of the tiny dataset, for tests that break one file."""
    target = tmp_path / "tiny"
    shutil.copytree(DATA / "tiny", target)
    return target
