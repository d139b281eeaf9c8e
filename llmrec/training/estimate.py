"""`estimate_run(cfg)` (``llmrec train --estimate``): what a run would take on this machine, from a few timed
optimizer steps and one validation pass of the run set up as `train` sets it up; nothing is written."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

from tqdm.auto import tqdm

from llmrec.data.dataset import Dataset
from llmrec.errors import ConfigError
from llmrec.training.config import TrainConfig
from llmrec.training.run import Run, distribute, seeded_accelerator, set_up
from llmrec.training.steps import optimizer_step, validates_after


@dataclass(frozen=True)
class RunEstimate:
    """What a run would cost, from a few timed steps on this machine (`estimate_run`); nothing was written."""

    examples: int
    mean_prompt_tokens: float
    steps: int  # planned optimizer steps
    seconds_per_step: float  # median of the timed steps after the first (which warms up)
    timed_steps: int
    validations: int  # planned validation passes (the zero-shot start and the end included)
    seconds_per_validation: float  # 0.0 without validation

    @property
    def total_seconds(self) -> float:
        return self.steps * self.seconds_per_step + self.validations * self.seconds_per_validation

    def describe(self) -> str:
        validation = (
            f" + {self.validations} validations x {self.seconds_per_validation:.0f} s" if self.validations else ""
        )
        return (
            f"{self.examples} examples (mean {self.mean_prompt_tokens:.0f} prompt tokens), {self.steps} steps x "
            f"{self.seconds_per_step:.1f} s{validation} = about {self.total_seconds / 60:.0f} minutes on this machine "
            f"(median of {self.timed_steps} timed steps; other load on the machine changes it)"
        )


def estimate_run(
    cfg: TrainConfig, *, steps: int = 3, dataset: Dataset | None = None, progress: bool = True
) -> RunEstimate:
    """Time `steps` optimizer steps and one validation pass of the run `cfg` describes, and extrapolate to the whole
    run. The examples, model and LoRA are set up as `train` sets them up; no adapter or checkpoint is written (an
    existing output folder or checkpoint is left alone).

    Raises:
        ConfigError: fewer than 2 steps to time.
    """
    if steps < 2:
        raise ConfigError(f"estimate: time at least 2 steps (the first one warms up), got {steps}")
    run = set_up(cfg, seeded_accelerator(cfg), time.perf_counter(), dataset=dataset, progress=progress)
    distribute(run)
    seconds = []
    for step in tqdm(range(min(steps, run.plan.total)), desc="timing steps", disable=not progress, unit="step"):
        start = time.perf_counter()
        optimizer_step(run, run.plan.group(step), step + 1)
        seconds.append(time.perf_counter() - start)
    warm = seconds[1:] or seconds  # the first step warms up
    per_validation, validations = _time_validation(run)
    examples = run.data.examples
    return RunEstimate(
        examples=len(examples),
        mean_prompt_tokens=sum(e.n_tokens for e in examples) / max(1, len(examples)),
        steps=run.plan.total,
        seconds_per_step=statistics.median(warm),
        timed_steps=len(warm),
        validations=validations,
        seconds_per_validation=per_validation,
    )


def _time_validation(run: Run) -> tuple[float, int]:
    """(seconds of one validation pass, validation passes the run would make), (0.0, 0) without validation."""
    if run.validator is None:
        return 0.0, 0
    start = time.perf_counter()
    run.validator.evaluate(run.unwrapped())
    per_validation = time.perf_counter() - start
    cfg, total = run.cfg, run.plan.total
    validations = int(cfg.validation.at_start) + sum(validates_after(cfg, step, total) for step in range(1, total + 1))
    return per_validation, validations


__all__ = ["RunEstimate", "estimate_run"]
