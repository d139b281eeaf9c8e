"""The machine-measured weight dtype: the decision from benchmark timings, its per-machine cache (atomic, reused,
never trusted when corrupt), explicit dtypes, and what a loaded model records. Timings are injected: no clock."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from llmrec.errors import ConfigError
from llmrec.models import ModelConfig, clear_model_cache, load_model, loading, machine
from llmrec.models.machine import (
    MEASURE_ENV,
    MIN_BF16_SPEEDUP,
    cache_path,
    cpu_dtype_choice,
    decide_cpu_dtype,
    machine_key,
    resolve_dtype,
)
from llmrec.models.tiny import save_tiny


class FakeBench:
    """A benchmark returning fixed timings and counting its calls."""

    def __init__(self, float32: float, bfloat16: float) -> None:
        self.seconds = {"float32": float32, "bfloat16": bfloat16}
        self.calls = 0

    def __call__(self) -> dict[str, float]:
        self.calls += 1
        return dict(self.seconds)


@pytest.fixture(autouse=True)
def _measuring(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(MEASURE_ENV, "1")  # tests/models/conftest.py sets 0 for the other tests
    monkeypatch.setenv("LLMREC_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(loading, "_LOGGED_REASONS", set())


@pytest.fixture(autouse=True)
def _fresh_models():
    clear_model_cache()
    yield
    clear_model_cache()


@pytest.mark.parametrize(
    ("float32", "bfloat16", "dtype", "words"),
    [
        (10.0, 5.0, "bfloat16", "bfloat16: measured 2.0x faster than float32 on this CPU (X)"),
        (10.0, 49.0, "float32", "float32: bfloat16 measured 4.9x slower on this CPU (X)"),
        (10.0, 9.0, "float32", "only 1.11x faster on this CPU (X), below the 1.2x"),
        (10.0, 10.0, "float32", "only 1.00x faster"),
        (MIN_BF16_SPEEDUP, 1.0, "bfloat16", "1.2x faster"),
        (MIN_BF16_SPEEDUP * 0.99, 1.0, "float32", "below the 1.2x"),
    ],
)
def test_the_decision_follows_the_measured_ratio(float32, bfloat16, dtype, words):
    choice = decide_cpu_dtype(float32, bfloat16, "X")
    assert choice.dtype == dtype
    assert choice.reason.startswith(f"{dtype}: ") and words in choice.reason


def test_the_decision_refuses_non_positive_timings():
    with pytest.raises(ValueError, match="positive"):
        decide_cpu_dtype(0.0, 1.0)


def test_the_benchmark_is_cached_atomically_and_reused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    writes = []
    import llmrec.io

    real_write = llmrec.io.atomic_write_text
    monkeypatch.setattr(llmrec.io, "atomic_write_text", lambda p, t: writes.append(p) or real_write(p, t))
    bench = FakeBench(float32=1.0, bfloat16=0.4)
    first = cpu_dtype_choice(measure=bench)
    assert bench.calls == 1 and first.dtype == "bfloat16" and "2.5x faster" in first.reason
    path = cache_path(machine_key(), tmp_path / "home")
    assert writes == [path]
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left beside it
    record = json.loads(path.read_text())
    assert record["key"] == machine_key() and record["seconds"] == {"float32": 1.0, "bfloat16": 0.4}

    second = cpu_dtype_choice(measure=bench)
    assert bench.calls == 1 and second == first  # read from the cache, not measured again
    assert writes == [path]
    # the default benchmark is not run either: the cached timings answer
    monkeypatch.setattr(machine, "measure_cpu_dtypes", FakeBench(1.0, 9.0))
    assert cpu_dtype_choice() == first


OTHER_CPU = "Some Other CPU"


@pytest.mark.parametrize(
    ("content", "seconds"),
    [
        ("{not json", None),
        ("", None),
        ("[1, 2]", None),
        (json.dumps({"format": 99, "seconds": {"float32": 1.0, "bfloat16": 0.1}}), None),
        (None, {}),
        (None, {"float32": 1.0, "bfloat16": -0.5}),
        (None, {"float32": 1.0, "bfloat16": "fast"}),
        (None, {"float32": 1.0}),
        (None, {"float32": True, "bfloat16": 0.5}),
        (
            OTHER_CPU,
            {"float32": 1.0, "bfloat16": 0.1},
        ),  # a good record of another machine under this one's name
    ],
)
def test_a_corrupt_cache_is_measured_again_not_trusted(content, seconds, tmp_path: Path, caplog):
    key = machine_key()
    path = cache_path(key, tmp_path / "home")
    path.parent.mkdir(parents=True)
    if seconds is not None:
        record_key = {**key, "cpu": OTHER_CPU} if content == OTHER_CPU else key
        content = json.dumps({"format": machine.CACHE_FORMAT, "key": record_key, "seconds": seconds})
    path.write_text(content)
    bench = FakeBench(float32=1.0, bfloat16=3.0)
    with caplog.at_level(logging.WARNING, logger="llmrec.models.machine"):
        choice = cpu_dtype_choice(measure=bench)
    assert bench.calls == 1 and choice.dtype == "float32" and "3.0x slower" in choice.reason
    assert any("measuring again" in r.getMessage() for r in caplog.records)
    assert json.loads(path.read_text())["seconds"] == {
        "float32": 1.0,
        "bfloat16": 3.0,
    }  # replaced by a good one
    assert cpu_dtype_choice(measure=bench) == choice and bench.calls == 1


def test_another_thread_count_is_another_machine(tmp_path: Path):
    bench = FakeBench(float32=1.0, bfloat16=0.5)
    threads = torch.get_num_threads()
    try:
        cpu_dtype_choice(measure=bench)
        torch.set_num_threads(threads + 1)
        cpu_dtype_choice(measure=bench)
    finally:
        torch.set_num_threads(threads)
    assert bench.calls == 2
    assert len(list((tmp_path / "home" / "machine").iterdir())) == 2


def test_a_bad_benchmark_result_is_refused_and_not_cached(tmp_path: Path):
    with pytest.raises(ValueError, match="benchmark returned"):
        cpu_dtype_choice(measure=lambda: {"float32": 1.0, "bfloat16": float("nan")})
    assert not (tmp_path / "home" / "machine").exists()


def test_the_env_variable_switches_the_benchmark(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    bench = FakeBench(float32=1.0, bfloat16=0.1)
    monkeypatch.setenv(MEASURE_ENV, "0")
    choice = cpu_dtype_choice(measure=bench)
    assert bench.calls == 0 and choice.dtype == "float32" and "not measured" in choice.reason
    assert not (tmp_path / "home").exists()
    monkeypatch.delenv(MEASURE_ENV)
    for default in (False, True):
        monkeypatch.setattr(machine, "MEASURE_BY_DEFAULT", default)
        assert cpu_dtype_choice(measure=bench).dtype == ("bfloat16" if default else "float32")
        assert bench.calls == int(default)
    monkeypatch.setenv(MEASURE_ENV, "yes")
    with pytest.raises(ConfigError, match=f"{MEASURE_ENV} must be 1 .* or 0 .*, got 'yes'"):
        cpu_dtype_choice(measure=bench)


def test_an_explicit_dtype_wins(monkeypatch: pytest.MonkeyPatch):
    bench = FakeBench(float32=1.0, bfloat16=0.1)  # bfloat16 10x faster: auto would pick it
    monkeypatch.setattr(machine, "measure_cpu_dtypes", bench)
    for name in ("float32", "bfloat16", "float16"):
        choice = resolve_dtype(name, on_gpu=False)
        assert choice.dtype == name and choice.reason == f"{name}: set explicitly (ModelConfig.dtype)"
    assert bench.calls == 0
    assert resolve_dtype("auto", on_gpu=False).dtype == "bfloat16" and bench.calls == 1


def test_the_real_benchmark_times_both_dtypes():
    seconds = machine.measure_cpu_dtypes(repeats=1, tokens=4)
    assert set(seconds) == {"float32", "bfloat16"} and all(s > 0 for s in seconds.values())
    key = machine_key()
    assert key["cpu"] and key["torch"] == torch.__version__ and key["threads"] == torch.get_num_threads()


def test_the_cpu_description_tells_same_named_cpus_apart(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    block = "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: {model}\nmodel name\t: AMD EPYC\n"
    described = []
    for model, flags in (("1", "fpu avx2"), ("17", "fpu avx2 avx512f avx512_bf16")):
        info = tmp_path / f"cpuinfo{model}"
        info.write_text(
            block.format(model=model) + f"flags\t\t: {flags}\n\nprocessor\t: 1\nmodel name\t: Other\n"
        )
        monkeypatch.setattr(machine, "_CPUINFO", str(info))
        described.append(machine.cpu_description())
    assert described == [
        "AMD EPYC (family 25 model 1; no bfloat16 flags)",
        "AMD EPYC (family 25 model 17; avx512_bf16)",
    ]


def test_placement_decides_cpu_or_gpu(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(loading, "_has_gpu", lambda: True)
    assert (
        loading._on_gpu("auto") and loading._on_gpu("cuda:0") and loading._on_gpu({"": "cuda:0", "x": "cpu"})
    )
    assert not loading._on_gpu("cpu") and not loading._on_gpu({"": "cpu", "lm_head": "disk"})
    monkeypatch.setattr(loading, "_has_gpu", lambda: False)
    assert not loading._on_gpu("auto")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny(tmp_path_factory.mktemp("tiny") / "model", seed=0)


def test_the_loaded_model_records_the_pick_and_logs_it_once(
    tiny_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog
):
    monkeypatch.setattr(machine, "measure_cpu_dtypes", FakeBench(float32=1.0, bfloat16=4.9))
    with caplog.at_level(logging.INFO, logger="llmrec.models.loading"):
        lm = load_model(ModelConfig(str(tiny_dir)))
        other = load_model(ModelConfig(str(tiny_dir), double_quant=False))  # another config, same pick
    assert other is not lm
    for model in (lm, other):
        assert model.dtype == "float32" and next(model.model.parameters()).dtype == torch.float32
        assert model.dtype_reason.startswith("float32: bfloat16 measured 4.9x slower on this CPU (")
    picks = [r for r in caplog.records if r.getMessage().startswith("weight dtype ")]
    assert [r.levelno for r in picks] == [logging.INFO]
    assert picks[0].getMessage() == f"weight dtype {lm.dtype_reason}"

    explicit = load_model(ModelConfig(str(tiny_dir), dtype="bfloat16"))
    assert explicit.dtype == "bfloat16" and next(explicit.model.parameters()).dtype == torch.bfloat16
    assert explicit.dtype_reason == "bfloat16: set explicitly (ModelConfig.dtype)"


def test_auto_loads_bfloat16_where_it_measures_faster(
    tiny_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    bench = FakeBench(float32=1.0, bfloat16=0.5)
    monkeypatch.setattr(machine, "measure_cpu_dtypes", bench)
    lm = load_model(ModelConfig(str(tiny_dir)))
    assert lm.dtype == "bfloat16" and next(lm.model.parameters()).dtype == torch.bfloat16
    assert "2.0x faster" in lm.dtype_reason
    clear_model_cache()
    assert load_model(ModelConfig(str(tiny_dir))).dtype == "bfloat16" and bench.calls == 1  # cached pick
    assert load_model(ModelConfig(str(tiny_dir), dtype="float32")).dtype == "float32"
