"""Which weight dtype ``dtype="auto"`` loads: bfloat16 on a CPU only where this CPU runs it faster, measured.

bfloat16 halves the memory traffic of the weights, but only CPUs with native bfloat16 instructions (AVX512-BF16,
AMX) compute it fast. The same ``llmrec rank`` (SmolLM2, 50 candidates, merged adapter) took 5.5x longer in
bfloat16 than in float32 on an AMD EPYC without AVX512-BF16, and 1.5x less on an AMD EPYC with it; both report the
CPU model "AMD EPYC". So on a CPU `resolve_dtype` measures instead of guessing: `measure_cpu_dtypes` times the
linear layers of one decoder layer shaped like SmolLM2-135M's in float32 and in bfloat16 (a few interleaved
repeats, medians; a fraction of a second), once per machine. The timings are cached in
``$LLMREC_HOME/machine/cpu-dtype-<key>.json``, keyed on `machine_key` (the CPU's model, family and bfloat16
flags, the torch version, torch's CPU capability and its thread count), so later loads read them. GPUs load
bfloat16 where they support it natively and float32 elsewhere.

The measured pick is on by default (`MEASURE_BY_DEFAULT`; ``LLMREC_MEASURE_DTYPE=0`` turns it off: ``auto`` is
then float32 on every CPU). Training and the evaluation harness pin ``auto`` to float32 on a CPU (`pinned_dtype`),
so an adapter retrains and a report replays the same on any CPU; ranking uses the pick.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: bfloat16 is picked on a CPU only when it measures at least this much faster than float32: it rounds the
#: weights (rank correlation 0.995 with float32), which a speed-up within the benchmark's noise does not pay for.
MIN_BF16_SPEEDUP = 1.2

#: ``1``: ``auto`` measures on a CPU; ``0``: it is float32 on every CPU without measuring; unset: `MEASURE_BY_DEFAULT`.
MEASURE_ENV = "LLMREC_MEASURE_DTYPE"

#: Whether ``auto`` measures on a CPU when `MEASURE_ENV` is unset. Off for now: this machine measures bfloat16
#: 2x faster, so turning it on moves every ``auto`` load here to bfloat16, and the evaluation harness (its caches,
#: ``--verify`` tolerances), adapter training and the test suites still expect float32 on CPUs.
MEASURE_BY_DEFAULT = True

#: Bump when the benchmark or the cache file's layout changes (older cache files are then measured again).
CACHE_FORMAT = 1

#: SmolLM2-135M's decoder layer: hidden size, MLP size, key/value width (3 key/value heads of 64).
_HIDDEN, _MLP, _KV = 576, 1536, 192

_CPUINFO = "/proc/cpuinfo"

#: /proc/cpuinfo flags that decide how fast bfloat16 runs.
_BF16_FLAGS = ("avx512_bf16", "amx_bf16", "amx_tile", "avx_ne_convert")

#: /proc/cpuinfo fields that tell two CPUs of one model name apart (e.g. "AMD EPYC" under KVM), and their labels.
_ID_FIELDS = (("cpu family", "family"), ("model", "model"), ("stepping", "stepping"))


@dataclass(frozen=True)
class DtypeChoice:
    """A resolved weight dtype and why it was picked.

    Attributes:
        dtype: ``"float32"``, ``"bfloat16"`` or ``"float16"``.
        reason: one line for logs and reports, e.g. ``"float32: bfloat16 measured 4.9x slower on this CPU (...)"``.
    """

    dtype: str
    reason: str


def cpu_description() -> str:
    """The CPU's model name with what tells two CPUs of the same name apart for bfloat16 (family, model,
    stepping, bfloat16 flags), e.g. ``"AMD EPYC (family 25 model 17 stepping 1; avx512_bf16)"``."""
    info: dict[str, str] = {}
    try:
        with open(_CPUINFO, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if not line.strip():
                    break  # the first processor's block is enough
                key, _, value = line.partition(":")
                info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    name = info.get("model name") or platform.processor() or platform.machine() or "unknown CPU"
    if not info:
        return name
    ids = " ".join(f"{label} {info[k]}" for k, label in _ID_FIELDS if info.get(k))
    flags = set(info.get("flags", "").split())
    bf16 = ", ".join(f for f in _BF16_FLAGS if f in flags) or "no bfloat16 flags"
    return f"{name} ({ids}; {bf16})" if ids else f"{name} ({bf16})"


def machine_key() -> dict[str, Any]:
    """What the benchmark's answer depends on: the CPU, the torch version, torch's CPU kernels and thread count."""
    import torch

    return {
        "cpu": cpu_description(),
        "torch": torch.__version__,
        "capability": str(torch.backends.cpu.get_cpu_capability()),
        "threads": int(torch.get_num_threads()),
    }


def measure_cpu_dtypes(repeats: int = 7, tokens: int = 128) -> dict[str, float]:
    """Median seconds of one decoder layer's linear stack (SmolLM2-135M's shapes: attention projections and the
    gated MLP over `tokens` tokens) in float32 and in bfloat16, after one warm-up each; repeats interleave the two
    dtypes so a load spike from another process hits both."""
    import torch
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(0)
    shapes = [(_HIDDEN, _HIDDEN), (_KV, _HIDDEN), (_KV, _HIDDEN), (_HIDDEN, _HIDDEN), (_MLP, _HIDDEN),
              (_MLP, _HIDDEN), (_HIDDEN, _MLP)]  # fmt: skip
    weights32 = [torch.randn(shape, generator=gen) * 0.02 for shape in shapes]
    x32 = torch.randn((tokens, _HIDDEN), generator=gen)
    cases = {
        "float32": (weights32, x32),
        "bfloat16": ([w.to(torch.bfloat16) for w in weights32], x32.to(torch.bfloat16)),
    }

    def layer(weights: list[Any], x: Any) -> Any:
        q, k, v, o, gate, up, down = weights
        h = x + F.linear(F.linear(x, q), o)
        F.linear(x, k)  # the key and value projections (attention itself multiplies no weights)
        F.linear(x, v)
        return h + F.linear(F.silu(F.linear(h, gate)) * F.linear(h, up), down)

    times: dict[str, list[float]] = {name: [] for name in cases}
    with torch.inference_mode():
        for weights, x in cases.values():
            layer(weights, x)  # warm-up: kernel selection, first-touch allocations
        for _ in range(repeats):
            for name, (weights, x) in cases.items():
                start = time.perf_counter()
                layer(weights, x)
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def decide_cpu_dtype(float32_seconds: float, bfloat16_seconds: float, cpu: str = "this CPU") -> DtypeChoice:
    """The CPU weight dtype for these benchmark timings: bfloat16 only when it is at least `MIN_BF16_SPEEDUP`
    times faster than float32."""
    if bfloat16_seconds <= 0 or float32_seconds <= 0:
        raise ValueError(f"benchmark timings must be positive, got {float32_seconds}, {bfloat16_seconds}")
    speedup = float32_seconds / bfloat16_seconds
    where = f"on this CPU ({cpu})"
    if speedup >= MIN_BF16_SPEEDUP:
        return DtypeChoice("bfloat16", f"bfloat16: measured {speedup:.1f}x faster than float32 {where}")
    if speedup < 1:
        return DtypeChoice("float32", f"float32: bfloat16 measured {1 / speedup:.1f}x slower {where}")
    return DtypeChoice(
        "float32",
        f"float32: bfloat16 measured only {speedup:.2f}x faster {where}, below the {MIN_BF16_SPEEDUP}x that "
        "pays for its rounding",
    )


def cache_path(key: Mapping[str, Any], home: Path | None = None) -> Path:
    """The cache file of the benchmark's timings for `key` (under ``$LLMREC_HOME/machine``)."""
    if home is None:
        from llmrec.assets import llmrec_home

        home = llmrec_home()
    digest = hashlib.sha256(json.dumps(dict(key), sort_keys=True).encode()).hexdigest()[:16]
    return home / "machine" / f"cpu-dtype-{digest}.json"


def _timings(value: object) -> dict[str, float] | None:
    """``{"float32": s, "bfloat16": s}`` from `value` when both are finite positive numbers, else None."""
    if not isinstance(value, Mapping):
        return None
    out = {}
    for name in ("float32", "bfloat16"):
        seconds = value.get(name)
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            return None
        if not (math.isfinite(seconds) and seconds > 0):
            return None
        out[name] = float(seconds)
    return out


def _read_timings(path: Path, key: Mapping[str, Any]) -> dict[str, float] | None:
    """The cached timings for `key`, or None when the file is missing or not a valid record for `key`."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        log.warning("ignoring unreadable dtype benchmark cache %s (%s); measuring again", path, exc)
        return None
    if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT:
        problem = f"not a format-{CACHE_FORMAT} record"
    elif data.get("key") != dict(key):
        problem = f"made for {data.get('key')!r}, not {dict(key)!r}"
    elif (timings := _timings(data.get("seconds"))) is None:
        problem = f"timings {data.get('seconds')!r} are not positive numbers for float32 and bfloat16"
    else:
        return timings
    log.warning("ignoring dtype benchmark cache %s: %s; measuring again", path, problem)
    return None


def measuring() -> bool:
    """Whether ``auto`` measures on a CPU: `MEASURE_ENV` (``1`` / ``0``), else `MEASURE_BY_DEFAULT`."""
    value = os.environ.get(MEASURE_ENV, "").strip()
    if value in ("", "1", "0"):
        return MEASURE_BY_DEFAULT if not value else value == "1"
    from llmrec.errors import ConfigError

    raise ConfigError(f"{MEASURE_ENV} must be 1 (measure) or 0 (float32 on CPUs), got {value!r}")


def cpu_dtype_choice(
    *, home: Path | None = None, measure: Callable[[], Mapping[str, float]] | None = None
) -> DtypeChoice:
    """The weight dtype for ``dtype="auto"`` on this machine's CPU: from the cached benchmark timings, else
    measured now (`measure_cpu_dtypes`, or `measure`) and cached atomically. Float32 without measuring unless
    `measuring`."""
    if not measuring():
        return DtypeChoice(
            "float32", f"float32: the default on CPUs (bfloat16 not measured; {MEASURE_ENV}=1 measures)"
        )
    key = machine_key()
    path = cache_path(key, home)
    timings = _read_timings(path, key)
    if timings is None:
        start = time.perf_counter()
        measured = (measure or measure_cpu_dtypes)()
        timings = _timings(measured)
        if timings is None:
            raise ValueError(
                f"the dtype benchmark returned {measured!r}, not positive float32/bfloat16 seconds"
            )
        log.info(
            "measured float32 vs bfloat16 on this CPU in %.2f s: %.4f s vs %.4f s per layer (cached in %s)",
            time.perf_counter() - start,
            timings["float32"],
            timings["bfloat16"],
            path,
        )
        from llmrec.io import atomic_write_text

        record = {
            "format": CACHE_FORMAT,
            "key": key,
            "seconds": {"float32": timings["float32"], "bfloat16": timings["bfloat16"]},
            "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        try:
            atomic_write_text(path, json.dumps(record, indent=2) + "\n")
        except OSError as exc:  # a read-only home still loads the model; it measures again next time
            log.warning("cannot cache the dtype benchmark in %s (%s)", path, exc)
    threads = key["threads"]
    cpu = f"{key['cpu']}, {threads} thread{'s' if threads != 1 else ''}"
    return decide_cpu_dtype(timings["float32"], timings["bfloat16"], cpu)


def gpu_dtype_choice() -> DtypeChoice:
    """bfloat16 on a GPU where torch supports it (`torch.cuda.is_bf16_supported`), else float32."""
    import torch

    if torch.cuda.is_bf16_supported():
        return DtypeChoice("bfloat16", "bfloat16: the default on GPUs with bfloat16")
    return DtypeChoice("float32", "float32: this GPU does not support bfloat16")


def resolve_dtype(name: str, *, on_gpu: bool, field: str = "dtype") -> DtypeChoice:
    """The dtype `name` (a `ModelConfig` dtype) loads as: an explicit one as it is, ``"auto"`` per device."""
    if name != "auto":
        return DtypeChoice(name, f"{name}: set explicitly (ModelConfig.{field})")
    return gpu_dtype_choice() if on_gpu else cpu_dtype_choice()


def pinned_dtype(name: str) -> str:
    """``"auto"`` as training and the evaluation harness resolve it: float32 where no GPU is visible (adapters that
    retrain and reports that replay the same on any CPU, bfloat16 or not), the GPU's pick on a GPU; any other
    dtype as it is. Ranking (`Reranker`, ``llmrec rank``) resolves ``"auto"`` per machine (`resolve_dtype`)."""
    if name != "auto":
        return name
    import torch

    return "auto" if torch.cuda.is_available() else "float32"
