"""Setting a run up: the split, the trainable base model, the rendered examples and validation groups, the LoRA
model with its optimizer and learning-rate schedule, and the micro-batch plan. `Run` is what the later stages
(`llmrec.training.steps`, the card, `estimate_run`) share."""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from llmrec.data.dataset import Dataset, PositivePolicy
from llmrec.data.splits import Split, SplitSettings
from llmrec.errors import ConfigError, LlmrecError
from llmrec.prompts import load_template
from llmrec.prompts import make_builder as make_prompt_builder
from llmrec.training.config import TrainConfig
from llmrec.training.examples import (
    ExampleSpec,
    NegativeSampler,
    TrainExample,
    candidate_offsets,
    leaked_items,
    order_specs,
    render_examples,
    sample_training_specs,
    sample_validation_specs,
)
from llmrec.training.loop import micro_batch_order
from llmrec.training.output import load_adapter_weights
from llmrec.training.validation import Validator

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunData:
    """What a run trains and validates on."""

    split: Split
    builder: Any  # the rankers' `PromptBuilder` for the configured template
    specs: list[ExampleSpec]  # training positions
    examples: list[TrainExample]  # their rendered prompts, in the same order
    val_specs: list[ExampleSpec]  # validation groups


@dataclass(frozen=True)
class StepPlan:
    """The run's micro-batches (example indices) in training order, grouped into optimizer steps."""

    micro: list[list[int]]
    total: int  # optimizer steps
    per_step: int  # micro-batches per optimizer step, over all processes

    def group(self, step: int) -> list[list[int]]:
        """The micro-batches of optimizer step `step` (0-based), over all processes."""
        return self.micro[step * self.per_step : (step + 1) * self.per_step]


@dataclass
class Run:
    """What the stages of one run share: set up once by `set_up`; `distribute` swaps `model` and `optimizer` for
    accelerate's wrappers and adds the validator, and `train` records where a resumed run started."""

    cfg: TrainConfig
    accelerator: Any
    data: RunData
    plan: StepPlan
    loaded: Any  # the base `LoadedModel` (tokenizer, config, device)
    model: Any  # the PEFT model being trained
    params: list[Any]
    optimizer: Any
    scheduler: Any
    started: float  # time.perf_counter() at the start of this invocation
    resumed_from: int = 0
    prior_seconds: float = 0.0  # wall time of the interrupted invocations
    validator: Any = None

    @property
    def out(self) -> Path:
        return Path(self.cfg.output)

    @property
    def ckpt(self) -> Path:
        return self.cfg.checkpoint_path

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


# ---- the pieces -------------------------------------------------------------------------------------------------


def make_split(dataset: Dataset, cfg: TrainConfig) -> Split:
    """The split the config names, made by its one owner (`SplitSettings.apply`, as the evaluation makes it)."""
    settings = SplitSettings(
        kind=cfg.data.split, positive_min_rating=cfg.data.min_rating, min_history=cfg.data.min_history
    )
    return settings.apply(dataset)


def seeded_accelerator(cfg: TrainConfig) -> Any:
    """The run's accelerator (CPU where no CUDA device is), with Python's and torch's RNGs seeded from the config."""
    import torch
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    random.seed(cfg.optim.seed)
    torch.manual_seed(cfg.optim.seed)
    return accelerator


def load_trainable_base(cfg: TrainConfig, accelerator: Any) -> Any:
    """A fresh (uncached) `LoadedModel` from the models layer's loader: training mutates it, so it must not be
    the instance `load_model` shares with rankers in this process."""
    from llmrec.models import ModelConfig, load_model
    from llmrec.models.machine import pinned_dtype

    device_map: Any = "auto"
    if accelerator.num_processes > 1:
        device_map = {"": str(accelerator.device)}  # one full replica per process (data parallel)
    mcfg = ModelConfig(
        name_or_path=cfg.model.name_or_path,
        quantization=cfg.model.quantization,
        dtype=pinned_dtype(cfg.model.dtype),  # float32 on a CPU: a recipe retrains the same on any CPU
        device_map=device_map,
    )
    return load_model(mcfg, cache=False)


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
        layers_to_transform=lora_layers(model, cfg.lora.last_layers),
        task_type="CAUSAL_LM",
        bias="none",
    )
    return get_peft_model(model, lora)


def lora_layers(model: Any, last_layers: int | None) -> list[int] | None:
    """The decoder layer indices ``lora.last_layers`` names in `model` (None: every layer)."""
    if last_layers is None:
        return None
    total = getattr(model.config, "num_hidden_layers", None)
    if total is None:
        raise ConfigError("lora.last_layers: this model's config does not say how many decoder layers it has")
    if last_layers > total:
        raise ConfigError(f"lora.last_layers: {last_layers} asked, but the model has {total} decoder layers")
    return list(range(total - last_layers, total))


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
        "layers": peft_cfg.get("layers_to_transform"),
    }
    ours = {
        "r": cfg.lora.r,
        "alpha": cfg.lora.alpha,
        "target_modules": sorted(cfg.lora.target_modules),
        "layers": lora_layers(model, cfg.lora.last_layers),
    }
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


def build_examples(cfg: TrainConfig, split: Split, builder: Any, loaded: Any, *, progress: bool) -> RunData:
    """The training positions, their rendered examples and the validation groups, in the configured candidate
    order."""
    sampler = NegativeSampler(
        split, cfg.negatives.source, pool=cfg.negatives.pool, hard=cfg.negatives.hard, **cfg.negatives.options
    )
    specs = _training_specs(cfg, split, sampler, progress=progress)
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
    return RunData(split=split, builder=builder, specs=specs, examples=examples, val_specs=val_specs)


def _training_specs(cfg: TrainConfig, split: Split, sampler: NegativeSampler, *, progress: bool) -> list[ExampleSpec]:
    """The sampled training positions with their negatives, checked for leaks, in the configured candidate order."""
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
    return order_specs(specs, split, cfg.prompt.candidate_order)


def step_plan(cfg: TrainConfig, n_examples: int, nproc: int) -> StepPlan:
    """The micro-batch order and how many optimizer steps it makes (``optim.max_steps``, or the epochs' worth)."""
    per_step = cfg.optim.grad_accum * nproc
    bs = cfg.optim.batch_size
    if cfg.optim.max_steps is not None:
        per_epoch = math.ceil(n_examples / bs)
        epochs = float(math.ceil(cfg.optim.max_steps * per_step / per_epoch))
        return StepPlan(micro_batch_order(n_examples, bs, epochs, cfg.optim.seed), cfg.optim.max_steps, per_step)
    micro = micro_batch_order(n_examples, bs, cfg.optim.epochs, cfg.optim.seed)
    return StepPlan(micro, max(1, math.ceil(len(micro) / per_step)), per_step)


# ---- the stages -------------------------------------------------------------------------------------------------


def set_up(
    cfg: TrainConfig, accelerator: Any, started: float, *, dataset: Dataset | None = None, progress: bool = True
) -> Run:
    """The split, the trainable base model, the rendered training examples and validation groups, and the LoRA
    model with its optimizer, micro-batch order and learning-rate schedule; `started` is the invocation's
    ``time.perf_counter()`` at its start."""
    import torch
    from transformers import get_scheduler

    if dataset is None:
        from llmrec.data import load_dataset

        dataset = load_dataset(cfg.data.dataset)
    split = make_split(dataset, cfg)
    loaded = load_trainable_base(cfg, accelerator)
    builder = make_builder(cfg, split, loaded.tokenizer)
    data = build_examples(cfg, split, builder, loaded, progress=progress and accelerator.is_main_process)

    init = check_init_adapter(loaded.model, cfg, split)
    model = wrap_lora(loaded.model, cfg)
    if init is not None:
        load_adapter_weights(model, init)
        log.info("LoRA starts from the weights of adapter %s (%s)", cfg.lora.init_from, init)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.optim.learning_rate, weight_decay=cfg.optim.weight_decay)
    plan = step_plan(cfg, len(data.examples), accelerator.num_processes)
    warmup = int(round(cfg.optim.warmup_ratio * plan.total))
    scheduler = get_scheduler(
        cfg.optim.scheduler, optimizer=optimizer, num_warmup_steps=warmup, num_training_steps=plan.total
    )
    return Run(
        cfg=cfg,
        accelerator=accelerator,
        data=data,
        plan=plan,
        loaded=loaded,
        model=model,
        params=params,
        optimizer=optimizer,
        scheduler=scheduler,
        started=started,
    )


def distribute(run: Run) -> None:
    """Wrap the model and optimizer for data parallelism (several processes), then set up validation."""
    if run.nproc > 1:
        run.model, run.optimizer = run.accelerator.prepare(run.model, run.optimizer)
    if run.data.val_specs:
        run.validator = Validator(
            run.data.val_specs,
            run.data.builder,
            run.loaded,
            mode=run.cfg.mode,
            metric=run.metric_key,
            batch_size=run.cfg.optim.batch_size,
        )


__all__ = [
    "Run",
    "RunData",
    "StepPlan",
    "build_examples",
    "check_init_adapter",
    "distribute",
    "load_trainable_base",
    "make_builder",
    "make_split",
    "seeded_accelerator",
    "set_up",
    "step_plan",
    "wrap_lora",
]
