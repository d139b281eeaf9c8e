"""Typed configuration of an adapter training run.

YAML (or JSON) is only a file format here: a config file is parsed into nested frozen dataclasses, and an unknown
key, a wrong type or an out-of-range value raises `ConfigError` naming the dotted key (``lora.r``), so a typo never
silently falls back to a default.

Example:
    >>> cfg = TrainConfig.from_dict({"mode": "listwise", "template": "listwise_kg", "lora": {"r": 8}})
    >>> cfg.lora.r, cfg.optim.learning_rate
    (8, 0.0002)
    >>> cfg.with_overrides({"optim.max_steps": 3}).optim.max_steps
    3
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from llmrec.config import build, check_fields, plain, read_config_file, require
from llmrec.errors import ConfigError
from llmrec.models.config import QUANTIZATIONS
from llmrec.prompts import DEFAULT_SETTINGS, PromptSettings, load_template
from llmrec.ranking.order import check_candidate_order
from llmrec.retrieval.factory import retriever_names

Mode = Literal["listwise", "pointwise"]
MixedPrecision = Literal["no", "bf16"]
NegativeSource = Literal["random", "popularity", "cooc", "dense", "llm_dense", "ease", "als", "sasrec", "zfusion", "fusion"]
SplitKind = Literal["leave_one_out", "time"]


@dataclass(frozen=True)
class ModelSection:
    """Base model to adapt.

    Attributes:
        name_or_path: asset name ("smollm2"), a local transformers folder, or a hub id (where a hub is reachable).
        quantization: "none" trains LoRA on full-precision weights; "4bit" is QLoRA (NF4 weights, k-bit prep).
        dtype: compute dtype passed to the model loader ("auto", "float32", "bfloat16", "float16").
        gradient_checkpointing: trade compute for memory (always on for QLoRA).
        mixed_precision: "bf16" runs the training forward pass (and so its backward) under torch's bfloat16
            autocast while the weights, LoRA parameters and optimizer state stay in float32; "no" (default)
            computes in the model's dtype. Meant for CPUs with AMX or AVX512-BF16 (1.6x per step on this
            project's 2-core CPU, `eval/bench_train.py`) and GPUs with bfloat16; validation scores at full precision.
    """

    name_or_path: str = "smollm2"
    quantization: str = "none"
    dtype: str = "auto"
    gradient_checkpointing: bool = False
    mixed_precision: MixedPrecision = "no"

    def __post_init__(self) -> None:
        check_fields(self, "model.")
        choices = " | ".join(repr(q) for q in QUANTIZATIONS)
        require(self.quantization in QUANTIZATIONS, "model.quantization",
                f"expected one of {choices}, got {self.quantization!r}")


@dataclass(frozen=True)
class DataSection:
    """Which interactions training examples come from.

    Attributes:
        dataset: dataset asset name ("ml-100k") or a folder of RecBole atomic files.
        split: "leave_one_out" (per user: last positive = test, second last = validation) or "time".
        min_rating: interactions rated at least this count as positive (None: every interaction is positive).
        min_history: a training target needs at least this many earlier interactions.
        max_users: train on at most this many users (sampled with the seed); None = all.
        positions_per_user: at most this many target positions per user (sampled with the seed); None = all.
        max_examples: cap on the number of (user, position) examples after sampling; None = no cap.
        max_history: items of history passed to the prompt builder (most recent kept); the builder's token
            budget may show fewer.
    """

    dataset: str = "ml-100k"
    split: SplitKind = "leave_one_out"
    min_rating: float | None = 4.0
    min_history: int = 5
    max_users: int | None = None
    positions_per_user: int | None = 2
    max_examples: int | None = None
    max_history: int = 20

    def __post_init__(self) -> None:
        check_fields(self, "data.")
        require(self.min_history >= 1, "data.min_history", f"must be >= 1, got {self.min_history}")
        require(self.max_history >= 1, "data.max_history", f"must be >= 1, got {self.max_history}")
        for key, value in (("data.max_users", self.max_users), ("data.positions_per_user", self.positions_per_user),
                           ("data.max_examples", self.max_examples)):
            require(value is None or value >= 1, key, f"must be >= 1 or null, got {value}")


@dataclass(frozen=True)
class NegativesSection:
    """Negatives shown next to each training target.

    Attributes:
        source: "random" (uniform over items the user never interacted with), "popularity" (popularity-weighted),
            or a retriever name ("cooc", "dense") for hard negatives retrieved from the history.
        n: negatives per target. Listwise: candidates = target + n (default 19). Pointwise: n "No" examples per
            "Yes" example (default 1, i.e. balanced).
        pool: retriever sources only: draw the hard negatives uniformly from the retriever's top `pool` unseen
            items instead of taking the top ones.
        hard: retriever sources only: how many of the `n` negatives are hard (default all); the rest are uniform.
        options: retriever sources only: keyword arguments of the retriever (``build_retriever``), e.g.
            ``{l2: 2000}`` for EASE, as an eval arm's ``retriever_options``.
    """

    source: NegativeSource = "random"
    n: int | None = None
    pool: int | None = None
    hard: int | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_fields(self, "negatives.")
        require(self.n is None or self.n >= 1, "negatives.n", f"must be >= 1, got {self.n}")
        for key, value in (("negatives.pool", self.pool), ("negatives.hard", self.hard)):
            require(value is None or value >= 0, key, f"must be >= 0 or null, got {value}")
            require(value is None or self.source not in ("random", "popularity"), key,
                    f"applies to retriever sources (hard negatives), not to source {self.source!r}")
        require(not self.options or self.source not in ("random", "popularity"), "negatives.options",
                f"applies to retriever sources (hard negatives), not to source {self.source!r}")

    def count(self, mode: str) -> int:
        """`n`, or its default for `mode` (19 listwise, 1 pointwise)."""
        if self.n is not None:
            return self.n
        return 19 if mode == "listwise" else 1


#: Retrievers that can score a training target as new to its user (`RetrieverSpec.scores_as_new`): those a candidate
#: order may come from, the decoder item vectors (`llm_dense`) and EASE (an exact downdate of the user's row). ALS,
#: SASRec and fusion cannot forget a user without a refit, so their score would leak the target.
OFFSET_RETRIEVERS = retriever_names(scores_as_new=True)


@dataclass(frozen=True)
class OffsetSection:
    """Boosting on a first-stage score (pointwise, ``optim.loss: choices``): each example's Yes-vs-No logit gets
    ``scale`` times the retriever's z-scored score of its candidate added in the loss, so the model is trained on
    what that score does not already explain (the fused ranking it will be part of), not to repeat it.

    Attributes:
        retriever: one of `OFFSET_RETRIEVERS` (each scores a training target as new to its user); None: off.
        scale: the offset's weight against the LLM's logit.
        reference: uniform unseen items the score is z-scored among, next to the position's own candidates (as the
            sampled protocol's 19 random negatives).
    """

    retriever: str | None = None
    scale: float = 1.0
    reference: int = 19

    def __post_init__(self) -> None:
        check_fields(self, "offset.")
        require(self.retriever is None or self.retriever in OFFSET_RETRIEVERS, "offset.retriever",
                f"must be one of {', '.join(OFFSET_RETRIEVERS)} or null (the others cannot score a training target "
                f"as new to its user without leaking it), got {self.retriever!r}")
        require(self.scale > 0, "offset.scale", f"must be > 0, got {self.scale}")
        require(self.reference >= 1, "offset.reference", f"must be >= 1, got {self.reference}")


@dataclass(frozen=True)
class PromptSection:
    """Prompt template and budgets; the same `PromptBuilder` the rankers use renders the training prompts.

    Attributes:
        template: template name ("listwise_kg", "listwise", "pointwise_kg", "pointwise") or a .jinja path.
        knowledge: show KG facts (triples) when the template shows facts; "auto" = when its header says
            ``knowledge: true``.
        history_budget: token budget of the history block (None: the builder's default).
        fact_budget: token budget of the KG facts (None: the builder's default).
        facts_per_candidate: most KG facts per candidate (None: the builder's default).
        cf_evidence: show collaborative evidence from the training interactions next to the KG facts ("liked by
            31% of those who liked Fargo (1996)", a popularity band; `llmrec.knowledge.interactions`), with each
            user's own likes left out so that a training target reads like a test one. Recorded in the card;
            `Reranker` shows it for this adapter.
        candidate_order: listwise: how candidates are listed. "given" = shuffled; "cooc", "popularity" or
            "dense" = best-first by that retriever fitted on the training split (LlamaRec style), with each
            user's own interactions with the candidates left out so that a training target looks like a test
            one. Recorded in the adapter card; `Reranker` lists candidates the same way for this adapter.
    """

    template: str = "listwise_kg"
    knowledge: Literal["auto", "on", "off"] = "auto"
    history_budget: int | None = None
    fact_budget: int | None = None
    facts_per_candidate: int | None = None
    candidate_order: str = DEFAULT_SETTINGS.candidate_order
    cf_evidence: bool = DEFAULT_SETTINGS.cf_evidence

    def __post_init__(self) -> None:
        check_fields(self, "prompt.")
        for key in ("history_budget", "fact_budget", "facts_per_candidate"):
            value = getattr(self, key)
            require(value is None or value >= 0, f"prompt.{key}", f"must be >= 0 or null, got {value}")
        check_candidate_order(self.candidate_order, "prompt.candidate_order")

    def settings(self) -> PromptSettings:
        """The `PromptSettings` of these options (None: the defaults)."""
        return PromptSettings.resolve(dataclasses.asdict(self))


@dataclass(frozen=True)
class LoraSection:
    """PEFT LoRA knobs.

    Attributes:
        init_from: start from this trained adapter's LoRA weights instead of the identity (a name or folder, as
            `llmrec.models.resolve_adapter` takes): continued fine-tuning, e.g. a shipped adapter on your own
            interactions or on harder negatives. Its r, alpha and target modules must equal these, its base model
            this run's, and it must not have trained on this run's held-out items.
        last_layers: LoRA on the last N decoder layers only (peft's ``layers_to_transform``); backpropagation then
            stops below the lowest of them, so a step costs less (a 1.5B model on a CPU). None: every layer.
    """

    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")
    init_from: str | None = None
    last_layers: int | None = None

    def __post_init__(self) -> None:
        check_fields(self, "lora.")
        require(self.r >= 1, "lora.r", f"must be >= 1, got {self.r}")
        require(self.alpha >= 1, "lora.alpha", f"must be >= 1, got {self.alpha}")
        require(0.0 <= self.dropout < 1.0, "lora.dropout", f"must be in [0, 1), got {self.dropout}")
        require(len(self.target_modules) >= 1, "lora.target_modules", "must name at least one module")
        require(
            self.last_layers is None or self.last_layers >= 1,
            "lora.last_layers", f"must be >= 1 or null, got {self.last_layers}",
        )


@dataclass(frozen=True)
class OptimSection:
    """Optimisation knobs.

    Attributes:
        loss: "vocab" = cross-entropy of the answer token over the whole vocabulary (LM loss on the label token
            only); "choices" = cross-entropy restricted to the answer tokens (the candidate labels or Yes/No),
            i.e. exactly the distribution the scorer ranks with.
        max_steps: optimizer steps to stop after (None: `epochs` over the examples).
    """

    learning_rate: float = 2e-4
    scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "linear"
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    epochs: float = 1.0
    max_steps: int | None = None
    batch_size: int = 4
    grad_accum: int = 1
    max_grad_norm: float = 1.0
    loss: Literal["vocab", "choices"] = "vocab"
    seed: int = 0

    def __post_init__(self) -> None:
        check_fields(self, "optim.")
        o = self
        require(o.learning_rate > 0, "optim.learning_rate", f"must be > 0, got {o.learning_rate}")
        require(0.0 <= o.warmup_ratio < 1.0, "optim.warmup_ratio", f"must be in [0, 1), got {o.warmup_ratio}")
        require(o.epochs > 0, "optim.epochs", f"must be > 0, got {o.epochs}")
        require(o.max_steps is None or o.max_steps >= 1, "optim.max_steps",
                f"must be >= 1 or null, got {o.max_steps}")
        require(o.batch_size >= 1, "optim.batch_size", f"must be >= 1, got {o.batch_size}")
        require(o.grad_accum >= 1, "optim.grad_accum", f"must be >= 1, got {o.grad_accum}")
        require(o.max_grad_norm > 0, "optim.max_grad_norm", f"must be > 0, got {o.max_grad_norm}")


#: Where validation negatives come from: uniform unseen items, or as the training negatives are drawn.
VALIDATION_SOURCES = ("random", "training")


@dataclass(frozen=True)
class ValidationSection:
    """Periodic validation on held-out validation targets (never test targets).

    Attributes:
        users: validation users sampled (with the seed); 0 disables validation.
        negatives: sampled negatives next to each validation target (fixed for the whole run).
        every: validate every this many optimizer steps (and at the end); None = only at the end.
        metric: "ndcg@K" or "auc"; the best checkpoint by this metric is the one written out.
        at_start: also validate before the first step: LoRA starts as the identity, so this measures the
            zero-shot base model on the very same sample and negatives (reported in the card).
        source: "random" (uniform unseen items) or "training": drawn as the training negatives are (the
            ``negatives`` section's source, pool and hard share), so a hard-negative recipe picks its best step on
            the task it trains for.
        patience: stop training once this many validations in a row have not beaten the best score validated
            before them (the zero-shot start included); the best validated step is still what is written, and the
            card says where the run stopped. None: run every step.
    """

    users: int = 50
    negatives: int = 19
    every: int | None = 50
    metric: str = "ndcg@10"
    at_start: bool = True
    source: str = "random"
    patience: int | None = None

    def __post_init__(self) -> None:
        check_fields(self, "validation.")
        require(self.users >= 0, "validation.users", f"must be >= 0, got {self.users}")
        require(self.negatives >= 1, "validation.negatives", f"must be >= 1, got {self.negatives}")
        require(self.every is None or self.every >= 1, "validation.every",
                f"must be >= 1 or null, got {self.every}")
        require(self.source in VALIDATION_SOURCES, "validation.source",
                f"must be one of {', '.join(VALIDATION_SOURCES)}, got {self.source!r}")
        require(self.patience is None or self.patience >= 1, "validation.patience",
                f"must be >= 1 or null, got {self.patience}")
        require(self.patience is None or (self.every is not None and self.users > 0), "validation.patience",
                "needs periodic validation (validation.every and validation.users > 0): a run validated only at its "
                "end cannot stop early")
        metric_name(self.metric)


@dataclass(frozen=True)
class TrainConfig:
    """A whole training run. See the section classes for each knob.

    Attributes:
        output: adapter folder to write (refused if it exists unless `overwrite`).
        mode: "listwise" or "pointwise"; must match the template's mode.
        checkpoint_dir: where resumable checkpoints go (None: ``$LLMREC_HOME/checkpoints/<output name>-<hash>``).
        save_every: write a resumable checkpoint every this many optimizer steps.
        overwrite: replace an existing output folder.
        resume: continue from a checkpoint of the same config if one exists.
    """

    output: str = "adapters/my-adapter"
    name: str | None = None
    mode: Mode = "listwise"
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    negatives: NegativesSection = field(default_factory=NegativesSection)
    prompt: PromptSection = field(default_factory=PromptSection)
    lora: LoraSection = field(default_factory=LoraSection)
    optim: OptimSection = field(default_factory=OptimSection)
    validation: ValidationSection = field(default_factory=ValidationSection)
    offset: OffsetSection = field(default_factory=OffsetSection)
    checkpoint_dir: str | None = None
    save_every: int = 50
    overwrite: bool = False
    resume: bool = True

    def __post_init__(self) -> None:
        check_fields(self)
        _check_across_sections(self)

    # ---- construction -------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Build a config from nested mappings; unknown keys and wrong types raise `ConfigError`."""
        return build(cls, data)

    @classmethod
    def from_file(cls, path: str | Path) -> TrainConfig:
        """Read a YAML or JSON config file."""
        data = read_config_file(path)
        try:
            return cls.from_dict(data)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None

    def with_overrides(self, overrides: Mapping[str, Any]) -> TrainConfig:
        """A copy with dotted keys replaced, e.g. ``{"lora.r": 16, "optim.max_steps": 5}``."""
        data = self.to_dict()
        for dotted, value in overrides.items():
            node: dict[str, Any] = data
            parts = dotted.split(".")
            for part in parts[:-1]:
                if part in node and not isinstance(node[part], dict):
                    raise ConfigError(f"config key {dotted!r}: {part!r} is not a section")
                node = node.setdefault(part, {})
            node[parts[-1]] = value  # an unknown key is reported (with a suggestion) by from_dict
        return TrainConfig.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (lists for tuples), suitable for YAML/JSON and for `from_dict`."""
        return plain(dataclasses.asdict(self))

    @property
    def adapter_name(self) -> str:
        return self.name or Path(self.output).name

    @property
    def checkpoint_path(self) -> Path:
        if self.checkpoint_dir:
            return Path(self.checkpoint_dir).expanduser()
        from llmrec.assets import llmrec_home

        # Under LLMREC_HOME, keyed by the output's absolute path: a later session on the same machine resumes.
        out = Path(self.output).expanduser().resolve()
        key = hashlib.sha256(str(out).encode()).hexdigest()[:8]
        return llmrec_home() / "checkpoints" / f"{out.name}-{key}"

    @property
    def use_knowledge(self) -> bool:
        """Whether training prompts show KG facts: "auto" = as the template's header says (``knowledge``)."""
        if self.prompt.knowledge == "auto":
            return load_template(self.prompt.template).knowledge
        return self.prompt.knowledge == "on"


# ---- checks across sections (each section checks its own values in its __post_init__) -------------------------


def _check_across_sections(cfg: TrainConfig) -> None:
    n, v = cfg.negatives, cfg.validation
    require(bool(cfg.output), "output", "must name a folder")
    require("." not in cfg.adapter_name, "name" if cfg.name else "output",
            f"the adapter name {cfg.adapter_name!r} may not contain '.' (PEFT cannot load such an adapter)")
    require(n.count(cfg.mode) >= 1, "negatives.n", f"must be >= 1, got {n.n}")
    if cfg.mode == "listwise":
        require(n.count(cfg.mode) <= 25, "negatives.n",
                f"listwise shows target + n candidates labelled A..Z: n <= 25, got {n.n}")
        require(v.negatives <= 25, "validation.negatives", f"listwise: must be <= 25, got {v.negatives}")
    require(cfg.save_every >= 1, "save_every", f"must be >= 1, got {cfg.save_every}")
    if cfg.offset.retriever is not None:
        require(cfg.mode == "pointwise", "offset.retriever", f"applies to pointwise training, not to {cfg.mode}")
        require(cfg.optim.loss == "choices", "offset.retriever",
                f"needs optim.loss: choices (the offset moves the Yes-vs-No logit), got {cfg.optim.loss!r}")


def metric_name(metric: str) -> tuple[str, int | None]:
    """Parse a validation metric name: ``"ndcg@10"`` -> ("ndcg", 10), ``"auc"`` -> ("auc", None)."""
    text = metric.strip().lower()
    if text == "auc":
        return "auc", None
    if text.startswith("ndcg@"):
        try:
            k = int(text[5:])
        except ValueError:
            k = 0
        if k >= 1:
            return "ndcg", k
    raise ConfigError(f"validation.metric: expected 'ndcg@K' (K >= 1) or 'auc', got {metric!r}")
