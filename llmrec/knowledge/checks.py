"""Sanity checks of a fused graph against the dataset it serves.

The link table is the weak point of dataset KGs: if it maps items to the wrong entities, every KG fact in a prompt
is about some other movie, and nothing fails. Sequel / prequel links give a cheap test: a movie and its sequel
almost always share a title word ("Star Trek III" / "Star Trek IV"), so among correctly linked pairs most share
one, while a misaligned link table gives pairs of unrelated titles.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llmrec.data.dataset import Dataset
    from llmrec.knowledge.store import TripleStore

log = logging.getLogger(__name__)

_WORD = re.compile(r"[^\W\d_]{3,}")


@dataclass(frozen=True)
class AlignmentReport:
    """Result of `check_alignment`.

    Attributes:
        sequel_pairs: (earlier item, later item) pairs linked by a sequel/prequel relation, both in the dataset.
        title_overlap: fraction of those pairs whose titles share a word (of 3+ letters); None without pairs.
        examples: a few pairs as display names, for the message.
    """

    sequel_pairs: int
    title_overlap: float | None
    examples: tuple[str, ...]

    @property
    def suspicious(self) -> bool:
        """True when there are enough pairs to judge and fewer than a third share a title word."""
        return self.sequel_pairs >= 10 and self.title_overlap is not None and self.title_overlap < 1 / 3


def check_alignment(kg: TripleStore, dataset: Dataset) -> AlignmentReport:
    """Check the item -> entity links through sequel/prequel pairs (see the module docstring)."""
    pairs: set[tuple[str, str]] = set()
    for item_id in dataset.items:
        for attr in kg.attributes(item_id):
            if attr.kind.name not in ("sequel_to", "prequel_of"):
                continue
            other = kg.linked_item(attr.entity)
            if other is None or other == item_id or other not in dataset.items:
                continue
            pairs.add((other, item_id) if attr.kind.name == "sequel_to" else (item_id, other))
    if not pairs:
        return AlignmentReport(0, None, ())
    shared = 0
    for a, b in pairs:
        words_a = set(_WORD.findall(dataset.items[a].title.lower()))
        words_b = set(_WORD.findall(dataset.items[b].title.lower()))
        shared += bool(words_a & words_b)
    examples = tuple(
        f"{dataset.items[a].display_name} -> {dataset.items[b].display_name}" for a, b in sorted(pairs)[:3]
    )
    return AlignmentReport(len(pairs), shared / len(pairs), examples)
