"""Model loading: quantisation (bitsandbytes), placement (accelerate), adapters (PEFT), one cached load per config."""

from __future__ import annotations

from llmrec.models.config import ModelConfig
from llmrec.models.loading import (
    AdapterError,
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
    "AdapterError",
    "LoadedModel",
    "ModelConfig",
    "QuantizationUnavailableError",
    "base_model_fingerprint",
    "check_adapter",
    "clear_model_cache",
    "load_model",
    "resolve_model_path",
    "write_base_model_info",
]
