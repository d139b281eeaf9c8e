"""`llmrec train --config FILE`: fine-tune a LoRA / QLoRA adapter for reranking and write it with its card."""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
from typing import Any

import yaml

from llmrec.errors import ConfigError

# flag -> dotted config key (flags override the config file; --set overrides any key).
_FLAGS: dict[str, tuple[str, type, str]] = {
    "output": ("output", str, "adapter folder to write"),
    "mode": ("mode", str, "listwise or pointwise"),
    "model": ("model.name_or_path", str, "base model: asset name (smollm2), folder or hub id"),
    "quantization": ("model.quantization", str, "none (LoRA) or 4bit (QLoRA)"),
    "mixed_precision": ("model.mixed_precision", str, "no, or bf16: bfloat16 autocast, float32 LoRA and optimizer"),
    "dataset": ("data.dataset", str, "dataset name (ml-100k) or folder of atomic files"),
    "template": ("prompt.template", str, "prompt template name or .jinja path"),
    "max_users": ("data.max_users", int, "train on at most this many users"),
    "max_examples": ("data.max_examples", int, "at most this many target positions"),
    "negatives": ("negatives.n", int, "negatives per target"),
    "lora_r": ("lora.r", int, "LoRA rank"),
    "lr": ("optim.learning_rate", float, "learning rate"),
    "epochs": ("optim.epochs", float, "passes over the examples"),
    "max_steps": ("optim.max_steps", int, "stop after this many optimizer steps (smoke runs)"),
    "batch_size": ("optim.batch_size", int, "examples per micro-batch"),
    "grad_accum": ("optim.grad_accum", int, "micro-batches per optimizer step"),
    "seed": ("optim.seed", int, "random seed"),
    "validation_users": ("validation.users", int, "validation users (0: no validation)"),
    "validate_every": ("validation.every", int, "validate every N optimizer steps"),
    "checkpoint_dir": ("checkpoint_dir", str, "where resumable checkpoints go"),
    "save_every": ("save_every", int, "checkpoint every N optimizer steps"),
}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="fine-tune a LoRA/QLoRA reranking adapter",
        description="Fine-tune a LoRA (or QLoRA) adapter on a dataset split with the same prompt templates the "
        "rankers use, validate it periodically, and write the best adapter with a card. Flags override the "
        "config file; --set KEY=VALUE overrides any config key (e.g. --set lora.alpha=32). An interrupted run "
        "resumes from its checkpoint when rerun with the same config.",
    )
    parser.add_argument("--config", metavar="FILE", help="YAML/JSON training config (default: built-in defaults)")
    for flag, (key, kind, text) in _FLAGS.items():
        parser.add_argument(f"--{flag.replace('_', '-')}", dest=flag, type=kind, default=None, help=f"{text} ({key})")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key; VALUE is parsed as YAML (repeatable)")
    parser.add_argument("--overwrite", action="store_true", default=None, help="replace an existing output folder")
    parser.add_argument("--no-resume", dest="no_resume", action="store_true",
                        help="ignore (and replace) a checkpoint of an interrupted run")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    parser.add_argument("--estimate", nargs="?", type=int, const=3, default=None, metavar="STEPS",
                        help="time STEPS optimizer steps (default 3; the first warms up) and one validation pass, "
                        "print what the whole run would take on this machine, and exit without writing anything")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def resolve_config(args: argparse.Namespace) -> Any:
    """The `TrainConfig` from --config, then flags, then --set overrides."""
    from llmrec.training import TrainConfig

    cfg = TrainConfig.from_file(args.config) if args.config else TrainConfig()
    overrides: dict[str, Any] = {}
    for flag, (key, _kind, _text) in _FLAGS.items():
        value = getattr(args, flag, None)
        if value is not None:
            overrides[key] = value
    if args.overwrite:
        overrides["overwrite"] = True
    if args.no_resume:
        overrides["resume"] = False
    for item in args.sets:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            overrides[key.strip()] = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {key}: cannot parse value {raw!r}: {exc}") from None
    return cfg.with_overrides(overrides) if overrides else cfg


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    cfg = resolve_config(args)
    if args.print_config:
        print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
        return 0
    if args.estimate is not None:
        from llmrec.training import estimate_run

        estimate = estimate_run(cfg, steps=args.estimate, progress=not args.no_progress)
        print(estimate.describe())
        print(json.dumps({**dataclasses.asdict(estimate), "total_seconds": round(estimate.total_seconds, 1)}))
        return 0
    from llmrec.training import train

    previous = signal.signal(signal.SIGTERM, _interrupt)  # a killed run checkpoints its finished steps first
    try:
        result = train(cfg, progress=not args.no_progress)
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(f"adapter: {result.output}")
    print(f"steps: {result.steps} (resumed from {result.resumed_from})" if result.resumed_from else f"steps: {result.steps}")
    print(f"final loss: {result.card['training']['final_loss']}")
    val = result.card.get("validation") or {}
    metric = val.get("metric")
    if metric:
        zero = (val.get("zero_shot") or {}).get(metric)
        best = (val.get("best") or {}).get(metric)
        init = (result.card.get("lora") or {}).get("init_from")
        start = f"start (adapter {init})" if init else "zero-shot"
        print(f"validation {metric}: {start} {zero if zero is not None else '-'} -> best {best} "
              f"(step {val.get('best_step')}, {val.get('users')} users)")
    print(json.dumps({"output": str(result.output), "steps": result.steps}))
    return 0
