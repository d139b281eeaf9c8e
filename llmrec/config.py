"""The one config engine: typed dataclasses built from mappings (YAML/JSON are only file formats).

Every config class builds through `from_mapping` or `build`, so an unknown key raises the same `ConfigError`
everywhere: it names the key, where it was found, a did-you-mean suggestion and the known keys. `build` also checks
each value against the field's annotation (`coerce`); sections check their own values in `__post_init__` (with
`check_fields` and `require`), so a section built directly is as checked as one read from a file.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
import types
import typing
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

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


def read_config_file(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """The top-level mapping of a YAML (or ``.json``) config file; an empty file gives ``{}``.

    Raises:
        ConfigError: the file is missing (``"<what> <path> does not exist"``), does not parse, or its top level is
            not a mapping; each message names the file.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} {path} does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        kind = "JSON" if path.suffix == ".json" else "YAML"
        raise ConfigError(f"{path}: cannot parse: not valid {kind}: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level, got {type(data).__name__}")
    return dict(data)


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


# ---- the typed engine: values checked against the dataclass annotations, errors naming the dotted key ----------

_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def type_name(tp: Any) -> str:
    """A readable name of an annotation for error messages (``'none' | '4bit'``, ``int | null``, ``list of str``)."""
    origin = get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in get_args(tp))
    if origin is tuple:
        return "list of " + type_name(get_args(tp)[0])
    return "null" if tp is type(None) else getattr(tp, "__name__", str(tp))


def coerce(tp: Any, value: Any, key: str) -> Any:
    """Check `value` against the annotation `tp`; return it (tuples from lists, floats from ints and from numeric
    strings YAML 1.1 leaves as text, nested dataclasses from mappings). Raise `ConfigError` naming `key`."""
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in get_args(tp):
            try:
                return coerce(arg, value, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: expected {type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value in get_args(tp):
            return value
        raise ConfigError(f"{key}: expected one of {type_name(tp)}, got {value!r}")
    if origin is tuple:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__} {value!r}")
        (inner, _ellipsis) = get_args(tp)
        return tuple(coerce(inner, v, f"{key}[{n}]") for n, v in enumerate(value))
    if origin in (dict, Mapping):  # free-form keyword arguments (e.g. a retriever's options): str keys
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            raise ConfigError(f"{key}: expected a mapping of option names to values, got {value!r}")
        return dict(value)
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"{key}: expected null, got {value!r}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {type(value).__name__} {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected an integer, got {type(value).__name__} {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
            return float(value)  # YAML 1.1 reads "1e-3" (no dot) as a string
        raise ConfigError(f"{key}: expected a number, got {type(value).__name__} {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected a string, got {type(value).__name__} {value!r}")
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping of keys, got {type(value).__name__} {value!r}")
        return build(tp, value, f"{key}.")
    raise ConfigError(f"{key}: unsupported config type {tp!r}")  # pragma: no cover - programming error


def build(cls: type[T], data: Mapping[str, Any], prefix: str = "") -> T:
    """Build dataclass `cls` from a mapping with every value checked against its annotation.

    Unknown keys raise (see `check_known_keys`); a wrong type or a value the class's `__post_init__` refuses
    raises `ConfigError` naming the dotted key (`prefix` + field, e.g. ``lora.r``).

    Example:
        >>> from llmrec.training.config import LoraSection
        >>> build(LoraSection, {"r": 16, "dropout": 0}).dropout
        0.0
    """
    hints = typing.get_type_hints(cls)
    check_known_keys(cls, data, prefix=prefix)
    kwargs = {str(k): coerce(hints[k], v, f"{prefix}{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        if prefix and not str(exc).startswith(prefix):
            raise ConfigError(f"{prefix}{exc}") from None
        raise


def check_fields(obj: Any, prefix: str = "") -> None:
    """For a (frozen) dataclass's `__post_init__`: check every field against its annotation, storing the coerced
    value (a tuple for a list, a float for an int ...), so that a section built directly is checked like one built
    from a file. Errors name ``prefix + field``."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        coerced = coerce(hints[f.name], value, f"{prefix}{f.name}")
        if coerced is not value:
            object.__setattr__(obj, f.name, coerced)


def require(ok: bool, key: str, message: str) -> None:
    """Raise ``ConfigError(f"{key}: {message}")`` unless `ok`."""
    if not ok:
        raise ConfigError(f"{key}: {message}")


def plain(value: Any) -> Any:
    """Nested dicts and lists (tuples become lists), ready for YAML/JSON and for `build`."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value
