"""The in-memory dataset every layer works on, and the rule for which interactions count as positive."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from llmrec.errors import ConfigError, UnknownIdError
from llmrec.types import Interaction, Item, Triple, User


@dataclass(frozen=True)
class PositivePolicy:
    """Which interactions count as positive (liked).

    Args:
        min_rating: an interaction with ``rating >= min_rating`` is positive. ``None`` treats every interaction as
            positive (implicit feedback). Interactions without a rating are always positive.

    Example:
        >>> PositivePolicy(4.0).is_positive(Interaction("u1", "i1", 0.0, rating=3.0))
        False
    """

    min_rating: float | None = 4.0

    def __post_init__(self) -> None:
        if self.min_rating is not None and not isinstance(self.min_rating, (int, float)):
            raise ConfigError(f"PositivePolicy.min_rating must be a number or None, got {self.min_rating!r}")

    def is_positive(self, interaction: Interaction) -> bool:
        if self.min_rating is None or interaction.rating is None:
            return True
        return interaction.rating >= self.min_rating


@dataclass
class Dataset:
    """Items, users, interactions and knowledge-graph triples of one dataset.

    `interactions` is kept sorted by user, then timestamp (ties keep file order), so a user's history is
    chronological. `links` maps item ids to KG entity ids; `entity_names` optionally names KG entities.
    """

    name: str
    items: dict[str, Item]
    interactions: list[Interaction]
    users: dict[str, User] = field(default_factory=dict)
    triples: list[Triple] = field(default_factory=list)
    links: dict[str, str] = field(default_factory=dict)
    entity_names: dict[str, str] = field(default_factory=dict)
    #: The split this dataset is the train part of (set by `Split.train_dataset`), else None.
    source_split: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        order = {id(x): n for n, x in enumerate(self.interactions)}
        self.interactions.sort(key=lambda x: (x.user_id, x.timestamp, order[id(x)]))

    @cached_property
    def _by_user(self) -> dict[str, tuple[Interaction, ...]]:
        grouped: dict[str, list[Interaction]] = {}
        for x in self.interactions:
            grouped.setdefault(x.user_id, []).append(x)
        return {u: tuple(xs) for u, xs in grouped.items()}

    @property
    def user_ids(self) -> list[str]:
        """Ids of users with at least one interaction, in sorted order."""
        return sorted(self._by_user)

    def history(self, user_id: str) -> tuple[Interaction, ...]:
        """The user's interactions, oldest first. Raises `UnknownIdError` for a user with no interactions."""
        try:
            return self._by_user[str(user_id)]
        except KeyError:
            raise UnknownIdError(f"unknown user {user_id!r} in dataset {self.name!r}") from None

    def item(self, item_id: str) -> Item:
        """The item with this id. Raises `UnknownIdError` naming the id."""
        try:
            return self.items[str(item_id)]
        except KeyError:
            raise UnknownIdError(f"unknown item {item_id!r} in dataset {self.name!r}") from None

    def check_items(self, item_ids: Iterable[str]) -> None:
        """Raise `UnknownIdError` listing every id that is not in the catalogue."""
        unknown = [i for i in item_ids if i not in self.items]
        if unknown:
            shown = ", ".join(repr(i) for i in unknown[:5])
            more = f" (and {len(unknown) - 5} more)" if len(unknown) > 5 else ""
            raise UnknownIdError(f"{len(unknown)} item id(s) not in dataset {self.name!r}: {shown}{more}")

    @cached_property
    def item_popularity(self) -> Mapping[str, int]:
        """Number of interactions per item (items never interacted with are absent)."""
        counts: dict[str, int] = {}
        for x in self.interactions:
            counts[x.item_id] = counts.get(x.item_id, 0) + 1
        return counts

    def stats(self) -> dict[str, int]:
        """Counts that describe the dataset (the ones `llmrec data stats` prints)."""
        return {
            "users": len(self._by_user),
            "items": len(self.items),
            "interactions": len(self.interactions),
            "kg_triples": len(self.triples),
            "linked_items": sum(1 for i in self.links if i in self.items),
            "kg_entities": len({t.head for t in self.triples} | {t.tail for t in self.triples}),
            "kg_relations": len({t.relation for t in self.triples}),
        }

    def content_fingerprint(self) -> str:
        """Hash of the dataset's content (items, interactions, KG triples, item -> entity links), not its name.

        Two loads of the same files give the same fingerprint; a rebuilt or corrected dataset under the same name
        does not. Adapter cards record it so a leak check knows it looks at the data an adapter was trained on.
        """
        import hashlib

        digest = hashlib.sha256()
        for item_id in sorted(self.items):
            item = self.items[item_id]
            digest.update(f"{item_id}\t{item.title}\t{item.year}\t{'|'.join(item.genres)}\n".encode())
        for x in self.interactions:
            digest.update(f"{x.user_id}\t{x.item_id}\t{x.timestamp}\t{x.rating}\n".encode())
        for t in self.triples:
            digest.update(f"{t.head}\t{t.relation}\t{t.tail}\n".encode())
        for item_id in sorted(self.links):
            digest.update(f"{item_id}\t{self.links[item_id]}\n".encode())
        return digest.hexdigest()[:16]

    def with_interactions(self, interactions: Sequence[Interaction]) -> Dataset:
        """A copy that shares items, users and KG but holds only `interactions` (e.g. a training split)."""
        return Dataset(
            name=self.name,
            items=self.items,
            interactions=list(interactions),
            users=self.users,
            triples=self.triples,
            links=self.links,
            entity_names=self.entity_names,
        )
