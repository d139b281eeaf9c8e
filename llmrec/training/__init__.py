"""Adapter fine-tuning: training examples from a split (same prompts as ranking) and a PEFT LoRA / QLoRA trainer.

Example:
    >>> from llmrec.training import TrainConfig, train
    >>> cfg = TrainConfig.from_file("adapters/smollm2-ml100k-listwise-kg.yaml")  # doctest: +SKIP
    >>> train(cfg.with_overrides({"optim.max_steps": 2, "output": "/tmp/a"}))  # doctest: +SKIP
"""

from __future__ import annotations

from llmrec.models.adapters import AdapterCardError, read_card, render_readme
from llmrec.training.checkpoints import CheckpointMismatchError
from llmrec.training.config import TrainConfig
from llmrec.training.estimate import RunEstimate, estimate_run
from llmrec.training.examples import (
    ExampleSpec,
    NegativeSampler,
    NotEnoughDataError,
    TrainExample,
    leaked_items,
    render_examples,
    sample_training_specs,
    sample_validation_specs,
    training_positions,
)
from llmrec.training.output import OutputExistsError
from llmrec.training.trainer import TrainResult, train

__all__ = [
    "AdapterCardError",
    "CheckpointMismatchError",
    "ExampleSpec",
    "NegativeSampler",
    "NotEnoughDataError",
    "OutputExistsError",
    "RunEstimate",
    "TrainConfig",
    "TrainExample",
    "TrainResult",
    "estimate_run",
    "leaked_items",
    "read_card",
    "render_examples",
    "render_readme",
    "sample_training_specs",
    "sample_validation_specs",
    "train",
    "training_positions",
]
