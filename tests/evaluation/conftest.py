"""Tiny datasets for the evaluation tests: written as RecBole atomic files so the CLI can load them too."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from llmrec.data import load_dataset


def write_tiny_dataset(
    folder: Path, *, users: int = 12, items: int = 40, per_user: int = 12, seed: int = 7
) -> Path:
    """A small catalogue with a popularity skew and two taste groups, so baselines beat random."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    genres = ["Comedy", "Drama"]
    item_lines = ["item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq"]
    for i in range(1, items + 1):
        item_lines.append(f"{i}\tMovie {i}\t{1980 + i % 20}\t{genres[i % 2]}")
    inter_lines = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    weights = [1.0 / (i**0.8) for i in range(1, items + 1)]
    for u in range(1, users + 1):
        group = u % 2
        pool = [i for i in range(1, items + 1) if i % 2 == group or rng.random() < 0.2]
        w = [weights[i - 1] for i in pool]
        chosen: list[int] = []
        while len(chosen) < per_user:
            pick = rng.choices(pool, w)[0]
            if pick not in chosen:
                chosen.append(pick)
        for t, i in enumerate(chosen):
            rating = 5 if rng.random() < 0.7 else 2
            inter_lines.append(f"u{u}\t{i}\t{rating}\t{1000 + t * 10}")
    (folder / "tiny.item").write_text("\n".join(item_lines) + "\n")
    (folder / "tiny.inter").write_text("\n".join(inter_lines) + "\n")
    return folder


@pytest.fixture()
def tiny_dir(tmp_path: Path) -> Path:
    return write_tiny_dataset(tmp_path / "tiny")


@pytest.fixture()
def tiny(tiny_dir: Path):
    return load_dataset(tiny_dir)
