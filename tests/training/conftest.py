"""Fixtures for training tests: a synthetic dataset (atomic files) and a tiny random model folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmrec.data import load_dataset


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory: pytest.TempPathFactory, synthetic_dataset) -> Path:
    """Users with chronological, mostly-liked histories over a small catalogue with a popularity skew."""
    return synthetic_dataset(
        tmp_path_factory.mktemp("data") / "synth", name="synth", users=16, items=60, per_user=14, seed=3,
        genres=("Comedy", "Drama", "Action"), first_year=1970, year_span=30, skew=0.7, like_rate=0.75, stagger=True,
    )


@pytest.fixture(scope="session")
def synth(synth_dir: Path):
    return load_dataset(synth_dir)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer random Llama + byte-level chat tokenizer saved as a transformers folder."""
    from llmrec.models.tiny import save_tiny

    return save_tiny(tmp_path_factory.mktemp("models") / "tiny-llama", seed=0, init_range=0.3)
