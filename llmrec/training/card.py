"""What a finished run puts into its adapter card (the recipe, the data, the training summary with the loss curve
and the label-prior check, the validation history), and the warnings a written card calls for."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmrec import __version__
from llmrec.models.adapters import validation_below_start
from llmrec.stats import mean_and_se, paired_gain
from llmrec.training.checkpoints import TrainState
from llmrec.training.config import TrainConfig
from llmrec.training.examples import TrainExample, label_prior_loss

if TYPE_CHECKING:
    from llmrec.training.run import Run

log = logging.getLogger(__name__)


def build_card(run: Run, state: TrainState) -> dict[str, Any]:
    """The adapter card of `run`, ended at `state` (before the adapter folder adds the base-model fingerprint)."""
    cfg = run.cfg
    d = cfg.to_dict()
    split = run.data.split
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
        "dataset": split.dataset.name,
        "split": split.kind,
        # What the leak check compares with an evaluation's split (the dataset content fingerprint included).
        "training_split": split.settings.to_dict(),
        "data": d["data"],
        "negatives": {"source": cfg.negatives.source, "n": cfg.negatives.count(cfg.mode)},
        "lora": {k: v for k, v in d["lora"].items() if not (k in ("init_from", "last_layers") and v is None)},
        "optim": d["optim"],
        "training": _training_section(run, state),
        "validation": _validation_section(cfg, state, users=len(run.data.val_specs)),
    }


def _training_section(run: Run, state: TrainState) -> dict[str, Any]:
    """The card's ``training``: what was trained on, for how long, and the loss curve."""
    cfg, examples, specs, losses = run.cfg, run.data.examples, run.data.specs, state.losses
    tail = losses[-10:]
    return {
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
            {"planned_steps": run.plan.total, "patience": cfg.validation.patience}
            if state.step < run.plan.total
            else None
        ),
    }


def _validation_section(cfg: TrainConfig, state: TrainState, *, users: int) -> dict[str, Any]:
    """The card's ``validation`` ({} without validation): the settings, the zero-shot start, the kept (best) step,
    every validated step, and how the kept step compares with the last one."""
    rows = state.validation
    if not rows:
        return {}
    best = state.best or rows[-1]
    validation: dict[str, Any] = {
        "metric": cfg.validation.metric.lower(),
        "metric_names": [k for k in rows[0] if k != "step"],
        "users": users,
        "negatives": cfg.validation.negatives,
        "negatives_source": _validation_negatives(cfg),
        "zero_shot": next((r for r in rows if r["step"] == 0), None),
        "best": best,
        "best_step": best["step"],
        "history": rows,
    }
    best_vs_last = _best_vs_last(cfg, state, best["step"], rows[-1]["step"])
    if best_vs_last is not None:
        validation["best_vs_last"] = best_vs_last
    return validation


def _best_vs_last(cfg: TrainConfig, state: TrainState, best_step: int, last_step: int) -> dict[str, Any] | None:
    """By how much the kept step beat the last one, paired over the validation users (None when they are the same
    step, or the per-user values of either are missing or too few for a standard error)."""
    best_values, last_values = state.per_user.get(str(best_step)), state.per_user.get(str(last_step))
    if best_step == last_step or not best_values or not last_values or len(best_values) <= 1:
        return None
    gain, se = paired_gain(best_values, last_values)
    return {
        "metric": cfg.validation.metric.lower(), "best_step": best_step, "last_step": last_step,
        "gain": round(gain, 6), "se": round(se, 6), "users": len(best_values),
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


def warn_about_card(out: Path, card: dict[str, Any]) -> None:
    """Log a warning for each doubt the written `card` (of the adapter in `out`) raises: validation below the
    zero-shot start, a training loss that stayed at the label prior's, a kept step within noise of the last."""
    below = validation_below_start(card)
    if below:
        log.warning("%s: %s", out, below)
    prior = card["training"].get("label_prior")
    if prior and stayed_at_label_prior(prior):
        log.warning(
            "%s: the training loss over the last %d steps (%.4f, SE %.4f) stayed at the label prior's (%.4f: "
            "answering with the labels' frequencies, reading nothing of the prompts): the model has not learned "
            "from these prompts; check its validation before using it",
            out, prior["steps"], prior["late_loss"], prior["late_se"], prior["loss"],
        )
    close = (card.get("validation") or {}).get("best_vs_last")
    if close and close["gain"] < 2 * close["se"]:
        log.warning(
            "%s: the adapter holds step %d's weights, chosen over the last step (%d) by %s %+.4f (paired SE "
            "%.4f over %d validation users): within noise. validation.every: null keeps the last step; more "
            "validation.users tell steps apart",
            out, close["best_step"], close["last_step"], close["metric"], close["gain"], close["se"],
            close["users"],
        )


__all__ = ["build_card", "stayed_at_label_prior", "warn_about_card"]
