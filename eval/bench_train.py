"""Training step cost: the residual recipe in float32 against bfloat16 mixed precision, side by side.

`model.mixed_precision: bf16` runs the forward pass (and so the backward) under torch's bfloat16 autocast while the
weights, LoRA parameters and optimizer state stay float32. This runs the shipped residual recipe
(`adapters/smollm2-ml100k-pointwise-residual.yaml`: SmolLM2-135M, pointwise, batch 8 of ~224-token prompts) for a
few optimizer steps in each setting, in interleaved rounds (float32, bf16, float32, bf16 ...), each round a fresh
`llmrec.training.train` call on the same examples, order and seed, without validation. Reported: the median seconds
per optimizer step of each setting (the first step of a round is left out: warm-up), their ratio, and the step losses
of both on the same batches (the first step's gap is bfloat16 rounding alone; later ones add the weights' drift).

Usage:
    python eval/bench_train.py --steps 6 --rounds 2 --threads 2   # ~6 minutes on 2 quiet cores
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

RECIPE = Path(__file__).resolve().parents[1] / "adapters" / "smollm2-ml100k-pointwise-residual.yaml"
PRECISIONS = ("no", "bf16")


def run_round(precision: str, steps: int, positions: int, folder: Path) -> tuple[list[float], list[float]]:
    """(seconds of optimizer steps 2..N, step losses) of one short training run."""
    from llmrec.training import TrainConfig, train

    cfg = TrainConfig.from_file(RECIPE).with_overrides({
        "output": str(folder / f"adapter-{precision}"),
        "checkpoint_dir": str(folder / f"ckpt-{precision}"),
        "overwrite": True,
        "model.mixed_precision": precision,
        "data.max_examples": positions,
        "optim.max_steps": steps,
        "validation.users": 0,
        "save_every": 10_000,
    })
    stamps: list[float] = []

    def on_step(step: int, loss: float) -> None:
        stamps.append(time.perf_counter())

    result = train(cfg, progress=False, on_step=on_step)
    seconds = [b - a for a, b in zip(stamps, stamps[1:])]  # steps 2..N: the first (warm-up) has no start stamp
    return seconds, list(result.losses)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6, help="optimizer steps per round")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds of each setting")
    parser.add_argument("--positions", type=int, default=64, help="training positions built (3 examples each)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("results") / "bench_train")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    times: dict[str, list[float]] = {p: [] for p in PRECISIONS}
    losses: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for precision in PRECISIONS:
                seconds, step_losses = run_round(precision, args.steps, args.positions, Path(tmp))
                times[precision] += seconds
                losses.setdefault(precision, step_losses)
                print(f"round {r + 1} {precision}: {', '.join(f'{s:.2f}' for s in seconds)} s/step", flush=True)
    med = {p: statistics.median(times[p]) for p in PRECISIONS}
    ratio = med["no"] / med["bf16"]
    first_gap = abs(losses["bf16"][0] - losses["no"][0])  # the same weights: rounding alone
    result = {
        "recipe": str(RECIPE.relative_to(RECIPE.parents[1])),
        "steps": args.steps, "rounds": args.rounds, "positions": args.positions, "threads": args.threads,
        "cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
        "median_s_per_step": med, "speedup_bf16": ratio,
        "losses": losses, "first_step_loss_gap": first_gap,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# Training step cost: float32 against bf16 mixed precision",
        "",
        f"`python eval/bench_train.py --steps {args.steps} --rounds {args.rounds} --threads {args.threads}`: the "
        f"residual recipe (`{result['recipe']}`, batch 8), {args.steps} optimizer steps per round, rounds interleaved, "
        "the first step of each round left out; the same examples, order and seed in both settings.",
        "",
        "| setting | median s/step | steps timed |",
        "|---|---|---|",
        *(f"| {'float32' if p == 'no' else 'bf16 mixed precision'} | {med[p]:.2f} | {len(times[p])} |"
          for p in PRECISIONS),
        "",
        f"bf16 mixed precision is **{ratio:.2f}x** faster per step. The first step's loss (the same weights and "
        f"batch: bfloat16 rounding alone) differs by {first_gap:.4f}; later steps drift apart as the weights do "
        f"(float32: {', '.join(f'{x:.4f}' for x in losses['no'])}; bf16: "
        f"{', '.join(f'{x:.4f}' for x in losses['bf16'])}). What that costs in quality is measured on a whole run, "
        "not here (adapters/README.md).",
    ]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
