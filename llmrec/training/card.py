"""The adapter card: what an adapter folder says about itself (``adapter_card.json`` + a short ``README.md``).

An adapter folder written by `llmrec train` holds the PEFT files (``adapter_config.json``,
``adapter_model.safetensors``), the base-model record `llmrec.models` checks on load, the card, the training config
(``train_config.yaml``) and a README rendered from the card. The folder appears only once complete (it is built in a
temporary sibling and renamed), so a folder with a card is a finished adapter.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from llmrec.errors import LlmrecError

CARD_FILE = "adapter_card.json"
README_FILE = "README.md"
CONFIG_FILE = "train_config.yaml"
REQUIRED_FILES = ("adapter_config.json", "adapter_model.safetensors", CARD_FILE, README_FILE, CONFIG_FILE)


class AdapterCardError(LlmrecError):
    """An adapter folder is incomplete or its card is malformed."""


def read_card(folder: str | Path) -> dict[str, Any]:
    """The card of a finished adapter folder.

    Raises:
        AdapterCardError: the folder is missing a required file or the card is not valid JSON.
    """
    folder = Path(folder)
    missing = [name for name in REQUIRED_FILES if not (folder / name).is_file()]
    if missing:
        raise AdapterCardError(f"{folder} is not a complete llmrec adapter: missing {', '.join(missing)}")
    try:
        card = json.loads((folder / CARD_FILE).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise AdapterCardError(f"{folder / CARD_FILE}: not valid JSON: {exc}") from exc
    if not isinstance(card, dict) or "base_model" not in card:
        raise AdapterCardError(f"{folder / CARD_FILE}: not an llmrec adapter card (no base_model)")
    return card


def trained_mode_and_template(folder: str | Path | None) -> tuple[str | None, str | None]:
    """The scoring mode and prompt template an llmrec adapter was trained with; ``(None, None)`` for no folder or
    a PEFT folder without a card (nothing to go by)."""
    if folder is None or not (Path(folder) / CARD_FILE).is_file():
        return None, None
    card = read_card(folder)
    mode, template = card.get("mode"), card.get("template")
    return (str(mode) if mode else None), (str(template) if template else None)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return str(value)


def render_readme(card: Mapping[str, Any]) -> str:
    """A short human-readable README for an adapter card."""
    t, v = card.get("training", {}), card.get("validation", {})
    lines = [
        f"# {card.get('name', 'adapter')}",
        "",
        f"LoRA adapter for `{card['base_model']}` trained by llmrec {card.get('llmrec_version', '?')} "
        f"for **{card.get('mode')}** reranking with the `{card.get('template')}` prompt template "
        f"({'with' if card.get('knowledge') else 'without'} knowledge-graph facts).",
        "",
        "## Use",
        "",
        "```bash",
        f"llmrec rank --adapter {card.get('path', 'adapters/' + str(card.get('name')))} ...",
        "```",
        "",
        "```python",
        "from llmrec.models import ModelConfig, load_model",
        f"lm = load_model(ModelConfig({card['base_model']!r}, adapters=[{card.get('path', '')!r}]))",
        "```",
        "",
        "## Data",
        "",
        f"- dataset: `{card.get('dataset')}`, split: `{card.get('split')}` (training examples from earlier "
        "positions of each user's training sequence; no validation or test item of a user appears in its "
        "training examples)",
        f"- examples: {t.get('examples')} ({t.get('positions')} target positions of {t.get('users')} users), "
        f"negatives: {card.get('negatives', {}).get('n')} {card.get('negatives', {}).get('source')} per target",
        "",
        "## Training",
        "",
    ]
    for key in ("quantization", "lora", "optim"):
        value = card.get(key)
        if isinstance(value, Mapping):
            lines.append(f"- {key}: " + ", ".join(f"{k}={_fmt(x)}" for k, x in value.items()))
        elif value is not None:
            lines.append(f"- {key}: {value}")
    prompt = card.get("prompt")
    if isinstance(prompt, Mapping):
        lines.append(
            "- prompt: " + ", ".join(f"{k}={_fmt(x)}" for k, x in prompt.items())
            + " (rankers using this adapter reuse the budgets and the candidate order unless told otherwise)"
        )
    lines += [
        f"- steps: {t.get('steps')}, epochs: {_fmt(t.get('epochs'))}, final train loss: {_fmt(t.get('final_loss'))}, "
        f"wall time: {_fmt(t.get('seconds'))} s on {t.get('device')}",
        "",
        "## Validation",
        "",
    ]
    if v:
        lines.append(
            f"{v.get('users')} validation users (each user's validation item vs {v.get('negatives')} random unseen "
            f"items, same sample and negatives for every row), metric `{v.get('metric')}`:"
        )
        lines += ["", "| model | " + " | ".join(v.get("metric_names", [])) + " |",
                  "|---|" + "---|" * len(v.get("metric_names", []))]
        for row_name, key in (("zero-shot base model", "zero_shot"), ("this adapter (best step)", "best")):
            row = v.get(key)
            if row:
                lines.append(f"| {row_name} | " + " | ".join(_fmt(row.get(m)) for m in v.get("metric_names", [])) + " |")
        metric = v.get("metric")
        history = v.get("history") or []
        if history and metric:
            lines += ["", f"`{metric}` by step: " + ", ".join(f"{r['step']}: {_fmt(r.get(metric))}" for r in history) + "."]
        lines += [
            "",
            f"Best step: {v.get('best_step')} (kept as this adapter). The best step is chosen on these same validation "
            "users, so its number is optimistic when several steps were validated; the evaluation harness's test-split "
            "numbers are the unbiased ones.",
        ]
    else:
        lines.append("No validation was run.")
    notes = card.get("notes")
    if notes:
        lines += ["", "## Notes", "", str(notes)]
    lines.append("")
    return "\n".join(lines)
