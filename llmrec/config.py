"""Shared rules for typed configs: dataclasses built from mappings (YAML/JSON are only file formats).

Every config class builds through `from_mapping`, so an unknown key raises the same `ConfigError` everywhere:
it names the key, where it was found, a did-you-mean suggestion and the known keys.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Collection, Mapping
from typing import Any, TypeVar

from llmrec.errors import ConfigError

T = TypeVar("T")


def check_known_keys(
    cls: type, data: Mapping[str, Any], where: str | None = None, *, prefix: str = "", exclude: Collection[str] = ()
) -> None:
    """Raise `ConfigError` if `data` has a key that is not a field of dataclass `cls` (minus `exclude`).

    The message names the first unknown key (with `prefix`, e.g. ``"lora."`` for nested sections), where it was
    found, a did-you-mean suggestion and the known keys: ``unknown config key 'lora.alpah' (did you mean
    'lora.alpha'?)``.
    """
    known = sorted({f.name for f in dataclasses.fields(cls)} - set(exclude))
    unknown = [str(k) for k in data if k not in known]
    if unknown:
        close = difflib.get_close_matches(unknown[0], known, n=1)
        hint = f" (did you mean {prefix + close[0]!r}?)" if close else ""
        place = f" in {where}" if where else ""
        more = f" and {len(unknown) - 1} more" if len(unknown) > 1 else ""
        raise ConfigError(
            f"unknown config key {prefix + unknown[0]!r}{more}{place}{hint}; known keys: {', '.join(known)}"
        )


def from_mapping(cls: type[T], data: object, where: str, *, exclude: Collection[str] = ()) -> T:
    """Build dataclass `cls` from a mapping (None = all defaults), rejecting unknown keys.

    Example:
        >>> from llmrec.models import ModelConfig
        >>> from_mapping(ModelConfig, {"name_or_path": "smollm2"}, "model").name_or_path
        'smollm2'
    """
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where} must be a mapping, got {type(data).__name__}")
    check_known_keys(cls, data, where, exclude=exclude)
    return cls(**{str(k): v for k, v in data.items()})
