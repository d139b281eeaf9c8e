"""User-supplied knowledge: triple files from other platforms, aligned to the dataset through link tables.

File formats (UTF-8, tab-separated, or comma-separated when the file ends in ``.csv``; an optional header line is
recognised by RecBole ``name:type`` fields or the words head/relation/tail, item/entity, entity/name):

- triples: ``head  relation  tail`` (a fourth column, when present, is the triple's source)
- links:   ``item_id  entity_id``
- names:   ``entity_id  name``
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from llmrec.errors import ConfigError, DataFormatError
from llmrec.types import Triple

if TYPE_CHECKING:
    from llmrec.data.dataset import Dataset
    from llmrec.knowledge.store import TripleStore

log = logging.getLogger(__name__)

_HEADER_WORDS = {"head", "relation", "tail", "item", "item_id", "entity", "entity_id", "name", "source", "head_id",
                 "tail_id", "relation_id"}  # fmt: skip


def _rows(path: Path, width: int) -> Iterator[tuple[int, list[str]]]:
    if not path.is_file():
        raise ConfigError(f"knowledge file {str(path)!r} does not exist")
    delimiter = "," if path.suffix.lower() == ".csv" else "\t"
    with open(path, encoding="utf-8", newline="") as handle:
        for lineno, row in enumerate(csv.reader(handle, delimiter=delimiter), start=1):
            if not row or all(not cell.strip() for cell in row):
                continue
            if lineno == 1 and all(
                ":" in cell or cell.strip().lower() in _HEADER_WORDS for cell in row[:width]
            ):
                continue
            if len(row) < width:
                raise DataFormatError(path, lineno, f"expected {width} columns, got {len(row)}: {row!r}")
            cells = [cell.strip() for cell in row]
            if not all(cells[:width]):
                raise DataFormatError(path, lineno, f"empty field in {row!r}")
            yield lineno, cells


def read_triples(path: str | Path, source: str) -> list[Triple]:
    """Triples from a file; a fourth column overrides `source` for its line."""
    p = Path(path)
    return [Triple(r[0], r[1], r[2], r[3] if len(r) > 3 and r[3] else source) for _, r in _rows(p, 3)]


def read_pairs(path: str | Path) -> dict[str, str]:
    """A two-column table (links: item -> entity; names: entity -> name). Later lines win."""
    return {r[0]: r[1] for _, r in _rows(Path(path), 2)}


@dataclass(frozen=True)
class KnowledgeSource:
    """One extra knowledge source fused into the graph.

    Args:
        name: provenance written on its triples (e.g. ``wikidata``).
        triples: a triple file, or triples in memory.
        links: a link table file or mapping item id -> this source's entity id. Without it, the triples' entities
            must be the dataset's own entities (those of its link table).
        names: an entity-name table file or mapping, so facts can name people and things.

    Example:
        >>> src = KnowledgeSource("wikidata", "wd.tsv", links="wd_links.tsv", names="wd_names.tsv")  # doctest: +SKIP
        >>> kg = KnowledgeGraph.from_dataset(ds, extra_sources=[src])  # doctest: +SKIP
    """

    name: str
    triples: str | Path | tuple[Triple, ...]
    links: str | Path | Mapping[str, str] | None = None
    names: str | Path | Mapping[str, str] | None = None

    def load(self) -> tuple[list[Triple], dict[str, str], dict[str, str]]:
        """(triples, links, names) read from files or taken from memory."""
        if not self.name or not str(self.name).strip():
            raise ConfigError("KnowledgeSource.name must be a non-empty string")
        if isinstance(self.triples, (str, Path)):
            triples = read_triples(self.triples, self.name)
        else:
            triples = [t if t.source else Triple(t.head, t.relation, t.tail, self.name) for t in self.triples]
        links = read_pairs(self.links) if isinstance(self.links, (str, Path)) else dict(self.links or {})
        names = read_pairs(self.names) if isinstance(self.names, (str, Path)) else dict(self.names or {})
        return triples, links, names

    def add_to(self, kg: TripleStore, dataset: Dataset | None = None) -> int:
        """Load this source into `kg`. Returns the triples added.

        Raises:
            ConfigError: its link table links none of the dataset's items (a wrong column or id space).
        """
        triples, links, names = self.load()
        if dataset is not None and links:
            linked = [i for i in links if i in dataset.items]
            if not linked:
                sample = ", ".join(repr(i) for i in list(links)[:3])
                raise ConfigError(
                    f"knowledge source {self.name!r}: its link table links none of the {len(dataset.items)} items "
                    f"of dataset {dataset.name!r} (first item ids in the table: {sample})"
                )
            unknown = len(links) - len(linked)
            if unknown:
                log.info("knowledge source %r: %d link(s) name items not in the dataset", self.name, unknown)
            links = {i: e for i, e in links.items() if i in dataset.items}
        kg.add_links(links, source=self.name)
        kg.add_names(names)
        added = kg.add_triples(triples)
        log.info(
            "knowledge source %r: %d triples, %d links, %d names", self.name, added, len(links), len(names)
        )
        return added
