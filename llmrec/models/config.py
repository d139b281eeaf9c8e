"""`ModelConfig`: which causal LM to load, in which precision, where to place it and which adapters to attach."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from llmrec.config import from_mapping
from llmrec.errors import ConfigError

QUANTIZATIONS = ("none", "4bit", "8bit")
DTYPES = ("auto", "float32", "bfloat16", "float16")
ON_UNSUPPORTED = ("error", "full_precision")


def _pairs(value: object, name: str) -> tuple[tuple[str, str], ...]:
    """Normalise a mapping / sequence of pairs / sequence of paths into a hashable tuple of (name, value)."""
    if value is None:
        return ()
    if isinstance(value, Mapping):
        items = list(value.items())
    elif isinstance(value, (str, bytes)):
        raise ConfigError(
            f"ModelConfig.{name} must be a mapping name -> value or a list of pairs, got {value!r}"
        )
    else:
        items = []
        for entry in value:  # type: ignore[attr-defined]
            if isinstance(entry, (tuple, list)) and len(entry) == 2:
                items.append((entry[0], entry[1]))
            else:
                raise ConfigError(f"ModelConfig.{name} entries must be (name, value) pairs, got {entry!r}")
    return tuple((str(k), str(v)) for k, v in items)


@dataclass(frozen=True)
class ModelConfig:
    """How to load a decoder LLM. Hashable: `load_model` caches one loaded model per config.

    Args:
        name_or_path: an llmrec asset name (``"smollm2"``, fetched on first use), a local transformers folder,
            or a hub id (needs network access).
        quantization: ``"none"`` (full/half precision, see `dtype`), ``"4bit"`` (bitsandbytes NF4) or ``"8bit"``.
        dtype: weight dtype of unquantized layers. ``"auto"``: on a GPU bfloat16 where supported, else float32;
            on a CPU float32, or with ``LLMREC_MEASURE_DTYPE=1`` bfloat16 only where this CPU runs it at least
            1.2x faster than float32, measured once per machine and cached (`llmrec.models.machine`; CPUs without
            native bfloat16 run it several times slower). An explicit dtype is always used as given. The loaded
            model says which and why (`LoadedModel.dtype`, `LoadedModel.dtype_reason`).
        compute_dtype: compute dtype of 4-bit layers; ``"auto"`` follows the same rule as `dtype`.
        double_quant: 4-bit double quantisation of the quantisation constants (saves ~0.4 bit per weight).
        device_map: accelerate placement: ``"auto"`` spreads a model over all GPUs (then CPU), ``"cpu"``,
            ``"cuda:0"``, or a mapping module -> device.
        max_memory: per-device caps for ``device_map="auto"``, e.g. ``{"0": "20GiB", "cpu": "60GiB"}``.
        adapters: PEFT adapters to attach, ``{name: path or adapter name}`` (see
            `llmrec.models.adapters.resolve_adapter`); the first is active unless `active_adapter` says.
        active_adapter: the adapter active by default (``None`` = the first one).
        merge_adapter: merge the active adapter into the weights (faster; no switching afterwards).
        on_unsupported_quantization: ``"error"`` raises when bitsandbytes is missing or cannot run here;
            ``"full_precision"`` logs a warning and loads the model unquantized instead.

    Example:
        >>> ModelConfig("smollm2", quantization="4bit").quantization
        '4bit'
    """

    name_or_path: str = "smollm2"
    quantization: str = "none"
    dtype: str = "auto"
    compute_dtype: str = "auto"
    double_quant: bool = True
    device_map: Any = "auto"
    max_memory: Any = None
    adapters: Any = ()
    active_adapter: str | None = None
    merge_adapter: bool = False
    on_unsupported_quantization: str = "error"
    trust_remote_code: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name_or_path, str) or not self.name_or_path.strip():
            raise ConfigError(
                f"ModelConfig.name_or_path must be a non-empty string, got {self.name_or_path!r}"
            )
        if self.quantization not in QUANTIZATIONS:
            raise ConfigError(
                f"ModelConfig.quantization must be one of {QUANTIZATIONS}, got {self.quantization!r}"
            )
        for name in ("dtype", "compute_dtype"):
            if getattr(self, name) not in DTYPES:
                raise ConfigError(f"ModelConfig.{name} must be one of {DTYPES}, got {getattr(self, name)!r}")
        if self.on_unsupported_quantization not in ON_UNSUPPORTED:
            raise ConfigError(
                f"ModelConfig.on_unsupported_quantization must be one of {ON_UNSUPPORTED}, "
                f"got {self.on_unsupported_quantization!r}"
            )
        if isinstance(self.device_map, Mapping):
            object.__setattr__(self, "device_map", _pairs(self.device_map, "device_map"))
        elif not isinstance(self.device_map, (str, tuple)):
            raise ConfigError(
                f"ModelConfig.device_map must be a string or a mapping, got {self.device_map!r}"
            )
        object.__setattr__(self, "max_memory", _pairs(self.max_memory, "max_memory") or None)
        adapters = self.adapters
        if isinstance(adapters, (list, tuple)) and adapters and all(isinstance(a, str) for a in adapters):
            # A bare list of paths: name each adapter after its folder.
            from pathlib import Path

            adapters = {Path(a).name or f"adapter{n}": a for n, a in enumerate(adapters)}
        pairs = _pairs(adapters, "adapters")
        names = [n for n, _ in pairs]
        if len(set(names)) != len(names):
            raise ConfigError(f"ModelConfig.adapters has duplicate names: {names}")
        object.__setattr__(self, "adapters", pairs)
        if self.active_adapter is not None and self.active_adapter not in names:
            raise ConfigError(
                f"ModelConfig.active_adapter={self.active_adapter!r} is not one of the adapters {names or '(none)'}"
            )
        if self.merge_adapter and not pairs:
            raise ConfigError("ModelConfig.merge_adapter=True needs at least one adapter")

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> ModelConfig:
        """Build from a mapping (e.g. parsed YAML); unknown keys raise `ConfigError` naming them."""
        return from_mapping(cls, data, "ModelConfig")

    @property
    def adapter_map(self) -> dict[str, str]:
        """The adapters as an ordered ``{name: path}`` dict."""
        return dict(self.adapters)

    @property
    def default_adapter(self) -> str | None:
        """The adapter active by default, or None when there are no adapters."""
        if self.active_adapter is not None:
            return self.active_adapter
        return self.adapters[0][0] if self.adapters else None
