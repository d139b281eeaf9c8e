"""Fixtures for training tests: a synthetic dataset (atomic files) and a tiny random model folder."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from llmrec.data import load_dataset


def write_synthetic(folder: Path, *, users: int = 16, items: int = 60, per_user: int = 14, seed: int = 3) -> Path:
    """Users with chronological, mostly-liked histories over a small catalogue with a popularity skew."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    genres = ["Comedy", "Drama", "Action"]
    item_lines = ["item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq"]
    for i in range(1, items + 1):
        item_lines.append(f"{i}\tFilm {i}\t{1970 + i % 30}\t{genres[i % 3]}")
    inter_lines = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    weights = [1.0 / (i**0.7) for i in range(1, items + 1)]
    for u in range(1, users + 1):
        chosen: list[int] = []
        while len(chosen) < per_user:
            pick = rng.choices(range(1, items + 1), weights)[0]
            if pick not in chosen:
                chosen.append(pick)
        for t, i in enumerate(chosen):
            rating = 5 if rng.random() < 0.75 else 2
            inter_lines.append(f"u{u}\t{i}\t{rating}\t{1000 + t * 10 + u}")
    (folder / "synth.item").write_text("\n".join(item_lines) + "\n")
    (folder / "synth.inter").write_text("\n".join(inter_lines) + "\n")
    return folder


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic(tmp_path_factory.mktemp("data") / "synth")


@pytest.fixture(scope="session")
def synth(synth_dir: Path):
    return load_dataset(synth_dir)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer random Llama + byte-level chat tokenizer saved as a transformers folder."""
    from llmrec.models.tiny import save_tiny

    return save_tiny(tmp_path_factory.mktemp("models") / "tiny-llama", seed=0, init_range=0.3)
