"""Tiny datasets for the evaluation tests: written as RecBole atomic files so the CLI can load them too."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmrec.data import load_dataset


@pytest.fixture()
def tiny_dir(tmp_path: Path, synthetic_dataset) -> Path:
    """A small catalogue with a popularity skew and two taste groups, so baselines beat random."""
    return synthetic_dataset(
        tmp_path / "tiny", name="tiny", users=12, items=40, per_user=12, seed=7, title="Movie", taste_groups=True
    )


@pytest.fixture()
def tiny(tiny_dir: Path):
    return load_dataset(tiny_dir)
