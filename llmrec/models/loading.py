"""Load a causal LM once per `ModelConfig`: precision/quantisation, accelerate placement, PEFT adapters.

This is the only module that touches bitsandbytes, accelerate and PEFT. A loaded model is cached per config, so
rerankers, the evaluation harness and the CLI never reload it per request.

Example:
    >>> lm = load_model(ModelConfig("smollm2", quantization="4bit"))  # doctest: +SKIP
    >>> with lm.using_adapter(None):  # doctest: +SKIP
    ...     ...  # the base model, adapters disabled for this block
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmrec.assets import ASSETS
from llmrec.errors import AssetError, ConfigError
from llmrec.models.adapters import (
    BASE_INFO_FILE,
    WEIGHTS_FILE,
    AdapterError,
    read_base_model_info,
    read_peft_config,
    resolve_adapter,
)
from llmrec.models.config import ModelConfig
from llmrec.models.machine import DtypeChoice, resolve_dtype

log = logging.getLogger(__name__)

#: Model assets `name_or_path` may name (the decoders of `llmrec.assets.ASSETS`).
MODEL_ASSETS = tuple(name for name, spec in ASSETS.items() if spec.decoder)

#: Config fields that define a model's architecture (an adapter trained on one model fits another only if equal).
ARCH_FIELDS = (
    "model_type",
    "hidden_size",
    "num_hidden_layers",
    "intermediate_size",
    "num_attention_heads",
    "num_key_value_heads",
    "vocab_size",
)


#: Bump when loading (dtype, quantization, adapter attach/merge, the float32 output head) makes a model compute
#: other logits from the same weights: evaluation caches and the score memo key on it.
#: Still 1 with the measured ``dtype="auto"`` (`llmrec.models.machine`): it is off by default, so ``auto`` stays
#: float32 on CPUs and bfloat16 on GPUs with bfloat16. Turning it on moves ``auto`` to bfloat16 on CPUs that measure
#: it faster (this 2-core AMD EPYC does), which changes cached scores there: bump then, unless the caches key on the
#: resolved dtype (`LoadedModel.dtype`) instead of ``ModelConfig.dtype``.
LOADING_VERSION = 1


class QuantizationUnavailableError(ConfigError):
    """bitsandbytes is missing or cannot run the requested quantisation on this platform."""


@dataclass
class LoadedModel:
    """A loaded model with its tokenizer and the config it came from (shared; treat as read-only).

    Attributes:
        model: the ``transformers`` causal LM (a ``peft.PeftModel`` when adapters are attached and not merged).
        tokenizer: its tokenizer (``pad_token`` always set).
        config: the `ModelConfig` it was loaded from.
        adapter_names: names of attached adapters (empty when none or when merged).
        merged_adapter: name of the adapter merged into the weights, if any.
        load_seconds: wall time of the load.
        dtype: the weight dtype of unquantized layers it was loaded in (``"auto"`` resolved; None when unknown,
            e.g. a `LoadedModel` built around a model in memory).
        dtype_reason: why that dtype, e.g. ``"float32: bfloat16 measured 4.9x slower on this CPU (...)"``.
    """

    model: Any
    tokenizer: Any
    config: ModelConfig
    adapter_names: tuple[str, ...] = ()
    merged_adapter: str | None = None
    load_seconds: float = 0.0
    dtype: str | None = None
    dtype_reason: str = ""
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    @property
    def device(self) -> Any:
        """The device inputs go to (that of the input embeddings under an accelerate device map)."""
        return self.model.get_input_embeddings().weight.device

    @property
    def context_length(self) -> int:
        """The longest sequence (prompt + generated tokens) the model accepts."""
        cfg = self.model.config
        for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
            value = getattr(cfg, name, None)
            if isinstance(value, int) and value > 0:
                return value
        limit = getattr(self.tokenizer, "model_max_length", None)
        return int(limit) if isinstance(limit, int) and 0 < limit < 10**8 else 2048

    @property
    def active_adapter(self) -> str | None:
        """The adapter active now (the merged one counts), or None for the bare base model."""
        if self.merged_adapter is not None:
            return self.merged_adapter
        if not self.adapter_names:
            return None
        active = getattr(self.model, "active_adapter", None)
        return active if isinstance(active, str) else None

    @contextlib.contextmanager
    def using_adapter(self, name: str | None) -> Iterator[LoadedModel]:
        """Activate adapter `name` (None = no adapter) for the duration of the block, then restore.

        Raises:
            AdapterError: `name` is not attached, or a merged adapter would have to be switched off.
        """
        with self._lock:
            if name == self.merged_adapter and name is not None:
                yield self
                return
            if self.merged_adapter is not None:
                raise AdapterError(
                    f"adapter {self.merged_adapter!r} is merged into the weights; cannot use "
                    f"{'no adapter' if name is None else repr(name)} (load without merge_adapter to switch)"
                )
            if name is None:
                if self.adapter_names:
                    with self.model.disable_adapter():
                        yield self
                else:
                    yield self
                return
            if name not in self.adapter_names:
                raise AdapterError(
                    f"adapter {name!r} is not loaded; loaded adapters: {list(self.adapter_names) or '(none)'}"
                )
            previous = self.model.active_adapter
            self.model.set_adapter(name)
            try:
                yield self
            finally:
                self.model.set_adapter(previous)


_CACHE: dict[ModelConfig, LoadedModel] = {}
_CACHE_LOCK = threading.Lock()


def load_model(config: ModelConfig | str | None = None, *, cache: bool = True) -> LoadedModel:
    """Load (or fetch from the in-process cache) the model described by `config`.

    Args:
        config: a `ModelConfig`, or just a name/path (full precision, no adapter); None = the default SmolLM2.
        cache: False loads a fresh, private instance (e.g. for training, which mutates it) and does not keep it.

    Raises:
        AssetError: the model folder / hub id cannot be loaded.
        QuantizationUnavailableError: bitsandbytes is missing or unsupported (message names the fallback).
        AdapterError: an adapter is missing, malformed or for another base model.
    """
    if config is None:
        config = ModelConfig()
    elif isinstance(config, str):
        config = ModelConfig(config)
    if not cache:
        return _load(config)
    with _CACHE_LOCK:
        cached = _CACHE.get(config)
        if cached is not None:
            return cached
        loaded = _load(config)
        _CACHE[config] = loaded
        return loaded


def clear_model_cache() -> None:
    """Forget every cached model (frees memory once no one else holds a reference)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def resolve_model_path(name_or_path: str) -> str:
    """A local folder for an asset name or an existing path; hub ids are returned unchanged."""
    if name_or_path in MODEL_ASSETS:
        from llmrec.assets import ensure_asset

        return str(ensure_asset(name_or_path))
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise AssetError(f"model folder {path} has no config.json; is it a transformers model folder?")
        return str(path)
    if name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1:
        raise AssetError(f"model path {name_or_path!r} does not exist")
    return name_or_path  # a hub id


def _has_gpu() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def _on_gpu(device_map: Any) -> bool:
    """Whether a model placed by `device_map` (a string or a dict) computes on a GPU."""
    if not _has_gpu():
        return False
    if isinstance(device_map, dict):
        return any(str(where) not in ("cpu", "disk") for where in device_map.values())
    return str(device_map) != "cpu"


_LOGGED_REASONS: set[str] = set()


def _resolve(name: str, on_gpu: bool, field: str = "dtype") -> DtypeChoice:
    """`resolve_dtype`, logging each reason once per process (at INFO)."""
    choice = resolve_dtype(name, on_gpu=on_gpu, field=field)
    if choice.reason not in _LOGGED_REASONS:
        _LOGGED_REASONS.add(choice.reason)
        log.info("weight dtype %s", choice.reason)
    return choice


def _dtype(name: str) -> Any:
    import torch

    return getattr(torch, name)


def _quantization_config(config: ModelConfig, on_gpu: bool) -> Any:
    """The BitsAndBytesConfig for `config`, or None for full precision (possibly after a fallback)."""
    if config.quantization == "none":
        return None
    problem = None
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as exc:
        problem = f"bitsandbytes is not installed ({exc}; pip install bitsandbytes)"
    except Exception as exc:  # an installed but broken/unsupported build raises all sorts of errors
        problem = f"bitsandbytes cannot be imported on this platform ({type(exc).__name__}: {exc})"
    if problem is not None:
        fallback = f"full precision (quantization='none', dtype={config.dtype!r})"
        if config.on_unsupported_quantization == "full_precision":
            log.warning(
                "%s quantization unavailable: %s; falling back to %s", config.quantization, problem, fallback
            )
            return None
        raise QuantizationUnavailableError(
            f"{config.quantization} quantization unavailable: {problem}. Fallback: load in {fallback}, "
            "or set on_unsupported_quantization='full_precision' to fall back automatically"
        )
    from transformers import BitsAndBytesConfig

    if config.quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=config.double_quant,
        bnb_4bit_compute_dtype=_dtype(_resolve(config.compute_dtype, on_gpu, "compute_dtype").dtype),
    )


def _load(config: ModelConfig) -> LoadedModel:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.perf_counter()
    path = resolve_model_path(config.name_or_path)
    device_map = dict(config.device_map) if isinstance(config.device_map, tuple) else config.device_map
    if device_map == "auto" and not _has_gpu():
        device_map = (
            "cpu"  # same placement; skips accelerate's dispatch hooks, which only cost time on one device
        )
    on_gpu = _on_gpu(device_map)
    dtype = _resolve(config.dtype, on_gpu)
    quant = _quantization_config(config, on_gpu)
    kwargs: dict[str, Any] = {"dtype": _dtype(dtype.dtype), "trust_remote_code": config.trust_remote_code}
    if quant is not None:
        kwargs["quantization_config"] = quant
    kwargs["device_map"] = device_map
    if config.max_memory:
        kwargs["max_memory"] = {(int(k) if k.isdigit() else k): v for k, v in config.max_memory}
    log.info("loading model %s (%s, %s, device_map=%s)", path, config.quantization, dtype.dtype, device_map)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=config.trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except (OSError, ValueError, RuntimeError, ImportError) as exc:
        if quant is not None and "bitsandbytes" in str(exc).lower():
            raise QuantizationUnavailableError(
                f"{config.quantization} quantization failed on this platform: {exc}. Fallback: "
                "quantization='none' (full precision), or on_unsupported_quantization='full_precision'"
            ) from exc
        raise AssetError(f"cannot load model {config.name_or_path!r} from {path}: {exc}") from exc
    model.eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    loaded = LoadedModel(
        model=model, tokenizer=tokenizer, config=config, dtype=dtype.dtype, dtype_reason=dtype.reason
    )
    if config.adapters:
        _attach_adapters(loaded)
    _release_freed_memory()
    loaded.load_seconds = time.perf_counter() - started
    log.info("loaded %s in %.1f s", config.name_or_path, loaded.load_seconds)
    return loaded


def _release_freed_memory() -> None:
    """Hand memory freed during loading back to the OS. Quantising on the CPU allocates transient full-precision
    copies; glibc keeps their pages (~300 MB for SmolLM2 in 4-bit) unless asked to trim."""
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return
    try:
        trim = ctypes.CDLL(libc_name).malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim
        return
    trim(0)


# ----------------------------------------------------------------------------------------------- adapters


def architecture(model: Any) -> dict[str, Any]:
    """The architecture-defining fields of a model's config (what an adapter's shapes depend on)."""
    cfg = model.config
    return {name: getattr(cfg, name, None) for name in ARCH_FIELDS}


def base_model_fingerprint(model: Any) -> str:
    """A short hash identifying a base checkpoint, equal across precisions and 4-/8-bit loads.

    It hashes the architecture and the signs of the first 8,192 input-embedding values (embeddings are never
    quantised, and rounding to another dtype never flips a sign), so a fine-tuned sibling of the same
    architecture (e.g. base vs instruct) gets another fingerprint.
    """
    import torch

    base = _unwrap(model)
    weight = base.get_input_embeddings().weight
    with torch.no_grad():
        signs = (weight.detach().reshape(-1)[:8192].float().cpu() > 0).to(torch.uint8).numpy().tobytes()
    digest = hashlib.sha256(json.dumps(architecture(base), sort_keys=True).encode() + signs)
    return digest.hexdigest()[:16]


def write_base_model_info(
    loaded: LoadedModel | Any, adapter_dir: str | Path, name: str | None = None
) -> Path:
    """Record in `adapter_dir` which base model an adapter was trained on (read back by `load_model`)."""
    from llmrec.io import atomic_write_text

    model = loaded.model if isinstance(loaded, LoadedModel) else loaded
    if name is None and isinstance(loaded, LoadedModel):
        name = loaded.config.name_or_path
    info = {
        "name_or_path": name,
        "architecture": architecture(_unwrap(model)),
        "fingerprint": base_model_fingerprint(model),
    }
    return atomic_write_text(Path(adapter_dir) / BASE_INFO_FILE, json.dumps(info, indent=2) + "\n")


def _unwrap(model: Any) -> Any:
    """The transformers model under a PEFT wrapper (or the model itself)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def check_adapter(model: Any, path: str | Path) -> dict[str, Any]:
    """Check that the PEFT adapter in `path` fits `model`; return its adapter_config.

    Checks, in order: the folder and its adapter_config.json exist; the base-model record (if the adapter has
    one) matches the model's fingerprint; the adapter's base model folder (if it is a local folder) has the
    same architecture; every LoRA matrix's shape matches the module it targets.

    Raises:
        AdapterError: naming the adapter, what was expected and what was found.
    """
    folder = Path(path).expanduser()
    adapter_cfg = read_peft_config(folder)
    base = _unwrap(model)
    arch = architecture(base)
    info = read_base_model_info(folder)
    if info is not None:
        if info.get("architecture") and info["architecture"] != arch:
            raise AdapterError(
                f"adapter {folder} was trained on base model {info.get('name_or_path')!r} with architecture "
                f"{info['architecture']}, but the loaded model has {arch}"
            )
        if info.get("fingerprint") and info["fingerprint"] != base_model_fingerprint(base):
            raise AdapterError(
                f"adapter {folder} was trained on base model {info.get('name_or_path')!r} (fingerprint "
                f"{info['fingerprint']}), but the loaded model's fingerprint is {base_model_fingerprint(base)}: "
                "same architecture, different weights"
            )
    base_name = adapter_cfg.get("base_model_name_or_path")
    if base_name and Path(str(base_name)).expanduser().is_dir():
        other_cfg = Path(str(base_name)).expanduser() / "config.json"
        if other_cfg.is_file():
            other = json.loads(other_cfg.read_text())
            other_arch = {k: other.get(k) for k in ARCH_FIELDS}
            diff = {
                k: (other_arch[k], arch[k])
                for k in ARCH_FIELDS
                if other_arch[k] is not None and other_arch[k] != arch[k]
            }
            if diff:
                raise AdapterError(
                    f"adapter {folder} was trained on {base_name!r}, whose architecture differs from the loaded "
                    f"model's: "
                    + ", ".join(f"{k}={a} (adapter base) vs {b} (loaded)" for k, (a, b) in diff.items())
                )
    _check_adapter_shapes(base, folder)
    return adapter_cfg


def _check_adapter_shapes(base: Any, folder: Path) -> None:
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        if (folder / "adapter_model.bin").is_file():
            return  # legacy pickle format: PEFT itself checks shapes on load
        raise AdapterError(f"adapter {folder} has no {WEIGHTS_FILE}")
    from safetensors import safe_open

    modules = dict(base.named_modules())
    with safe_open(str(weights), framework="pt") as handle:
        for key in handle.keys():
            if ".lora_A." not in key and ".lora_B." not in key:
                continue
            module_name = key.split(".lora_")[0]
            for prefix in ("base_model.model.", "base_model."):
                if module_name.startswith(prefix):
                    module_name = module_name[len(prefix) :]
                    break
            module = modules.get(module_name)
            if module is None:
                raise AdapterError(
                    f"adapter {folder} targets module {module_name!r}, which the loaded model "
                    f"({base.config.model_type}) does not have: it was trained on another base model"
                )
            shape = tuple(handle.get_slice(key).get_shape())
            in_f, out_f = getattr(module, "in_features", None), getattr(module, "out_features", None)
            if in_f is None or out_f is None:
                continue
            expected = in_f if ".lora_A." in key else out_f
            got = shape[1] if ".lora_A." in key else shape[0]
            if got != expected:
                raise AdapterError(
                    f"adapter {folder} does not fit the loaded model: {key} has shape {shape}, but module "
                    f"{module_name!r} has in_features={in_f}, out_features={out_f} (adapter for another base model)"
                )


def _attach_adapters(loaded: LoadedModel) -> None:
    from peft import PeftModel

    config = loaded.config
    folders = [(name, str(resolve_adapter(path))) for name, path in config.adapters]  # names or paths
    for _name, path in folders:
        check_adapter(loaded.model, path)
    model = loaded.model
    for n, (name, path) in enumerate(folders):
        log.info("attaching adapter %r from %s", name, path)
        try:
            if n == 0:
                model = PeftModel.from_pretrained(model, path, adapter_name=name, is_trainable=False)
            else:
                model.load_adapter(path, adapter_name=name, is_trainable=False)
        except (ValueError, RuntimeError, KeyError) as exc:
            raise AdapterError(f"cannot attach adapter {name!r} from {path}: {exc}") from exc
    active = config.default_adapter
    assert active is not None
    model.set_adapter(active)
    model.eval()
    if config.merge_adapter:
        if config.quantization != "none":
            log.warning(
                "merging adapter %r into %s weights re-quantises them (small rounding)",
                active,
                config.quantization,
            )
        for name, _ in config.adapters:
            if name != active:
                model.delete_adapter(name)
        model = model.merge_and_unload()
        loaded.merged_adapter = active
        loaded.adapter_names = ()
    else:
        loaded.adapter_names = tuple(name for name, _ in config.adapters)
    loaded.model = model
