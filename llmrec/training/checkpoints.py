"""Resumable runs: the config fingerprint, a run's progress (`TrainState`) and its checkpoints.

Under ``cfg.checkpoint_path`` a run keeps ``last`` (adapter, optimizer, scheduler, RNG states and ``state.json``,
written every ``save_every`` steps) and ``best`` (the best validated adapter so far); both are written atomically.
Rerunning the same config continues from ``last``; a checkpoint of another config is refused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmrec.errors import LlmrecError
from llmrec.io import atomic_write_dir
from llmrec.training.config import TrainConfig
from llmrec.training.output import load_adapter_weights, save_adapter

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
BEST_FILE = "best.json"

#: Config keys that may change between an interrupted run and its resumption (they do not change what is trained).
_RESUME_FREE = {"output", "name", "overwrite", "resume", "checkpoint_dir", "save_every"}


class CheckpointMismatchError(LlmrecError):
    """A checkpoint exists for this output but was made with another config."""


def fingerprint(cfg: TrainConfig) -> str:
    """Hash of everything in the config that changes what is trained (not output paths or save cadence).

    ``optim.max_steps`` is left out too: resuming with another ``--max-steps`` stops an interrupted run early (or
    extends it) on the very same example order; the learning-rate schedule then follows the new total. So is
    ``validation.patience`` (it only decides where the run stops).
    """
    data = {k: v for k, v in cfg.to_dict().items() if k not in _RESUME_FREE}
    data["optim"] = {**data["optim"], "max_steps": None}
    del data["validation"]["patience"]  # like max_steps, it only decides where the run stops
    if data["offset"]["retriever"] is None:  # no offset: the fingerprint of configs written before it existed
        del data["offset"]
    if data["model"]["mixed_precision"] == "no":  # likewise for configs written before mixed precision
        del data["model"]["mixed_precision"]
    if data["lora"]["last_layers"] is None:  # likewise for configs written before LoRA on the last layers only
        del data["lora"]["last_layers"]
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class TrainState:
    """A run's progress: what the stages read and advance, and what a checkpoint's ``state.json`` holds.

    Attributes:
        fingerprint: `fingerprint` of the config; a checkpoint resumes only a run with the same one.
        step: optimizer steps done.
        losses: each step's loss (rounded to 6 digits).
        validation: validation rows ``{"step": step, metric: value, ...}``, in step order.
        best: the best validation row after step 0 (its weights are in ``checkpoint_path/best``), or None.
        seconds: wall time of the run over all its invocations, as of the last step (None before the first).
        per_user: the selection metric of each validation group, per validated step (``str(step)`` keys).
    """

    fingerprint: str
    step: int = 0
    losses: list[float] = field(default_factory=list)
    validation: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None
    seconds: float | None = None
    per_user: dict[str, list[float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The ``state.json`` form."""
        data: dict[str, Any] = {
            "fingerprint": self.fingerprint,
            "step": self.step,
            "losses": self.losses,
            "validation": self.validation,
            "best": self.best,
            "per_user": self.per_user,
        }
        if self.seconds is not None:
            data["seconds"] = self.seconds
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainState:
        return cls(
            fingerprint=str(data["fingerprint"]),
            step=int(data["step"]),
            losses=list(data["losses"]),
            validation=list(data["validation"]),
            best=data.get("best"),
            seconds=data.get("seconds"),
            per_user=dict(data.get("per_user", {})),  # absent from checkpoints written before it existed
        )


def write_checkpoint(
    ckpt: Path, model: Any, optimizer: Any, scheduler: Any, state: TrainState, base_name: str
) -> None:
    """Replace ``ckpt/last`` atomically with the adapter, optimizer, scheduler, RNG states and `state`."""
    import torch

    with atomic_write_dir(ckpt / "last", overwrite=True) as tmp:
        save_adapter(model, tmp, base_name)
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        rng = {"torch": torch.get_rng_state(), "python": random.getstate()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        torch.save(rng, tmp / "rng.pt")
        (tmp / STATE_FILE).write_text(json.dumps(state.to_dict(), indent=2) + "\n")


def write_best(ckpt: Path, model: Any, row: dict[str, Any], base_name: str) -> None:
    """Replace ``ckpt/best`` atomically with the adapter of the best validated step and its validation `row`."""
    with atomic_write_dir(ckpt / "best", overwrite=True) as tmp:
        save_adapter(model, tmp, base_name)
        (tmp / BEST_FILE).write_text(json.dumps(row, indent=2) + "\n")


def read_checkpoint(ckpt: Path, fp: str) -> dict[str, Any] | None:
    """The ``state.json`` of ``ckpt/last`` (None when there is none).

    Raises:
        CheckpointMismatchError: it was written by a run of another config (fingerprint `fp` differs).
    """
    state_file = ckpt / "last" / STATE_FILE
    if not state_file.is_file():
        return None
    state = json.loads(state_file.read_text())
    if state.get("fingerprint") != fp:
        raise CheckpointMismatchError(
            f"checkpoint {ckpt} was made by a run with another config (fingerprint {state.get('fingerprint')} vs "
            f"{fp}); pass --no-resume to start over (it is then replaced) or restore the old config"
        )
    return state


def restore_checkpoint(ckpt: Path, model: Any, optimizer: Any, scheduler: Any) -> None:
    """Load ``ckpt/last``'s adapter weights, optimizer and scheduler states into the given objects, and its RNG
    states into torch and Python."""
    import torch

    last = ckpt / "last"
    load_adapter_weights(model, last)
    optimizer.load_state_dict(torch.load(last / "optimizer.pt", weights_only=False))
    scheduler.load_state_dict(torch.load(last / "scheduler.pt", weights_only=False))
    rng = torch.load(last / "rng.pt", weights_only=False)
    torch.set_rng_state(rng["torch"])
    random.setstate(rng["python"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


def start_state(
    cfg: TrainConfig, model: Any, optimizer: Any, scheduler: Any, *, is_main: bool, total: int
) -> TrainState:
    """Where a run starts: this config's checkpoint (restored into `model`, `optimizer`, `scheduler` and the RNGs)
    when ``cfg.resume`` and one exists, else step 0; not resuming, a stale checkpoint is removed (main process).

    Raises:
        CheckpointMismatchError: resuming, and the checkpoint was written by a run of another config.
    """
    ckpt = cfg.checkpoint_path
    fp = fingerprint(cfg)
    if cfg.resume:
        previous = read_checkpoint(ckpt, fp)
        if previous is not None:
            restore_checkpoint(ckpt, model, optimizer, scheduler)
            state = TrainState.from_dict(previous)
            log.info("resuming from %s at step %d of %d", ckpt, state.step, total)
            return state
    elif ckpt.exists() and is_main:
        shutil.rmtree(ckpt)
    return TrainState(fp)


__all__ = [
    "BEST_FILE",
    "STATE_FILE",
    "CheckpointMismatchError",
    "TrainState",
    "fingerprint",
    "read_checkpoint",
    "restore_checkpoint",
    "start_state",
    "write_best",
    "write_checkpoint",
]
