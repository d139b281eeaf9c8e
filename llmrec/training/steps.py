"""The training loop over a set-up `Run`: optimizer steps (over this process's share of each step's micro-batches),
validation every ``validation.every`` steps and at the end (keeping the best weights), checkpoints every
``save_every`` steps and on an interruption, and early stopping (``validation.patience``)."""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable
from typing import Any

from tqdm.auto import tqdm

from llmrec.errors import LlmrecError
from llmrec.training.checkpoints import TrainState, write_best, write_checkpoint
from llmrec.training.config import TrainConfig
from llmrec.training.loop import answer_logits, answer_loss, collate
from llmrec.training.run import Run

log = logging.getLogger(__name__)


def validates_after(cfg: TrainConfig, step: int, total: int) -> bool:
    """Whether training validates after optimizer step `step` of `total`: every ``validation.every`` steps, and at
    the end."""
    every = cfg.validation.every
    return step == total or (every is not None and step % every == 0)


def validate(run: Run, state: TrainState, step: int) -> None:
    """Score the validation groups (main process) and keep the best weights so far; every process waits."""
    if run.validator is None:
        return
    if run.is_main:
        key = run.metric_key
        means, per_user = run.validator.evaluate(run.unwrapped())
        row = {"step": step, **means}
        state.per_user[str(step)] = per_user
        state.validation.append(row)
        log.info("validation at step %d: %s", step, ", ".join(f"{k}={v:.4f}" for k, v in row.items() if k != "step"))
        if step > 0 and (state.best is None or row[key] > state.best[key]):
            state.best = row
            write_best(run.ckpt, run.unwrapped(), row, run.base_name)
    run.accelerator.wait_for_everyone()


def train_steps(
    run: Run, state: TrainState, *, progress: bool, on_step: Callable[[int, float], None] | None
) -> None:
    """Optimizer steps up to the plan's total: validation every ``validation.every`` steps and at the end,
    checkpoints every ``save_every`` steps, and one for the finished steps on an interruption."""
    cfg, total = run.cfg, run.plan.total
    bar = tqdm(total=total, initial=run.resumed_from, desc="training", disable=not (progress and run.is_main), unit="step")
    ema: float | None = None
    try:
        while state.step < total:
            group = run.plan.group(state.step)
            if not group:  # max_steps beyond the generated order cannot happen; guard anyway
                break
            step_loss = optimizer_step(run, group, state.step + 1)
            state.step += 1
            state.losses.append(round(step_loss, 6))
            ema = step_loss if ema is None else 0.9 * ema + 0.1 * step_loss
            _show(bar, run, state, step_loss, ema)
            if validates_after(cfg, state.step, total):
                validate(run, state, state.step)
                if state.step < total and _out_of_patience(run, state):
                    break
            state.seconds = round(run.elapsed(), 1)
            if state.step < total and state.step % cfg.save_every == 0 and run.is_main:
                _checkpoint(run, state)
            if on_step is not None:
                on_step(state.step, step_loss)
    except KeyboardInterrupt:
        # Ctrl-C / SIGTERM (the CLI turns it into KeyboardInterrupt): keep every finished step for --resume.
        if run.is_main and state.step > run.resumed_from and state.step % cfg.save_every != 0:
            _checkpoint(run, state)
            log.warning(
                "interrupted at step %d of %d; checkpoint saved in %s (rerun to resume)", state.step, total, run.ckpt
            )
        raise
    finally:
        bar.close()


def _show(bar: Any, run: Run, state: TrainState, step_loss: float, ema: float) -> None:
    """Advance the progress bar by one step: its loss, the loss's moving average, the learning rate and the last
    validation score."""
    bar.update(1)
    postfix = {"loss": f"{step_loss:.3f}", "avg": f"{ema:.3f}", "lr": f"{run.scheduler.get_last_lr()[0]:.1e}"}
    if state.validation:
        postfix[run.metric_key] = f"{state.validation[-1][run.metric_key]:.3f}"
    bar.set_postfix(postfix)


def _checkpoint(run: Run, state: TrainState) -> None:
    write_checkpoint(run.ckpt, run.unwrapped(), run.optimizer, run.scheduler, state, run.base_name)


def validations_without_gain(rows: list[dict[str, Any]], key: str) -> int:
    """How many validations at the end of `rows` (in step order) did not beat the best score before them."""
    best: float | None = None
    stale = 0
    for row in rows:
        if best is None or row[key] > best:
            best, stale = row[key], 0
        else:
            stale += 1
    return stale


def _out_of_patience(run: Run, state: TrainState) -> bool:
    """Whether ``validation.patience`` validations in a row have not beaten the best before them (decided on the
    main process, which validates, and shared with the others so that every process stops at the same step)."""
    patience = run.cfg.validation.patience
    if patience is None:
        return False
    stop = main_decides(run, run.is_main and validations_without_gain(state.validation, run.metric_key) >= patience)
    if stop:
        log.info(
            "stopping at step %d of %d: %d validations in a row without a better %s (validation.patience)",
            state.step, run.plan.total, patience, run.metric_key,
        )
    return stop


def main_decides(run: Run, decision: bool) -> bool:
    """The main process's `decision`, shared with every process (a collective call: all processes make it)."""
    if run.nproc == 1:
        return decision
    from accelerate.utils import broadcast_object_list

    shared = [decision]
    broadcast_object_list(shared, from_process=0)
    return bool(shared[0])


def optimizer_step(run: Run, group: list[list[int]], step: int) -> float:
    """One optimizer step (number `step`) over this process's share of `group`'s micro-batches; returns its loss
    (averaged over processes)."""
    import torch

    accelerator, nproc = run.accelerator, run.nproc
    mine = group[accelerator.process_index :: nproc]
    n_mine = sum(len(g) for g in mine)
    run.model.train()
    # autocast here rather than accelerate's mixed_precision: that setting is fixed once per process
    bf16 = run.cfg.model.mixed_precision == "bf16"
    step_loss = 0.0
    for j, idxs in enumerate(mine):
        batch = collate([run.data.examples[i] for i in idxs], run.loaded.tokenizer, run.device)
        sync = j == len(mine) - 1 or nproc == 1
        with contextlib.nullcontext() if sync else accelerator.no_sync(run.model):
            with torch.autocast(run.device.type, dtype=torch.bfloat16, enabled=bf16):  # model.mixed_precision
                logits = answer_logits(run.model, batch)
            loss = answer_loss(logits, batch, run.cfg.optim.loss) * (len(idxs) / n_mine)
            accelerator.backward(loss)
        step_loss += float(loss.detach())
    if not math.isfinite(step_loss):
        raise LlmrecError(f"training loss is {step_loss} at step {step}; lower optim.learning_rate")
    if nproc > 1:
        step_loss = float(accelerator.reduce(torch.tensor(step_loss, device=run.device), reduction="mean"))
    accelerator.clip_grad_norm_(run.params, run.cfg.optim.max_grad_norm)
    run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    return step_loss


__all__ = ["main_decides", "optimizer_step", "train_steps", "validate", "validates_after", "validations_without_gain"]
