"""Model loading: quantisation (bitsandbytes), placement (accelerate), adapters (PEFT), one cached load per config."""

from __future__ import annotations

from llmrec.models.adapters import (
    DEFAULT_ADAPTER,
    DEFAULT_ADAPTERS,
    AdapterCard,
    AdapterCardError,
    AdapterError,
    adapter_names,
    read_adapter_card,
    read_card,
    resolve_adapter,
)
from llmrec.models.config import ModelConfig
from llmrec.models.loading import (
    LoadedModel,
    QuantizationUnavailableError,
    base_model_fingerprint,
    check_adapter,
    clear_model_cache,
    load_model,
    resolve_model_path,
    write_base_model_info,
)

__all__ = [
    "DEFAULT_ADAPTER",
    "DEFAULT_ADAPTERS",
    "AdapterCard",
    "AdapterCardError",
    "AdapterError",
    "LoadedModel",
    "ModelConfig",
    "QuantizationUnavailableError",
    "adapter_names",
    "base_model_fingerprint",
    "check_adapter",
    "clear_model_cache",
    "load_model",
    "read_adapter_card",
    "read_card",
    "resolve_adapter",
    "resolve_model_path",
    "write_base_model_info",
]
