"""Plain frozen records shared by every layer of llmrec (no heavy imports here)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Item:
    """A catalogue item. `item_id` is the dataset's own id as a string."""

    item_id: str
    title: str
    year: int | None = None
    genres: tuple[str, ...] = ()

    @property
    def display_name(self) -> str:
        """Title with the year in parentheses when known, e.g. ``Fargo (1996)``."""
        return f"{self.title} ({self.year})" if self.year is not None else self.title


@dataclass(frozen=True)
class User:
    """A user with optional side attributes (age, gender, occupation ...)."""

    user_id: str
    attributes: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Interaction:
    """One user-item event. `rating` is None for implicit feedback."""

    user_id: str
    item_id: str
    timestamp: float
    rating: float | None = None


@dataclass(frozen=True)
class Triple:
    """A knowledge-graph fact ``head --relation--> tail``; `source` says where it came from (provenance)."""

    head: str
    relation: str
    tail: str
    source: str = "kg"


@dataclass(frozen=True)
class Candidate:
    """An item proposed by a retriever, with the retriever's score and name."""

    item_id: str
    score: float
    source: str
