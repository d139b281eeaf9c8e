"""The adapter folder format, in one place: its file names, the card, the base-model record, and where adapters
are found.

An llmrec adapter folder (written by `llmrec train` through `write_card`, read by rankers and the evaluation
harness through `read_adapter_card`) holds:

==============================================  ==============================================================
``adapter_config.json``, ``adapter_model.*``     the PEFT LoRA adapter
``llmrec_base_model.json``                      architecture and fingerprint of the exact base model
``adapter_card.json``                           the card (`AdapterCard`): base model, mode, template, prompt
                                                settings, training split, metrics, and whatever else it holds
``train_config.yaml``                           the full resolved training config
``README.md``                                   the card in words
==============================================  ==============================================================

A plain PEFT folder (no card) also loads; it just says nothing about how it was trained.

Adapters are named by path, or by the name of a shipped adapter (``"smollm2-ml100k-listwise-kg"``): those ship as
package data in ``llmrec/adapters/`` and may be added under ``$LLMREC_HOME/adapters/``. Names never look at the
working directory, so a folder called ``adapters/`` there is only used when a path to it is given.

Example:
    >>> from llmrec.models.adapters import read_adapter_card, resolve_adapter
    >>> card = read_adapter_card(resolve_adapter("smollm2-ml100k-pointwise-kg"))  # doctest: +SKIP
    >>> card.mode, card.template, card.split.min_history  # doctest: +SKIP
    ('pointwise', 'pointwise_kg', 5)
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmrec.assets import llmrec_home
from llmrec.data.splits import Split, SplitSettings, check_training_split
from llmrec.errors import ConfigError, LlmrecError

log = logging.getLogger(__name__)

CARD_FILE = "adapter_card.json"
PEFT_CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
#: Names the exact base model an adapter was trained on; `load_model` refuses the adapter on another one.
BASE_INFO_FILE = "llmrec_base_model.json"
README_FILE = "README.md"
CONFIG_FILE = "train_config.yaml"
#: What a finished llmrec adapter folder holds (`read_card` checks them).
REQUIRED_FILES = (PEFT_CONFIG_FILE, WEIGHTS_FILE, CARD_FILE, README_FILE, CONFIG_FILE)

#: The base model the shipped default adapters were trained on; other base models run bare unless given one.
DEFAULT_ADAPTER_BASE = "smollm2"
#: The shipped adapter a `"default"` adapter means, per scoring mode (generative prompts use the listwise one).
DEFAULT_ADAPTERS = {"listwise": "smollm2-ml100k-listwise-kg", "pointwise": "smollm2-ml100k-pointwise-kg"}
DEFAULT_ADAPTER = DEFAULT_ADAPTERS["listwise"]

#: Card keys in the order `AdapterCard.to_dict` writes them (keys it does not know follow, in their own order).
_KEY_ORDER = (
    "name",
    "path",
    "llmrec_version",
    "created_utc",
    "base_model",
    "base_model_fingerprint",
    "quantization",
    "mode",
    "template",
    "knowledge",
    "prompt",
    "dataset",
    "split",
    "training_split",
    "data",
    "negatives",
    "lora",
    "optim",
    "training",
    "validation",
    "fusion",
)


class AdapterError(LlmrecError):
    """An adapter path does not exist, is not a PEFT adapter, or was trained on another base model."""


class AdapterCardError(LlmrecError):
    """An adapter folder is incomplete or its card is malformed."""


# ----------------------------------------------------------------------------------------------- the card


@dataclass(frozen=True)
class AdapterCard:
    """What an adapter says about itself (``adapter_card.json``).

    Attributes:
        base_model: the base model name the run was given (an asset name, folder or hub id).
        name: the adapter's name.
        base_model_fingerprint: `llmrec.models.base_model_fingerprint` of the base checkpoint (None: unknown).
        mode: the scoring mode it was trained for (None: unknown).
        template: the prompt template it was trained with.
        knowledge: whether its training prompts showed KG facts.
        prompt: prompt settings (``history_budget``, ``fact_budget``, ``facts_per_candidate``,
            ``candidate_order``) that rankers reuse unless told otherwise.
        split: the split its training examples were drawn from (None: not recorded; the leak check then warns).
        metrics: the validation section (zero-shot and best rows, history).
        fusion: score-fusion settings, when the adapter carries them (None otherwise).
        extra: every other card key (dataset, data, negatives, lora, optim, training, ...), kept as written so
            a card read and written back loses nothing.
    """

    base_model: str
    name: str | None = None
    base_model_fingerprint: str | None = None
    mode: str | None = None
    template: str | None = None
    knowledge: bool | None = None
    prompt: Mapping[str, Any] = field(default_factory=dict)
    split: SplitSettings | None = None
    metrics: Mapping[str, Any] = field(default_factory=dict)
    fusion: Mapping[str, Any] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.base_model, str) or not self.base_model:
            raise AdapterCardError(f"AdapterCard.base_model must be a non-empty string, got {self.base_model!r}")
        for name in ("prompt", "metrics", "extra"):
            if not isinstance(getattr(self, name), Mapping):
                raise AdapterCardError(f"AdapterCard.{name} must be a mapping, got {getattr(self, name)!r}")
        if self.fusion is not None and not isinstance(self.fusion, Mapping):
            raise AdapterCardError(f"AdapterCard.fusion must be a mapping or None, got {self.fusion!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "adapter card") -> AdapterCard:
        """Parse a card mapping. Unknown keys go to `extra` (and come back out of `to_dict`).

        Raises:
            AdapterCardError: no ``base_model``, or a known key of the wrong type.
        """
        if not isinstance(data, Mapping) or "base_model" not in data:
            raise AdapterCardError(f"{where}: not an llmrec adapter card (no base_model)")
        rest = dict(data)
        split = rest.pop("training_split", None)
        try:
            settings = SplitSettings.from_dict(split) if isinstance(split, Mapping) else None
        except ConfigError as exc:
            raise AdapterCardError(f"{where}: training_split: {exc}") from None
        if split is not None and settings is None:
            raise AdapterCardError(f"{where}: training_split must be a mapping, got {split!r}")
        try:
            return cls(
                base_model=rest.pop("base_model"),
                name=rest.pop("name", None),
                base_model_fingerprint=rest.pop("base_model_fingerprint", None),
                mode=rest.pop("mode", None) or None,
                template=rest.pop("template", None) or None,
                knowledge=rest.pop("knowledge", None),
                prompt=rest.pop("prompt", None) or {},
                split=settings,
                metrics=rest.pop("validation", None) or {},
                fusion=rest.pop("fusion", None),
                extra=rest,
            )
        except AdapterCardError as exc:
            raise AdapterCardError(f"{where}: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        """The card as written to ``adapter_card.json`` (None-valued optional fields are left out)."""
        typed: dict[str, Any] = {
            "name": self.name,
            "base_model": self.base_model,
            "base_model_fingerprint": self.base_model_fingerprint,
            "mode": self.mode,
            "template": self.template,
            "knowledge": self.knowledge,
            "prompt": dict(self.prompt),
            "training_split": self.split.to_dict() if self.split is not None else None,
            "validation": dict(self.metrics),
            "fusion": dict(self.fusion) if self.fusion is not None else None,
        }
        merged = {**dict(self.extra), **{k: v for k, v in typed.items() if v is not None}}
        ordered = {k: merged[k] for k in _KEY_ORDER if k in merged}
        ordered.update((k, v) for k, v in merged.items() if k not in ordered)
        return ordered

    def prompt_settings(self) -> dict[str, Any]:
        """The prompt settings rankers reuse: budgets, facts per candidate, candidate order."""
        return dict(self.prompt)

    def fusion_note(self) -> str | None:
        """What a card made before score fusion lacks (its weights), with the command that fits them; else None."""
        if self.fusion is not None:
            return None
        return (
            "its card has no score-fusion weights (made before score fusion), so scores are the LLM's alone. Fit "
            "them on validation users: llmrec eval CONFIG --fit-fusion ARM --write-card, with CONFIG evaluating "
            "split.target: valid and ARM this adapter's arm (example: eval/ml100k-fusion-fit.yaml)"
        )

    def evidence_note(self) -> str | None:
        """What a card made before collaborative evidence lacks (the setting), with what to do; else None."""
        if "cf_evidence" in self.prompt:
            return None
        return (
            "its card records no cf_evidence setting (made before collaborative evidence), so prompts show none, "
            "as in its training; retrain with prompt.cf_evidence: true in the recipe to use it"
        )

    def upgrade_notes(self, *, fusion: bool = True) -> list[str]:
        """The notes of a card made by an older llmrec (`fusion`: whether score fusion was asked for)."""
        notes = [self.fusion_note() if fusion else None, self.evidence_note()]
        return [n for n in notes if n is not None]

    def check_split(
        self, evaluated: Split, *, adapter: str | None = None, users: Collection[str] | None = None
    ) -> None:
        """Refuse to evaluate this adapter on `evaluated` when its training split holds `evaluated`'s held-out
        items (of `users` only, when given: the users it is evaluated on); warn when the card cannot tell (no
        training split recorded, or another version of the dataset).

        Raises:
            SplitLeakError: naming the adapter, both split settings and an example user.
        """
        who = f"adapter {adapter or self.name or '?'!r}"
        if self.split is None:
            log.warning(
                "%s records no training split: cannot check that it was not trained on the held-out items of this "
                "%s",
                who,
                evaluated.settings.describe(),
            )
            return
        problem = check_training_split(self.split, evaluated, model=who, users=users)
        if problem is not None:
            log.warning("%s", problem)


# ----------------------------------------------------------------------------------------------- read / write


def read_adapter_card(folder: str | Path) -> AdapterCard:
    """The card of a finished adapter folder; its base-model fingerprint is taken from ``llmrec_base_model.json``
    when the card itself does not carry one.

    Raises:
        AdapterCardError: the folder is missing a required file or the card is malformed.
    """
    folder = Path(folder)
    missing = [name for name in REQUIRED_FILES if not (folder / name).is_file()]
    if missing:
        raise AdapterCardError(f"{folder} is not a complete llmrec adapter: missing {', '.join(missing)}")
    card = AdapterCard.from_dict(_read_json(folder / CARD_FILE, AdapterCardError), where=str(folder / CARD_FILE))
    if card.base_model_fingerprint is None:
        info = read_base_model_info(folder)
        if info and info.get("fingerprint"):
            from dataclasses import replace

            card = replace(card, base_model_fingerprint=str(info["fingerprint"]))
    return card


def read_card(folder: str | Path) -> dict[str, Any]:
    """The card of a finished adapter folder as a plain mapping (`read_adapter_card(folder).to_dict()`)."""
    return read_adapter_card(folder).to_dict()


def card_of(folder: str | Path | None) -> AdapterCard | None:
    """The card of an adapter folder, or None for no folder or a plain PEFT folder without a card."""
    if folder is None or not (Path(folder) / CARD_FILE).is_file():
        return None
    return read_adapter_card(folder)


def write_card(folder: str | Path, card: AdapterCard, *, ref: str | None = None) -> None:
    """Write ``adapter_card.json`` and the ``README.md`` rendered from it into `folder` (`ref`: how the README's
    examples name the adapter; default the card's ``path``)."""
    folder = Path(folder)
    data = card.to_dict()
    (folder / CARD_FILE).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    (folder / README_FILE).write_text(render_readme(data, ref=ref), encoding="utf-8")


def update_card(folder: str | Path, card: AdapterCard) -> None:
    """Replace the card (and README) of a finished adapter folder in place, each file written atomically, so an
    interrupted update leaves the old card, never half a new one."""
    from llmrec.io import atomic_write_text

    folder = Path(folder)
    data = card.to_dict()
    atomic_write_text(folder / CARD_FILE, json.dumps(data, indent=2) + "\n")
    atomic_write_text(folder / README_FILE, render_readme(data, ref=_name_or_path(folder)))


def _name_or_path(folder: Path) -> str:
    """How to name an adapter folder: its name where that name finds it (shipped or in $LLMREC_HOME/adapters),
    else its path."""
    try:
        found = resolve_adapter(folder.name)
    except LlmrecError:
        return str(folder)
    return folder.name if found.resolve() == folder.resolve() else str(folder)


def read_base_model_info(folder: str | Path) -> dict[str, Any] | None:
    """The base-model record (``llmrec_base_model.json``) of an adapter folder, or None when it has none."""
    path = Path(folder) / BASE_INFO_FILE
    if not path.is_file():
        return None
    data = _read_json(path, AdapterError)
    if not isinstance(data, dict):
        raise AdapterError(f"{path}: expected a JSON object")
    return data


def read_peft_config(folder: str | Path) -> dict[str, Any]:
    """The PEFT ``adapter_config.json`` of an adapter folder.

    Raises:
        AdapterError: the folder does not exist, is not a PEFT adapter folder or the file is not valid JSON.
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise AdapterError(f"adapter path {str(folder)!r} does not exist or is not a folder")
    path = folder / PEFT_CONFIG_FILE
    if not path.is_file():
        raise AdapterError(f"{folder} is not a PEFT adapter folder (no {PEFT_CONFIG_FILE})")
    data = _read_json(path, AdapterError)
    if not isinstance(data, dict):
        raise AdapterError(f"{path}: expected a JSON object")
    return data


def adapter_base_model(folder: str | Path) -> str:
    """The base model an adapter folder was trained on (``base_model_name_or_path`` of its adapter_config.json).

    Raises:
        AdapterError: no adapter_config.json, or it does not name its base model.
    """
    base = read_peft_config(folder).get("base_model_name_or_path")
    if not base:
        raise AdapterError(
            f"{Path(folder) / PEFT_CONFIG_FILE} does not name its base model (base_model_name_or_path)"
        )
    return str(base)


def _read_json(path: Path, error: type[LlmrecError]) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise error(f"{path}: not valid JSON: {exc}") from None


# ----------------------------------------------------------------------------------------------- where adapters are


def shipped_adapter_dir() -> Path:
    """The package-data folder of the shipped adapters (``llmrec/adapters``)."""
    return Path(__file__).resolve().parents[1] / "adapters"


def adapter_search_path() -> list[Path]:
    """Folders that adapter *names* resolve in, first match wins: the package's shipped adapters, then
    ``$LLMREC_HOME/adapters`` (default ``~/.cache/llmrec/adapters``)."""
    return [shipped_adapter_dir(), llmrec_home() / "adapters"]


def adapter_names() -> list[str]:
    """Names of the adapters that `resolve_adapter` finds by name, sorted."""
    names: set[str] = set()
    for folder in adapter_search_path():
        if folder.is_dir():
            names.update(p.name for p in folder.iterdir() if (p / PEFT_CONFIG_FILE).is_file())
    return sorted(names)


def _is_name(ref: str) -> bool:
    return bool(ref) and "/" not in ref and "\\" not in ref and ref not in (".", "..") and not ref.startswith("~")


def resolve_adapter(ref: str | Path, *, base: str | Path | None = None) -> Path:
    """The folder of an adapter given by name or path.

    A name (no path separator) is looked up in `adapter_search_path` (the shipped adapters first); a name found
    there wins over a folder of that name in the working directory (give ``./name`` for that one). Otherwise
    `ref` is a path: as given (relative to the working directory), else relative to `base` (e.g. an experiment
    config's folder) when that holds it.

    Raises:
        AdapterError: nothing found, naming the known adapters.
    """
    text = str(ref)
    if not isinstance(ref, Path) and _is_name(text):
        for folder in adapter_search_path():
            candidate = folder / text
            if (candidate / PEFT_CONFIG_FILE).is_file():
                if Path(text).is_dir():
                    log.warning(
                        "adapter %r is the shipped/installed adapter %s, not the folder ./%s (pass ./%s for that)",
                        text, candidate, text, text,
                    )
                return candidate
    path = Path(text).expanduser()
    if path.is_dir():
        return path
    if base is not None and not path.is_absolute() and (Path(base) / path).is_dir():
        return Path(base) / path
    raise AdapterError(
        f"adapter path {text!r} does not exist or is not a folder, and no adapter has that name "
        f"(known adapter names: {', '.join(adapter_names()) or 'none'})"
    )


def default_adapter(model: str, mode: str | None = None) -> str | None:
    """The shipped adapter a ``"default"`` adapter means for base model `model` ranking in `mode` (None: the base
    model has no default adapter)."""
    if model != DEFAULT_ADAPTER_BASE:
        return None
    return DEFAULT_ADAPTERS.get(mode or "listwise", DEFAULT_ADAPTER)


# ----------------------------------------------------------------------------------------------- README


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return str(value)


def validation_below_start(card: Mapping[str, Any]) -> str | None:
    """A warning when continued fine-tuning (``lora.init_from``) ended below the adapter it started from on its
    validation metric (the trainer keeps its best step, which is then still worse); else None."""
    init = (card.get("lora") or {}).get("init_from")
    v = card.get("validation") or {}
    metric = v.get("metric")
    start = (v.get("zero_shot") or {}).get(metric)
    best = (v.get("best") or {}).get(metric)
    if not init or start is None or best is None or best >= start:
        return None
    return (
        f"no validated step beat adapter {init}, which training started from: {metric} {_fmt(start)} at the start, "
        f"{_fmt(best)} at the best step ({v.get('best_step')}); this adapter is worse on these validation users, "
        f"so keep {init} unless another measure (e.g. an evaluation under the protocol it was trained for) says "
        "otherwise"
    )


def render_readme(card: Mapping[str, Any] | AdapterCard, *, ref: str | None = None) -> str:
    """A short human-readable README for an adapter card (`ref`: how the examples name the adapter; default
    the card's ``path``)."""
    if isinstance(card, AdapterCard):
        card = card.to_dict()
    t, v = card.get("training", {}), card.get("validation", {})
    ref = ref or str(card.get("path", "adapters/" + str(card.get("name"))))
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
        f"llmrec rank --adapter {ref} ...",
        "```",
        "",
        "```python",
        "from llmrec import Reranker, RerankerConfig",
        f"reranker = Reranker(dataset, RerankerConfig({card['base_model']!r}, adapter={ref!r}))",
        "```",
        "",
        "## Data",
        "",
        f"- dataset: `{card.get('dataset')}`, split: `{card.get('split')}` (training examples from earlier "
        "positions of each user's training sequence; no validation or test item of a user appears in its "
        "training examples)",
    ]
    split = card.get("training_split")
    if isinstance(split, Mapping):
        lines.append(
            "- training split: " + ", ".join(f"{k}={_fmt(x)}" for k, x in split.items())
            + " (an evaluation whose split could put its held-out items into this training split is refused)"
        )
    lines += [
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
            f"{v.get('users')} validation users (each user's validation item vs {v.get('negatives')} "
            f"{v.get('negatives_source', 'random unseen items')}, same sample and negatives for every row), "
            f"metric `{v.get('metric')}`:"
        )
        lines += ["", "| model | " + " | ".join(v.get("metric_names", [])) + " |",
                  "|---|" + "---|" * len(v.get("metric_names", []))]
        init = (card.get("lora") or {}).get("init_from")
        start = f"step 0: adapter {init}, which training started from" if init else "zero-shot base model"
        for row_name, key in ((start, "zero_shot"), ("this adapter (best step)", "best")):
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
        below = validation_below_start(card)
        if below:
            lines += ["", f"**Warning**: {below}."]
    else:
        lines.append("No validation was run.")
    fusion = card.get("fusion")
    if isinstance(fusion, Mapping):
        fitted = fusion.get("fitted") or {}
        weights = ", ".join(
            f"{m} {_fmt(w)}" for m, w in zip(fusion.get("members", []), fusion.get("weights", []), strict=False)
        )
        lines += [
            "",
            "## Score fusion",
            "",
            f"Rankers add this adapter's score to first-stage scores, each z-scored per user: LLM weight "
            f"{_fmt(fusion.get('llm_weight'))}, {weights}. Fit on {fitted.get('users')} validation users "
            f"(NDCG@10: {', '.join(f'{k} {_fmt(x)}' for k, x in (fitted.get('ndcg@10') or {}).items())}); "
            "`fusion=False` ranks by the adapter's score alone.",
        ]
        cv = fitted.get("cv")
        if isinstance(cv, Mapping) and "llm_gain" in cv:
            low, high = cv.get("llm_gain_ci95") or (float("nan"), float("nan"))
            lines += [
                "",
                f"Held-out check ({cv.get('folds')}-fold cross-validation over those users): the LLM changes "
                f"NDCG@10 by {cv['llm_gain']:+.4f} (95% CI [{low:+.4f}, {high:+.4f}]).",
            ]
        if fitted.get("llm_dropped"):
            lines += ["", f"The LLM gets no weight: {fitted['llm_dropped']}."]
        if fusion.get("llm_depth") is not None:
            lines += [
                "",
                f"The LLM scores only the {fusion['llm_depth']} best candidates of the first-stage members' fusion; "
                "the others follow below in that order (`llm_depth`).",
            ]
    notes = card.get("notes")
    if notes:
        lines += ["", "## Notes", "", str(notes)]
    lines.append("")
    return "\n".join(lines)
