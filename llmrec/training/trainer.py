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

Example:
    >>> from llmrec.training import TrainConfig, train
    >>> result = train(TrainConfig.from_file("adapters/smollm2-ml100k-listwise-kg.yaml"))  # doctest: +SKIP
    >>> result.output  # doctest: +SKIP
    PosixPath('llmrec/adapters/smollm2-ml100k-listwise-kg')
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import logging
import math
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from tqdm.auto import tqdm

from llmrec import __version__
from llmrec.data.dataset import Dataset, PositivePolicy
from llmrec.data.splits import Split, leave_one_out, time_split
from llmrec.errors import ConfigError, LlmrecError
from llmrec.io import atomic_write_dir
from llmrec.models.adapters import (
    CONFIG_FILE,
    PEFT_CONFIG_FILE,
    README_FILE,
    WEIGHTS_FILE,
    AdapterCard,
    read_base_model_info,
    validation_below_start,
    write_card,
)
from llmrec.prompts import load_template
from llmrec.prompts import make_builder as make_prompt_builder
from llmrec.training.config import TrainConfig
from llmrec.training.examples import (
    NegativeSampler,
    TrainExample,
    candidate_offsets,
    label_prior_loss,
    leaked_items,
    order_specs,
    render_examples,
    sample_training_specs,
    sample_validation_specs,
)
from llmrec.training.loop import answer_logits, answer_loss, collate, micro_batch_order
from llmrec.training.validation import Validator, mean_and_se, paired_gain

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
BEST_FILE = "best.json"

#: Config keys that may change between an interrupted run and its resumption (they do not change what is trained).
_RESUME_FREE = {"output", "name", "overwrite", "resume", "checkpoint_dir", "save_every"}


class OutputExistsError(LlmrecError, FileExistsError):
    """The adapter output folder exists and overwriting was not asked for."""


class CheckpointMismatchError(LlmrecError):
    """A checkpoint exists for this output but was made with another config."""


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


# ---- set-up helpers ---------------------------------------------------------------------------------------------


def make_split(dataset: Dataset, cfg: TrainConfig) -> Split:
    """The split the config names (the same functions the evaluation uses)."""
    policy = PositivePolicy(cfg.data.min_rating)
    if cfg.data.split == "leave_one_out":
        return leave_one_out(dataset, min_history=cfg.data.min_history, policy=policy)
    return time_split(dataset)


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
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _model_config(cfg: TrainConfig, accelerator: Any) -> Any:
    from llmrec.models import ModelConfig

    device_map: Any = "auto"
    if accelerator.num_processes > 1:
        device_map = {"": str(accelerator.device)}  # one full replica per process (data parallel)
    return ModelConfig(
        name_or_path=cfg.model.name_or_path,
        quantization=cfg.model.quantization,
        dtype=cfg.model.dtype,
        device_map=device_map,
    )


def load_trainable_base(cfg: TrainConfig, accelerator: Any) -> Any:
    """A fresh (uncached) `LoadedModel` from the models layer's loader: training mutates it, so it must not be
    the instance `load_model` shares with rankers in this process."""
    from llmrec.models import load_model

    mcfg = _model_config(cfg, accelerator)
    if "cache" in inspect.signature(load_model).parameters:
        return load_model(mcfg, cache=False)
    from llmrec.models import loading  # same loading path, bypassing the shared cache

    return loading._load(mcfg)


def make_builder(cfg: TrainConfig, split: Split, tokenizer: Any) -> Any:
    """The rankers' `PromptBuilder` for the configured template and prompt settings (`llmrec.prompts.make_builder`),
    with a knowledge graph of the training split when the template shows facts."""
    template = load_template(cfg.prompt.template)
    if template.mode != cfg.mode:
        raise ConfigError(
            f"prompt.template: {template.name!r} is a {template.mode} template, but mode is {cfg.mode!r}"
        )
    return make_prompt_builder(
        split.train_dataset, tokenizer, template, cfg.prompt.settings(), triples=cfg.use_knowledge
    )


def wrap_lora(model: Any, cfg: TrainConfig) -> Any:
    """Wrap `model` in a trainable PEFT LoRA (QLoRA: after `prepare_model_for_kbit_training`)."""
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if cfg.model.quantization != "none":
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=True, gradient_checkpointing_kwargs={"use_reentrant": False}
        )
    elif cfg.model.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [m for m in cfg.lora.target_modules if m not in names]
    if missing:
        raise ConfigError(
            f"lora.target_modules: model has no module named {', '.join(map(repr, missing))} "
            f"(linear layers here include e.g. {', '.join(sorted(n for n in names if n.endswith('proj'))[:8])})"
        )
    torch.manual_seed(cfg.optim.seed)
    lora = LoraConfig(
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        target_modules=list(cfg.lora.target_modules),
        task_type="CAUSAL_LM",
        bias="none",
    )
    return get_peft_model(model, lora)


def check_init_adapter(model: Any, cfg: TrainConfig, split: Split) -> Path | None:
    """The folder of `lora.init_from` (None when unset), checked against the (unwrapped) base `model`, the LoRA
    section and `split`.

    Raises:
        AdapterError: another base model, or LoRA matrices that do not fit it.
        ConfigError: its r, alpha or target modules differ from the ``lora`` section.
        SplitLeakError: it was trained on items this run holds out (validation or test targets).
    """
    if cfg.lora.init_from is None:
        return None
    from llmrec.models.adapters import card_of, resolve_adapter
    from llmrec.models.loading import check_adapter

    folder = resolve_adapter(cfg.lora.init_from)
    peft_cfg = check_adapter(model, folder)
    theirs = {
        "r": peft_cfg.get("r"),
        "alpha": peft_cfg.get("lora_alpha"),
        "target_modules": sorted(peft_cfg.get("target_modules") or []),
    }
    ours = {"r": cfg.lora.r, "alpha": cfg.lora.alpha, "target_modules": sorted(cfg.lora.target_modules)}
    differ = [f"{k} {theirs[k]} (adapter) vs {ours[k]} (lora section)" for k in ours if theirs[k] != ours[k]]
    if differ:
        raise ConfigError(
            f"lora.init_from: adapter {cfg.lora.init_from!r} has another LoRA shape: {'; '.join(differ)}; set the "
            "lora section to the adapter's values"
        )
    card = card_of(folder)
    if card is not None:
        card.check_split(split, adapter=cfg.lora.init_from)
    return folder


# ---- checkpoints ------------------------------------------------------------------------------------------------


def _save_adapter(model: Any, folder: Path, base_name: str) -> None:
    model.save_pretrained(str(folder), safe_serialization=True)
    cfg_path = folder / PEFT_CONFIG_FILE
    data = json.loads(cfg_path.read_text())
    data["base_model_name_or_path"] = base_name  # the asset name / path the user gave, not this machine's cache
    cfg_path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    with contextlib.suppress(FileNotFoundError):
        (folder / README_FILE).unlink()  # PEFT's placeholder card; ours is written with the final adapter


def _load_adapter_weights(model: Any, folder: Path) -> None:
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    state = load_file(str(folder / WEIGHTS_FILE))
    set_peft_model_state_dict(model, state)


def _write_checkpoint(ckpt: Path, model: Any, optimizer: Any, scheduler: Any, state: dict[str, Any], base: str) -> None:
    import torch

    with atomic_write_dir(ckpt / "last", overwrite=True) as tmp:
        _save_adapter(model, tmp, base)
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        rng = {"torch": torch.get_rng_state(), "python": random.getstate()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        torch.save(rng, tmp / "rng.pt")
        (tmp / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")


def _write_best(ckpt: Path, model: Any, info: dict[str, Any], base: str) -> None:
    with atomic_write_dir(ckpt / "best", overwrite=True) as tmp:
        _save_adapter(model, tmp, base)
        (tmp / BEST_FILE).write_text(json.dumps(info, indent=2) + "\n")


def _read_checkpoint(ckpt: Path, fp: str) -> dict[str, Any] | None:
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


# ---- the run ----------------------------------------------------------------------------------------------------


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


@dataclass
class _Run:
    """What the stages of one run share: set up once by `_set_up`; `_resume` fills in where it starts from, and
    `_distribute` swaps `model` and `optimizer` for accelerate's wrappers."""

    cfg: TrainConfig
    accelerator: Any
    out: Path
    ckpt: Path
    started: float  # time.perf_counter() at the start of this invocation
    split: Split
    loaded: Any  # the base `LoadedModel` (tokenizer, config, device)
    builder: Any
    specs: list[Any]  # training positions
    examples: list[TrainExample]
    val_specs: list[Any]  # validation groups
    model: Any  # the PEFT model being trained
    params: list[Any]
    optimizer: Any
    scheduler: Any
    micro: list[list[int]]  # the run's micro-batches (example indices), in training order
    total: int  # optimizer steps
    per_step: int  # micro-batches per optimizer step, over all processes
    resumed_from: int = 0
    prior_seconds: float = 0.0  # wall time of the interrupted invocations
    validator: Any = None

    @property
    def is_main(self) -> bool:
        return bool(self.accelerator.is_main_process)

    @property
    def nproc(self) -> int:
        return int(self.accelerator.num_processes)

    @property
    def device(self) -> Any:
        return self.accelerator.device if self.nproc > 1 else self.loaded.device

    @property
    def base_name(self) -> str:
        return self.cfg.model.name_or_path

    @property
    def metric_key(self) -> str:
        return self.cfg.validation.metric.lower()

    def elapsed(self) -> float:
        return self.prior_seconds + time.perf_counter() - self.started

    def unwrapped(self) -> Any:
        return self.accelerator.unwrap_model(self.model)


def _check_output(cfg: TrainConfig) -> Path:
    out = Path(cfg.output)
    if out.exists() and not cfg.overwrite:
        raise OutputExistsError(f"output {out} already exists; pass --overwrite (overwrite: true) to replace it")
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"output {out} exists and is not a folder")
    return out


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
    adapter folder and card). They share a `_Run` and advance a `TrainState`.

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
    out = _check_output(cfg)
    run = _set_up(cfg, _seeded_accelerator(cfg), out, started, dataset=dataset, progress=progress)
    state = _resume(run)
    _distribute(run)
    if run.resumed_from == 0 and run.validator is not None and cfg.validation.at_start:
        _validate(run, state, 0)  # the zero-shot base model (LoRA starts as the identity), or lora.init_from
    _train_steps(run, state, progress=progress, on_step=on_step)
    return _finish(run, state)


def estimate_run(
    cfg: TrainConfig, *, steps: int = 3, dataset: Dataset | None = None, progress: bool = True
) -> RunEstimate:
    """Time `steps` optimizer steps and one validation pass of the run `cfg` describes, and extrapolate to the whole
    run. The examples, model and LoRA are set up as `train` sets them up; no adapter or checkpoint is written (an
    existing output folder or checkpoint is left alone)."""
    import statistics

    if steps < 2:
        raise ConfigError(f"estimate: time at least 2 steps (the first one warms up), got {steps}")
    run = _set_up(cfg, _seeded_accelerator(cfg), Path(cfg.output), time.perf_counter(), dataset=dataset,
                  progress=progress)
    _distribute(run)
    seconds = []
    for step in tqdm(range(min(steps, run.total)), desc="timing steps", disable=not progress, unit="step"):
        start = time.perf_counter()
        _optimizer_step(run, run.micro[step * run.per_step : (step + 1) * run.per_step], step + 1)
        seconds.append(time.perf_counter() - start)
    warm = seconds[1:] or seconds  # the first step warms up
    per_validation, validations = 0.0, 0
    if run.validator is not None:
        start = time.perf_counter()
        run.validator.evaluate(run.unwrapped())
        per_validation = time.perf_counter() - start
        validations = int(cfg.validation.at_start) + sum(
            _validates_after(cfg, step, run.total) for step in range(1, run.total + 1)
        )
    return RunEstimate(
        examples=len(run.examples),
        mean_prompt_tokens=sum(e.n_tokens for e in run.examples) / max(1, len(run.examples)),
        steps=run.total,
        seconds_per_step=statistics.median(warm),
        timed_steps=len(warm),
        validations=validations,
        seconds_per_validation=per_validation,
    )


def _seeded_accelerator(cfg: TrainConfig) -> Any:
    """The run's accelerator (CPU where no CUDA device is), with Python's and torch's RNGs seeded from the config."""
    import torch
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    random.seed(cfg.optim.seed)
    torch.manual_seed(cfg.optim.seed)
    return accelerator


def _validates_after(cfg: TrainConfig, step: int, total: int) -> bool:
    """Whether training validates after optimizer step `step` of `total`: every ``validation.every`` steps, and at
    the end."""
    every = cfg.validation.every
    return step == total or (every is not None and step % every == 0)


def _set_up(
    cfg: TrainConfig, accelerator: Any, out: Path, started: float, *, dataset: Dataset | None, progress: bool
) -> _Run:
    """The split, the trainable base model, the rendered training examples and validation groups, and the LoRA
    model with its optimizer, micro-batch order and learning-rate schedule."""
    import torch
    from transformers import get_scheduler

    if dataset is None:
        from llmrec.data import load_dataset

        dataset = load_dataset(cfg.data.dataset)
    split = make_split(dataset, cfg)
    loaded = load_trainable_base(cfg, accelerator)
    builder = make_builder(cfg, split, loaded.tokenizer)
    specs, examples, val_specs = _examples(
        cfg, split, builder, loaded, progress=progress and accelerator.is_main_process
    )

    init = check_init_adapter(loaded.model, cfg, split)
    model = wrap_lora(loaded.model, cfg)
    if init is not None:
        _load_adapter_weights(model, init)
        log.info("LoRA starts from the weights of adapter %s (%s)", cfg.lora.init_from, init)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.optim.learning_rate, weight_decay=cfg.optim.weight_decay)
    micro, total, per_step = _step_plan(cfg, len(examples), accelerator.num_processes)
    warmup = int(round(cfg.optim.warmup_ratio * total))
    scheduler = get_scheduler(
        cfg.optim.scheduler, optimizer=optimizer, num_warmup_steps=warmup, num_training_steps=total
    )
    return _Run(
        cfg=cfg,
        accelerator=accelerator,
        out=out,
        ckpt=cfg.checkpoint_path,
        started=started,
        split=split,
        loaded=loaded,
        builder=builder,
        specs=specs,
        examples=examples,
        val_specs=val_specs,
        model=model,
        params=params,
        optimizer=optimizer,
        scheduler=scheduler,
        micro=micro,
        total=total,
        per_step=per_step,
    )


def _examples(
    cfg: TrainConfig, split: Split, builder: Any, loaded: Any, *, progress: bool
) -> tuple[list[Any], list[TrainExample], list[Any]]:
    """(training positions, their rendered examples, validation groups), in the configured candidate order."""
    sampler = NegativeSampler(
        split, cfg.negatives.source, pool=cfg.negatives.pool, hard=cfg.negatives.hard, **cfg.negatives.options
    )
    specs = sample_training_specs(
        split,
        mode=cfg.mode,
        n_negatives=cfg.negatives.count(cfg.mode),
        negatives=sampler,
        policy=PositivePolicy(cfg.data.min_rating),
        min_history=cfg.data.min_history,
        max_history=cfg.data.max_history,
        max_users=cfg.data.max_users,
        positions_per_user=cfg.data.positions_per_user,
        max_examples=cfg.data.max_examples,
        seed=cfg.optim.seed,
        progress=progress,
    )
    leaks = leaked_items(split, specs)
    if leaks:  # a bug guard: sampling is built never to do this
        raise LlmrecError(f"training examples would show held-out items, e.g. user {leaks[0][0]} item {leaks[0][1]}")
    specs = order_specs(specs, split, cfg.prompt.candidate_order)
    examples = render_examples(specs, builder, loaded, mode=cfg.mode, progress=progress)
    if cfg.offset.retriever is not None:
        offsets = candidate_offsets(
            specs, split, cfg.offset.retriever, reference=cfg.offset.reference, seed=cfg.optim.seed, progress=progress
        )
        examples = [replace(ex, offset=cfg.offset.scale * o) for ex, o in zip(examples, offsets, strict=True)]
    val_specs = sample_validation_specs(
        split,
        users=cfg.validation.users,
        n_negatives=cfg.validation.negatives,
        max_history=cfg.data.max_history,
        seed=cfg.optim.seed,
        negatives=sampler if cfg.validation.source == "training" else None,
    )
    val_specs = order_specs(val_specs, split, cfg.prompt.candidate_order)
    if cfg.validation.users and not val_specs:
        log.warning("no validation target in split %s: validation disabled", split.kind)
    log.info(
        "%d training examples (%d positions, mean %.0f prompt tokens), %d validation groups",
        len(examples),
        len({(s.user_id, s.target, s.history) for s in specs}),
        sum(e.n_tokens for e in examples) / len(examples),
        len(val_specs),
    )
    return specs, examples, val_specs


def _step_plan(cfg: TrainConfig, n_examples: int, nproc: int) -> tuple[list[list[int]], int, int]:
    """(micro-batches in training order, optimizer steps, micro-batches per step over all processes)."""
    per_step = cfg.optim.grad_accum * nproc
    bs = cfg.optim.batch_size
    if cfg.optim.max_steps is not None:
        per_epoch = math.ceil(n_examples / bs)
        epochs = float(math.ceil(cfg.optim.max_steps * per_step / per_epoch))
        return micro_batch_order(n_examples, bs, epochs, cfg.optim.seed), cfg.optim.max_steps, per_step
    micro = micro_batch_order(n_examples, bs, cfg.optim.epochs, cfg.optim.seed)
    return micro, max(1, math.ceil(len(micro) / per_step)), per_step


def _resume(run: _Run) -> TrainState:
    """Where the run starts: this config's checkpoint (weights, optimizer, scheduler and RNG restored) when
    resuming and one exists, else step 0 (and a stale checkpoint is removed when not resuming)."""
    import torch

    cfg, ckpt = run.cfg, run.ckpt
    fp = fingerprint(cfg)
    state = TrainState(fp)
    if cfg.resume:
        previous = _read_checkpoint(ckpt, fp)
        if previous is not None:
            _load_adapter_weights(run.model, ckpt / "last")
            run.optimizer.load_state_dict(torch.load(ckpt / "last" / "optimizer.pt", weights_only=False))
            run.scheduler.load_state_dict(torch.load(ckpt / "last" / "scheduler.pt", weights_only=False))
            rng = torch.load(ckpt / "last" / "rng.pt", weights_only=False)
            torch.set_rng_state(rng["torch"])
            random.setstate(rng["python"])
            if "cuda" in rng and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(rng["cuda"])
            state = TrainState.from_dict(previous)
            log.info("resuming from %s at step %d of %d", ckpt, state.step, run.total)
    elif ckpt.exists() and run.is_main:
        shutil.rmtree(ckpt)
    run.resumed_from = state.step
    run.prior_seconds = float(state.seconds or 0.0)
    return state


def _distribute(run: _Run) -> None:
    """Wrap the model and optimizer for data parallelism (several processes), then set up validation."""
    if run.nproc > 1:
        run.model, run.optimizer = run.accelerator.prepare(run.model, run.optimizer)
    if run.val_specs:
        run.validator = Validator(
            run.val_specs,
            run.builder,
            run.loaded,
            mode=run.cfg.mode,
            metric=run.metric_key,
            batch_size=run.cfg.optim.batch_size,
        )


def _validate(run: _Run, state: TrainState, step: int) -> None:
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
            _write_best(run.ckpt, run.unwrapped(), row, run.base_name)
    run.accelerator.wait_for_everyone()


def _train_steps(
    run: _Run, state: TrainState, *, progress: bool, on_step: Callable[[int, float], None] | None
) -> None:
    """Optimizer steps up to ``run.total``: validation every ``validation.every`` steps and at the end,
    checkpoints every ``save_every`` steps, and one for the finished steps on an interruption."""
    cfg, total, key = run.cfg, run.total, run.metric_key
    bar = tqdm(total=total, initial=run.resumed_from, desc="training", disable=not (progress and run.is_main), unit="step")
    ema: float | None = None
    try:
        while state.step < total:
            group = run.micro[state.step * run.per_step : (state.step + 1) * run.per_step]
            if not group:  # max_steps beyond the generated order cannot happen; guard anyway
                break
            step_loss = _optimizer_step(run, group, state.step + 1)
            state.step += 1
            state.losses.append(round(step_loss, 6))
            ema = step_loss if ema is None else 0.9 * ema + 0.1 * step_loss
            bar.update(1)
            postfix = {"loss": f"{step_loss:.3f}", "avg": f"{ema:.3f}", "lr": f"{run.scheduler.get_last_lr()[0]:.1e}"}
            if state.validation:
                postfix[key] = f"{state.validation[-1][key]:.3f}"
            bar.set_postfix(postfix)
            if _validates_after(cfg, state.step, total):
                _validate(run, state, state.step)
                if state.step < total and _out_of_patience(run, state):
                    break
            state.seconds = round(run.elapsed(), 1)
            if state.step < total and state.step % cfg.save_every == 0 and run.is_main:
                _write_checkpoint(run.ckpt, run.unwrapped(), run.optimizer, run.scheduler, state.to_dict(), run.base_name)
            if on_step is not None:
                on_step(state.step, step_loss)
    except KeyboardInterrupt:
        # Ctrl-C / SIGTERM (the CLI turns it into KeyboardInterrupt): keep every finished step for --resume.
        if run.is_main and state.step > run.resumed_from and state.step % cfg.save_every != 0:
            _write_checkpoint(run.ckpt, run.unwrapped(), run.optimizer, run.scheduler, state.to_dict(), run.base_name)
            log.warning(
                "interrupted at step %d of %d; checkpoint saved in %s (rerun to resume)", state.step, total, run.ckpt
            )
        raise
    finally:
        bar.close()


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


def _out_of_patience(run: _Run, state: TrainState) -> bool:
    """Whether ``validation.patience`` validations in a row have not beaten the best before them (decided on the
    main process, which validates, and shared with the others so that every process stops at the same step)."""
    patience = run.cfg.validation.patience
    if patience is None:
        return False
    stop = _main_decides(run, run.is_main and validations_without_gain(state.validation, run.metric_key) >= patience)
    if stop:
        log.info(
            "stopping at step %d of %d: %d validations in a row without a better %s (validation.patience)",
            state.step, run.total, patience, run.metric_key,
        )
    return stop


def _main_decides(run: _Run, decision: bool) -> bool:
    """The main process's `decision`, shared with every process (a collective call: all processes make it)."""
    if run.nproc == 1:
        return decision
    from accelerate.utils import broadcast_object_list

    shared = [decision]
    broadcast_object_list(shared, from_process=0)
    return bool(shared[0])


def _optimizer_step(run: _Run, group: list[list[int]], step: int) -> float:
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
        batch = collate([run.examples[i] for i in idxs], run.loaded.tokenizer, run.device)
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


def _finish(run: _Run, state: TrainState) -> TrainResult:
    """Validate the final step if that has not happened, restore the best validated weights, write the adapter
    folder with its card, and remove the checkpoints."""
    # e.g. resumed with --max-steps equal to the checkpoint's step; only the main process keeps validation rows
    unvalidated = run.is_main and (not state.validation or state.validation[-1]["step"] != state.step)
    if run.validator is not None and _main_decides(run, unvalidated):
        _validate(run, state, state.step)
    final_model = run.unwrapped()
    best = state.best
    if best is not None and run.is_main:
        _load_adapter_weights(final_model, run.ckpt / "best")  # keep the best validated weights
    card = _card(run, state)
    if run.is_main:
        card = _write_output(run.out, run.cfg, final_model, card, run.base_name, run.loaded)
        shutil.rmtree(run.ckpt, ignore_errors=True)
        below = validation_below_start(card)
        if below:
            log.warning("%s: %s", run.out, below)
        prior = card["training"].get("label_prior")
        if prior and stayed_at_label_prior(prior):
            log.warning(
                "%s: the training loss over the last %d steps (%.4f, SE %.4f) stayed at the label prior's (%.4f: "
                "answering with the labels' frequencies, reading nothing of the prompts): the model has not learned "
                "from these prompts; check its validation before using it",
                run.out, prior["steps"], prior["late_loss"], prior["late_se"], prior["loss"],
            )
        close = (card.get("validation") or {}).get("best_vs_last")
        if close and close["gain"] < 2 * close["se"]:
            log.warning(
                "%s: the adapter holds step %d's weights, chosen over the last step (%d) by %s %+.4f (paired SE "
                "%.4f over %d validation users): within noise. validation.every: null keeps the last step; more "
                "validation.users tell steps apart",
                run.out, close["best_step"], close["last_step"], close["metric"], close["gain"], close["se"],
                close["users"],
            )
    run.accelerator.wait_for_everyone()
    return TrainResult(
        output=run.out,
        steps=state.step,
        final_loss=state.losses[-1] if state.losses else float("nan"),
        losses=state.losses,
        validation=state.validation,
        best=best,
        card=card,
        resumed_from=run.resumed_from,
    )


def _card(run: _Run, state: TrainState) -> dict[str, Any]:
    cfg, examples, specs = run.cfg, run.examples, run.specs
    losses = state.losses
    tail = losses[-10:]
    validation: dict[str, Any] = {}
    if state.validation:
        rows = state.validation
        names = [k for k in rows[0] if k != "step"]
        validation = {
            "metric": cfg.validation.metric.lower(),
            "metric_names": names,
            "users": len(run.val_specs),
            "negatives": cfg.validation.negatives,
            "negatives_source": _validation_negatives(cfg),
            "zero_shot": next((r for r in rows if r["step"] == 0), None),
            "best": state.best or rows[-1],
            "best_step": (state.best or rows[-1])["step"],
            "history": rows,
        }
        best_step, last_step = validation["best_step"], rows[-1]["step"]
        best_values, last_values = state.per_user.get(str(best_step)), state.per_user.get(str(last_step))
        if best_step != last_step and best_values and last_values and len(best_values) > 1:
            gain, se = paired_gain(best_values, last_values)
            validation["best_vs_last"] = {
                "metric": cfg.validation.metric.lower(), "best_step": best_step, "last_step": last_step,
                "gain": round(gain, 6), "se": round(se, 6), "users": len(best_values),
            }
    d = cfg.to_dict()
    return {
        "name": cfg.adapter_name,
        "path": cfg.output,
        "llmrec_version": __version__,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "base_model": cfg.model.name_or_path,
        "quantization": cfg.model.quantization,
        "mode": cfg.mode,
        "template": cfg.prompt.template,
        "knowledge": cfg.use_knowledge,
        "prompt": d["prompt"],
        "dataset": run.split.dataset.name,
        "split": run.split.kind,
        # What the leak check compares with an evaluation's split (the dataset content fingerprint included).
        "training_split": run.split.settings.to_dict(),
        "data": d["data"],
        "negatives": {"source": cfg.negatives.source, "n": cfg.negatives.count(cfg.mode)},
        "lora": {k: v for k, v in d["lora"].items() if not (k == "init_from" and v is None)},
        "optim": d["optim"],
        "training": {
            "examples": len(examples),
            "positions": len({(s.user_id, s.target, s.history) for s in specs}),
            "users": len({s.user_id for s in specs}),
            "mean_prompt_tokens": round(sum(e.n_tokens for e in examples) / max(1, len(examples)), 1),
            "steps": state.step,
            "epochs": round(state.step * cfg.optim.batch_size * cfg.optim.grad_accum / max(1, len(examples)), 3),
            "final_loss": round(sum(tail) / len(tail), 6) if tail else None,
            "first_loss": losses[0] if losses else None,
            "losses": losses,  # every optimizer step's, in order: the loss curve
            "seconds": round(run.elapsed(), 1),
            "resumed_from_step": run.resumed_from,
            "device": str(run.device),
            "mixed_precision": cfg.model.mixed_precision,
            "label_prior": _label_prior(cfg, examples, losses),
            "stopped_early": (
                {"planned_steps": run.total, "patience": cfg.validation.patience} if state.step < run.total else None
            ),
        },
        "validation": validation,
    }


def _label_prior(cfg: TrainConfig, examples: list[TrainExample], losses: list[float]) -> dict[str, Any] | None:
    """For the card: the label prior's loss (`label_prior_loss`) next to the mean loss of the last half of the steps
    (the loss falls early in a run that learns) and its standard error from the spread of those steps' losses.
    None with fewer than 4 steps, or with a first-stage offset in the loss (the prior is no baseline then)."""
    if len(losses) < 4 or cfg.offset.retriever is not None:
        return None
    late = losses[-(len(losses) // 2):]
    mean, se = mean_and_se(late)
    return {
        "loss": round(label_prior_loss(examples), 6),
        "late_loss": round(mean, 6),
        "late_se": round(se, 6),
        "steps": len(late),
    }


def stayed_at_label_prior(prior: dict[str, Any]) -> bool:
    """Whether the late training loss is not even one standard error below the label prior's (`_label_prior`):
    the model answered as if it read nothing of the prompts. (A run can learn and still end only a few percent
    below the prior, e.g. against hard negatives, so the margin is the late loss's own noise, not a fixed share.)"""
    return bool(prior["late_loss"] > prior["loss"] - prior["late_se"])


def _validation_negatives(cfg: TrainConfig) -> str:
    """How the validation negatives were drawn, as a noun phrase (for the card)."""
    if cfg.validation.source != "training" or cfg.negatives.source == "random":
        return "random unseen items"
    if cfg.negatives.source == "popularity":
        return "popularity-weighted unseen items (as in training)"
    n, hard = cfg.validation.negatives, cfg.negatives.hard
    where = f"the {cfg.negatives.source} retriever's top {cfg.negatives.pool or n}"
    share = f"all from {where}" if hard is None or hard >= n else f"{hard} from {where}, the rest uniform"
    return f"unseen items drawn as in training ({share})"


def _write_output(
    out: Path, cfg: TrainConfig, model: Any, card: dict[str, Any], base: str, loaded: Any
) -> dict[str, Any]:
    """Write the adapter folder atomically; return the card as written (with the base-model fingerprint)."""
    from llmrec.models import write_base_model_info

    try:
        with atomic_write_dir(out, overwrite=cfg.overwrite) as tmp:
            _save_adapter(model, tmp, base)
            write_base_model_info(model, tmp, name=base)
            info = read_base_model_info(tmp) or {}
            written = AdapterCard.from_dict({**card, "base_model_fingerprint": info.get("fingerprint")})
            (tmp / CONFIG_FILE).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
            write_card(tmp, written)
            tmp.chmod(0o755)  # mkdtemp makes it private; an adapter folder is meant to be shared
            for path in tmp.iterdir():
                path.chmod(0o644)
    except FileExistsError as exc:
        raise OutputExistsError(str(exc)) from None
    except OSError as exc:
        raise LlmrecError(f"could not write adapter to {out}: {exc.strerror or exc} (nothing was left there)") from exc
    log.info("adapter written to %s", out)
    return written.to_dict()


__all__ = [
    "CheckpointMismatchError",
    "OutputExistsError",
    "RunEstimate",
    "TrainResult",
    "TrainState",
    "estimate_run",
    "fingerprint",
    "make_split",
    "train",
]
