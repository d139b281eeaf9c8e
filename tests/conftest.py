"""Shared fixtures: the tiny atomic dataset under tests/data/tiny, and a copy helper for bad-input tests."""

from __future__ import annotations

import random
import shutil
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
sys.path.insert(0, str(Path(__file__).parent))  # test helpers importable from every folder: `numerics`


@pytest.fixture(autouse=True, scope="session")
def _auto_dtype_is_float32_on_cpu() -> Iterator[None]:
    """Tests load ``dtype="auto"`` as float32 on every CPU, whatever this machine's bfloat16 benchmark says
    (`llmrec.models.machine`), also in module- and session-scoped model fixtures; tests of the measured pick set
    the variable themselves."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LLMREC_MEASURE_DTYPE", "0")
        yield


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


def write_synthetic_dataset(
    folder: Path,
    *,
    name: str,
    users: int,
    items: int,
    per_user: int,
    seed: int,
    title: str = "Film",
    genres: Sequence[str] = ("Comedy", "Drama"),
    first_year: int = 1980,
    year_span: int = 20,
    skew: float = 0.8,
    like_rate: float = 0.7,
    taste_groups: bool = False,
    stagger: bool = False,
) -> Path:
    """Write a seeded synthetic dataset as RecBole atomic files (`<name>.item`, `<name>.inter`).

    Items have a popularity skew (weight ``1 / rank**skew``); each user picks `per_user` distinct items, liked
    (rating 5) with probability `like_rate`, else rated 2. With `taste_groups`, odd and even users mostly pick odd
    and even items (so co-occurrence beats popularity); with `stagger`, timestamps differ across users too.
    """
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    item_lines = ["item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq"]
    for i in range(1, items + 1):
        item_lines.append(f"{i}\t{title} {i}\t{first_year + i % year_span}\t{genres[i % len(genres)]}")
    inter_lines = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    weights = [1.0 / (i**skew) for i in range(1, items + 1)]
    for u in range(1, users + 1):
        pool = list(range(1, items + 1))
        if taste_groups:
            pool = [i for i in pool if i % 2 == u % 2 or rng.random() < 0.2]
        pool_weights = [weights[i - 1] for i in pool]
        chosen: list[int] = []
        while len(chosen) < per_user:
            pick = rng.choices(pool, pool_weights)[0]
            if pick not in chosen:
                chosen.append(pick)
        for t, i in enumerate(chosen):
            rating = 5 if rng.random() < like_rate else 2
            inter_lines.append(f"u{u}\t{i}\t{rating}\t{1000 + t * 10 + (u if stagger else 0)}")
    (folder / f"{name}.item").write_text("\n".join(item_lines) + "\n")
    (folder / f"{name}.inter").write_text("\n".join(inter_lines) + "\n")
    return folder


@pytest.fixture(scope="session")
def synthetic_dataset() -> Callable[..., Path]:
    """`write_synthetic_dataset`, for the fixtures of test folders that need a bigger synthetic catalogue."""
    return write_synthetic_dataset
