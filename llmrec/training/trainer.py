"""`train(cfg)`: PEFT LoRA / QLoRA fine-tuning of a decoder LLM for listwise or pointwise reranking.

One run: load the split, render training prompts with the rankers' `PromptBuilder`, wrap the base model (loaded by
`llmrec.models.load_model`'s loader) in LoRA, train with the answer-token loss, validate periodically with the
ranking scorers on held-out validation targets, keep the best adapter, and write it with its card atomically.
Optionally stop early (``validation.patience``); the card records the loss curve and whether the late loss fell
below the label prior's (a run that learned nothing from the prompts gets a warning).

Resumable: every `save_every` optimizer steps a checkpoint (adapter, optimizer, scheduler, RNG, step) is written
atomically under ``cfg.checkpoint_path``; rerunning the same config continues from it. The micro-batch order is a
pure function of the config, so a resumed run trains on exactly the batches an uninterrupted run would.

Multi-GPU: launched with ``accelerate launch -m llmrec train ...`` each process loads the model on its own GPU,
and accelerate wraps it in DistributedDataParallel; every optimizer step then consumes ``grad_accum`` micro-batches
per process.

The stages live in their own modules: `run` (set-up), `checkpoints` (resume), `steps` (the loop), `card` and
`output` (the adapter folder); `estimate` times a few steps of the same set-up.

Example:
    >>> from llmrec.training import TrainConfig, train
    >>> result = train(TrainConfig.from_file("adapters/smollm2-ml100k-listwise-kg.yaml"))  # doctest: +SKIP
    >>> result.output  # doctest: +SKIP
    PosixPath('adapters/smollm2-ml100k-listwise-kg')
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmrec.data.dataset import Dataset
from llmrec.training.card import build_card, warn_about_card
from llmrec.training.checkpoints import TrainState, start_state
from llmrec.training.config import TrainConfig
from llmrec.training.output import check_output, load_adapter_weights, write_output
from llmrec.training.run import Run, distribute, seeded_accelerator, set_up
from llmrec.training.steps import main_decides, train_steps, validate


@dataclass
class TrainResult:
    """What a finished run produced."""

    output: Path
    steps: int
    final_loss: float
    losses: list[float]
    validation: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None
    card: dict[str, Any] = field(default_factory=dict)
    resumed_from: int = 0


def train(
    cfg: TrainConfig,
    *,
    dataset: Dataset | None = None,
    progress: bool = True,
    on_step: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Train a LoRA adapter as `cfg` says and write it to ``cfg.output`` (see the module docstring).

    The stages: set up (split, base model, examples, LoRA model and schedule), resume (or start fresh), distribute
    over processes, validate the zero-shot model, train step by step, finish (final validation, best weights,
    adapter folder and card). They share a `Run` and advance a `TrainState`.

    Args:
        cfg: the run's config.
        dataset: an already loaded dataset (default: ``load_dataset(cfg.data.dataset)``).
        progress: show progress bars.
        on_step: called as ``on_step(step, loss)`` after each optimizer step (and after any checkpoint of that
            step is written); an exception it raises stops the run like an interruption would.

    Raises:
        OutputExistsError: ``cfg.output`` exists and ``cfg.overwrite`` is False.
        CheckpointMismatchError: a checkpoint of another config sits where this run would resume.
        NotEnoughDataError: no training example can be built.
        ConfigError: template/mode mismatch, unknown LoRA target module, ...
        LlmrecError: the adapter could not be written (e.g. disk full); no partial folder is left.
    """
    started = time.perf_counter()
    check_output(cfg)
    run = set_up(cfg, seeded_accelerator(cfg), started, dataset=dataset, progress=progress)
    state = start_state(cfg, run.model, run.optimizer, run.scheduler, is_main=run.is_main, total=run.plan.total)
    run.resumed_from, run.prior_seconds = state.step, float(state.seconds or 0.0)
    distribute(run)
    if run.resumed_from == 0 and run.validator is not None and cfg.validation.at_start:
        validate(run, state, 0)  # the zero-shot base model (LoRA starts as the identity), or lora.init_from
    train_steps(run, state, progress=progress, on_step=on_step)
    return _finish(run, state)


def _finish(run: Run, state: TrainState) -> TrainResult:
    """Validate the final step if that has not happened, restore the best validated weights, write the adapter
    folder with its card, and remove the checkpoints."""
    # e.g. resumed with --max-steps equal to the checkpoint's step; only the main process keeps validation rows
    unvalidated = run.is_main and (not state.validation or state.validation[-1]["step"] != state.step)
    if run.validator is not None and main_decides(run, unvalidated):
        validate(run, state, state.step)
    final_model = run.unwrapped()
    if state.best is not None and run.is_main:
        load_adapter_weights(final_model, run.ckpt / "best")  # keep the best validated weights
    card = build_card(run, state)
    if run.is_main:
        card = write_output(run.out, run.cfg, final_model, card)
        shutil.rmtree(run.ckpt, ignore_errors=True)
        warn_about_card(run.out, card)
    run.accelerator.wait_for_everyone()
    return TrainResult(
        output=run.out,
        steps=state.step,
        final_loss=state.losses[-1] if state.losses else float("nan"),
        losses=state.losses,
        validation=state.validation,
        best=state.best,
        card=card,
        resumed_from=run.resumed_from,
    )


__all__ = ["TrainResult", "train"]
