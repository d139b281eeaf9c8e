"""GPU check: 4-bit NF4 loading, QLoRA training and the three scorers on CUDA, with a tiny random Llama.

Never run on a GPU yet: it was written in a session without one and only smoke-tested on a CPU (where it falls
back to a CPU run and says so). The 4-bit CUDA path and QLoRA training have never run on a GPU in this project;
this script is the prepared check for the first session that is lent one. It is not a CI dependency and not a
test: it downloads nothing (the model is built from a config by `llmrec.models.tiny`, the data is synthetic), and
is sized to finish in well under 8 minutes on one GPU (seconds, once torch is imported).

Stages, each printed as PASS or FAIL with its timing and what it measured:
  env         torch, CUDA device, bitsandbytes, the other packages the stages import
  load-4bit   `load_model(ModelConfig(tiny, quantization="4bit", device_map="auto"))`: Linear4bit NF4 layers on
              the GPU, finite logits of one forward pass
  qlora       20 optimizer steps of llmrec's trainer (listwise, LoRA r=8 on q/v over the 4-bit weights): finite
              losses, an adapter folder with its card
  listwise    `Reranker` with that adapter (one forward pass, label logits); the adapter changes the scores
  pointwise   `Reranker` yes/no scoring with the shared-prefix KV cache, matching a run without the cache
  generative  `Reranker` generative ranking (greedy decoding; a random model writes nonsense, so parse
              failures are expected and only a complete ranking of the candidates is checked)
Exit status: 0 when every stage that ran passed, 1 otherwise (2 for bad arguments).

Where CUDA is missing the stages run on the CPU instead (4-bit too, if bitsandbytes is installed), and the run
is labelled a CPU smoke run, not a GPU result; ``--require-cuda`` turns that into a failure.

The GPU machine lent to sessions has torch, transformers, peft and accelerate but no bitsandbytes and no package
registry. Prepare a trimmed copy here (the package's Python files plus the CUDA 13.0 library, ~4 MB) under the
ignored ``build/`` folder, carry it along and put it on PYTHONPATH::

    python eval/gpu_check.py --prepare-bnb build/gpu-vendor          # here, once
    # device run: carry ["build/gpu-vendor"], command:
    PYTHONPATH=$PWD/build/gpu-vendor:$PWD python eval/gpu_check.py --require-cuda

Usage:
    python eval/gpu_check.py [--require-cuda] [--steps 20] [--keep DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import math
import os
import platform
import random
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

N_CANDIDATES = 10
BNB_CUDA_LIB = "libbitsandbytes_cuda130.so"


class StageFailed(Exception):
    """A check inside a stage did not hold."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise StageFailed(message)


class Report:
    """Runs stages, prints one PASS / FAIL / SKIP line each with its timing, and remembers the outcome."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.results: list[tuple[str, str, float, str]] = []

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[dict[str, str]]:
        note: dict[str, str] = {}
        _sync()
        started = time.perf_counter()
        try:
            yield note
        except StageFailed as exc:
            self._add(name, "FAIL", started, str(exc))
        except Exception as exc:  # a crash is this stage's failure; the traceback is printed for the log
            traceback.print_exc()
            self._add(name, "FAIL", started, f"{type(exc).__name__}: {exc}")
        else:
            self._add(name, "PASS", started, note.get("detail", ""))

    def _add(self, name: str, status: str, started: float, detail: str) -> None:
        _sync()
        seconds = time.perf_counter() - started
        self.results.append((name, status, seconds, detail))
        print(f"[{status}] {name:<11} {seconds:7.2f} s  {detail}", flush=True)

    def passed(self, name: str) -> bool:
        return any(n == name and s == "PASS" for n, s, _, _ in self.results)

    @property
    def ok(self) -> bool:
        return all(status != "FAIL" for _, status, _, _ in self.results)


def _sync() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.synchronize()


def prepare_bnb(dest: Path) -> int:
    """Copy the installed bitsandbytes, less every native library but the CUDA 13.0 one, into `dest`."""
    spec = importlib.util.find_spec("bitsandbytes")
    if spec is None or not spec.submodule_search_locations:
        print("bitsandbytes is not installed here; install it (pip install bitsandbytes) and run again")
        return 1
    source = Path(next(iter(spec.submodule_search_locations)))
    target = dest / "bitsandbytes"
    if target.exists():
        shutil.rmtree(target)
    keep = {BNB_CUDA_LIB}
    shutil.copytree(
        source,
        target,
        ignore=lambda _d, names: [n for n in names if (n.endswith(".so") and n not in keep) or n == "__pycache__"],
    )
    size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
    check_lib = (target / BNB_CUDA_LIB).is_file()
    print(f"copied {source} -> {target} ({size / 2**20:.1f} MiB, {BNB_CUDA_LIB}: {'yes' if check_lib else 'MISSING'})")
    return 0 if check_lib else 1


def write_dataset(folder: Path, *, users: int = 16, items: int = 60, per_user: int = 14, seed: int = 3) -> Path:
    """A small synthetic catalogue and chronological, mostly liked histories, as RecBole atomic files."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    genres = ("Comedy", "Drama", "Action")
    lines = ["item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq"]
    lines += [f"{i}\tFilm {i}\t{1970 + i % 30}\t{genres[i % 3]}" for i in range(1, items + 1)]
    (folder / "synth.item").write_text("\n".join(lines) + "\n")
    weights = [0.7**i + 0.05 for i in range(items)]
    lines = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    for user in range(1, users + 1):
        seen: list[int] = []
        while len(seen) < per_user:
            item = rng.choices(range(1, items + 1), weights=weights)[0]
            if item not in seen:
                seen.append(item)
        for t, item in enumerate(seen):
            rating = 5 if rng.random() < 0.75 else 2
            lines.append(f"{user}\t{item}\t{rating}\t{1_000_000 + 1000 * user + t}")
    (folder / "synth.inter").write_text("\n".join(lines) + "\n")
    return folder


def _finite(values: Any) -> bool:
    return all(math.isfinite(float(v)) for v in values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--require-cuda", action="store_true", help="fail instead of falling back to the CPU")
    parser.add_argument("--steps", type=int, default=20, help="QLoRA optimizer steps (default 20)")
    parser.add_argument("--keep", type=Path, help="build the model, data and adapter here (default: a temp dir)")
    parser.add_argument("--prepare-bnb", type=Path, metavar="DIR", help="only copy a trimmed bitsandbytes into DIR")
    args = parser.parse_args(argv)
    if args.prepare_bnb:
        return prepare_bnb(args.prepare_bnb)
    if args.steps < 1:
        parser.error("--steps must be >= 1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    total_started = time.perf_counter()
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        return run(args.keep, args, total_started)
    with tempfile.TemporaryDirectory(prefix="llmrec-gpu-check-") as tmp:
        return run(Path(tmp), args, total_started)


def run(work: Path, args: argparse.Namespace, total_started: float) -> int:
    import torch

    cuda = torch.cuda.is_available()
    report = Report("cuda" if cuda else "cpu")
    ctx: dict[str, Any] = {}

    with report.stage("env") as note:
        found = {}
        for module in ("transformers", "peft", "accelerate", "bitsandbytes", "jinja2", "yaml"):
            try:
                found[module] = getattr(importlib.import_module(module), "__version__", "?")
            except Exception as exc:  # bitsandbytes can fail at import on a machine without its library
                found[module] = f"missing ({type(exc).__name__}: {str(exc)[:80]})"
        gpu = torch.cuda.get_device_name(0) if cuda else "none"
        print(f"python {platform.python_version()}, torch {torch.__version__} (CUDA build {torch.version.cuda}), "
              f"GPU: {gpu}; " + ", ".join(f"{k} {v}" for k, v in found.items()), flush=True)
        ctx["bnb"] = not found["bitsandbytes"].startswith("missing")
        for module in ("transformers", "peft", "accelerate", "jinja2", "yaml"):
            check(not found[module].startswith("missing"), f"{module} is needed by every stage: {found[module]}")
        if not cuda:
            print("NO CUDA DEVICE: running every stage on the CPU as a smoke run. This is NOT a GPU result.",
                  flush=True)
            check(not args.require_cuda, "--require-cuda was given and torch sees no CUDA device")
        note["detail"] = f"device={report.device} ({gpu}), bitsandbytes={'yes' if ctx['bnb'] else 'no'}"
    if not report.passed("env"):
        return finish(report, total_started)

    from llmrec.data import load_dataset
    from llmrec.models import ModelConfig, clear_model_cache, load_model
    from llmrec.models.tiny import save_tiny
    from llmrec.ranking import Reranker, RerankerConfig

    model_dir = save_tiny(work / "tiny-llama", seed=0, hidden_size=128, init_range=0.3)
    dataset = load_dataset(write_dataset(work / "synth"))
    quant = "4bit" if ctx["bnb"] else "none"
    if not ctx["bnb"]:
        print("bitsandbytes is missing: the 4-bit stages fail and the scorers run in full precision "
              "(see --prepare-bnb in this script's docstring)", flush=True)

    def model_config(**extra: Any) -> Any:
        return ModelConfig(str(model_dir), quantization=quant, device_map="auto", **extra)

    with report.stage("load-4bit") as note:
        check(ctx["bnb"], "bitsandbytes is not importable, so there is no 4-bit path to check")
        lm = load_model(model_config())
        layers = [m for m in lm.model.modules() if type(m).__name__ == "Linear4bit"]
        check(bool(layers), "no Linear4bit layer in the loaded model")
        kinds = {getattr(m.weight, "quant_type", "?") for m in layers}
        check(kinds == {"nf4"}, f"4-bit layers are {kinds}, expected nf4")
        devices = {str(p.device) for p in lm.model.parameters()}
        if cuda:
            check(all(d.startswith("cuda") for d in devices), f"parameters on {devices}, expected the GPU only")
        with torch.inference_mode():
            logits = lm.model(input_ids=torch.tensor([[1, 2, 3, 4, 5]], device=lm.device)).logits
        check(bool(torch.isfinite(logits).all()), "non-finite logits from the 4-bit model")
        memory = f", GPU memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB" if cuda else ""
        note["detail"] = f"{len(layers)} NF4 Linear4bit layers on {sorted(devices)}, load {lm.load_seconds:.2f} s{memory}"

    with report.stage("qlora") as note:
        check(ctx["bnb"], "bitsandbytes is not importable: QLoRA needs 4-bit weights")
        from llmrec.training import TrainConfig, read_card, train

        cfg = TrainConfig.from_dict({
            "output": str(work / "adapter"),
            "overwrite": True,
            "mode": "listwise",
            "model": {"name_or_path": str(model_dir), "quantization": "4bit"},
            "data": {"dataset": str(work / "synth"), "min_history": 3, "positions_per_user": 2},
            "negatives": {"n": 5},
            "prompt": {"template": "listwise"},
            "lora": {"r": 8, "alpha": 16, "dropout": 0.0},
            "optim": {"learning_rate": 0.02, "batch_size": 2, "max_steps": args.steps, "warmup_ratio": 0.0},
            "validation": {"users": 0},
            "checkpoint_dir": str(work / "ckpt"),
        })
        started = time.perf_counter()
        result = train(cfg, progress=False)
        _sync()
        seconds = time.perf_counter() - started
        check(result.steps == args.steps, f"trained {result.steps} steps, asked for {args.steps}")
        check(_finite(result.losses), f"non-finite losses: {result.losses}")
        card = read_card(work / "adapter")
        check(card.get("quantization") == "4bit", f"the adapter card says quantization={card.get('quantization')!r}")
        ctx["adapter"] = work / "adapter"
        note["detail"] = (f"{result.steps} steps in {seconds:.2f} s ({seconds / result.steps:.3f} s/step), loss "
                          f"{result.losses[0]:.3f} -> {result.losses[-1]:.3f}, trained on {card.get('training', {}).get('device', '?')}")

    users = [u for u in dataset.user_ids if len(dataset.history(u)) >= 5][:3]
    history = [x.item_id for x in dataset.history(users[0])]
    candidates = [i for i in sorted(dataset.items, key=int) if i not in history][:N_CANDIDATES]

    def ranked(mode: str, template: str, adapter: Any = None, **opts: Any) -> Any:
        config = RerankerConfig(model=model_config(), adapter=None if adapter is None else str(adapter),
                                mode=mode, template=template, knowledge=False, **opts)
        return Reranker(dataset, config).rank(history, candidates)

    def describe(result: Any) -> str:
        t = result.timings
        return (f"{len(result)} ranked, score {t.get('score', 0.0):.3f} s of {t.get('total', 0.0):.3f} s, "
                f"{result.forward_passes} forward passes, {result.prompt_tokens} prompt tokens")

    with report.stage("listwise") as note:
        base = ranked("listwise", "listwise")
        check(sorted(base.item_ids) == sorted(candidates) and _finite(base.scores), "incomplete or non-finite")
        detail = describe(base)
        if "adapter" in ctx:
            tuned = ranked("listwise", "listwise", adapter=ctx["adapter"])
            before = dict(zip(base.item_ids, base.scores))
            gap = max(abs(before[i] - s) for i, s in zip(tuned.item_ids, tuned.scores))
            check(_finite(tuned.scores) and gap > 1e-4, f"the trained adapter does not change the scores ({gap:.2e})")
            detail += f"; with the QLoRA adapter: {describe(tuned)}, max score change {gap:.3f}"
        note["detail"] = detail

    with report.stage("pointwise") as note:
        cached = ranked("pointwise", "pointwise")
        plain = ranked("pointwise", "pointwise", prefix_cache=False)
        check(sorted(cached.item_ids) == sorted(candidates) and _finite(cached.scores), "incomplete or non-finite")
        a, b = dict(zip(cached.item_ids, cached.scores)), dict(zip(plain.item_ids, plain.scores))
        gap = max(abs(a[i] - b[i]) for i in candidates)
        check(gap < 0.05, f"prefix-cached scores differ from full re-encoding by {gap:.3f}")
        note["detail"] = (f"{describe(cached)}; without the prefix cache {plain.timings.get('score', 0.0):.3f} s, "
                          f"max score gap {gap:.2e}")

    with report.stage("generative") as note:
        gen = ranked("generative", "generative", max_new_tokens=32)
        check(sorted(gen.item_ids) == sorted(candidates), "the generated ranking does not cover the candidates")
        note["detail"] = f"{describe(gen)}, parse failures {gen.parse_failures} (expected from a random model)"

    clear_model_cache()
    return finish(report, total_started)


def finish(report: Report, total_started: float) -> int:
    seconds = time.perf_counter() - total_started
    verdict = "PASS" if report.ok else "FAIL"
    where = "on CUDA" if report.device == "cuda" else "on the CPU (smoke run, NOT a GPU result)"
    print(f"GPU CHECK {verdict} {where}: " + ", ".join(f"{n} {s}" for n, s, _, _ in report.results)
          + f"; total {seconds:.1f} s", flush=True)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
