"""Data-parallel evaluation benchmark: LLM eval throughput with N processes vs 1, on the same CPU threads in total.

Runs one LLM arm (SmolLM2 zero-shot pointwise with KG facts by default, a fresh cache each time) over the same users
twice, side by side: one process with T threads, then N processes (``accelerate launch --multi_gpu``, gloo on a CPU
machine) with T/N threads each, and prints users per second and the ratio. Target (issue: ML-1M and many
processes): >= 1.6x with 2 processes on 2 threads in total.

Usage:
    python eval/bench_parallel_eval.py --users 24 --threads 2 --processes 2   # ~4 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIG = """
name: bench-parallel
dataset: ml-100k
protocol: {{kind: sampled, negatives: 19}}
seed: 0
baseline: popularity
bootstrap_samples: 10
cache_dir: {cache}
results_dir: {results}
arms:
  - {{name: popularity, kind: popularity}}
  - {{name: llm, kind: llm, model: smollm2, mode: pointwise, template: pointwise_kg, knowledge: true, users: {users},
     dtype: {dtype}}}
"""


def _run(config: Path, processes: int, threads: int) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    llmrec = [sys.executable, "-m", "llmrec"]
    if processes > 1:
        accelerate = Path(sys.executable).with_name("accelerate")
        llmrec = [str(accelerate), "launch", "--multi_gpu", "--num_processes", str(processes), "--num_machines", "1",
                  "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "llmrec"]  # fmt: skip
    started = time.perf_counter()
    subprocess.run([*llmrec, "eval", str(config), "--no-plots", "--no-progress"], env=env, check=True,
                   capture_output=True)  # fmt: skip
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=24)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads in total")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"),
                        help="the LLM's dtype (bfloat16 writes bench_parallel_eval_bfloat16.{md,json})")
    parser.add_argument("--out", default="eval/results", help="folder for bench_parallel_eval.{md,json}")
    args = parser.parse_args()
    rows = {}
    for processes in (1, args.processes):
        with tempfile.TemporaryDirectory() as tmp:
            config = Path(tmp) / "bench.yaml"
            config.write_text(CONFIG.format(cache=Path(tmp) / "cache", results=Path(tmp) / "r", users=args.users,
                                          dtype=args.dtype))
            seconds = _run(config, processes, max(1, args.threads // processes))
        rows[processes] = {"processes": processes, "threads_each": max(1, args.threads // processes),
                           "seconds": seconds, "users_per_s": args.users / seconds}  # fmt: skip
        print(f"{processes} process(es) x {rows[processes]['threads_each']} thread(s): {seconds:.1f} s, "
              f"{rows[processes]['users_per_s']:.3f} users/s", flush=True)  # fmt: skip
    ratio = rows[args.processes]["users_per_s"] / rows[1]["users_per_s"]
    print(f"throughput ratio {args.processes} processes / 1: {ratio:.2f}x (target >= 1.6x)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "bench_parallel_eval" + ("" if args.dtype == "float32" else f"_{args.dtype}")
    (out / f"{stem}.json").write_text(json.dumps({"rows": list(rows.values()), "ratio": ratio}, indent=2))
    lines = [
        "# Data-parallel LLM evaluation throughput",
        "",
        f"`python eval/bench_parallel_eval.py --users {args.users} --threads {args.threads} --processes "
        f"{args.processes}" + ("" if args.dtype == "float32" else f" --dtype {args.dtype}")
        + f"`: SmolLM2 ({args.dtype}) zero-shot pointwise with KG facts, 20 candidates per user, {args.users} users, "
        "a fresh cache each run (includes process start and model load).",
        "",
        "| processes | threads each | seconds | users/s |",
        "|---|---|---|---|",
        *(f"| {r['processes']} | {r['threads_each']} | {r['seconds']:.1f} | {r['users_per_s']:.3f} |" for r in rows.values()),
        "",
        f"Ratio: **{ratio:.2f}x** (target >= 1.6x).",
    ]
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
