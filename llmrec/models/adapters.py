"""The adapter folder format, in one place: its file names, the card, the base-model record, and where adapters
are found.

An llmrec adapter folder (written by `llmrec train` through `write_card`, read by rankers and the evaluation
harness through `read_adapter_card`) holds:

==============================================  ==============================================================
``adapter_config.json``, ``adapter_model.*``     the PEFT LoRA adapter
``llmrec_base_model.json``                      architecture and fingerprint of the exact base model
``adapter_card.json``                           the card (`AdapterCard`): its format version (``card_version``),
                                                base model, mode, template, prompt settings, training split,
                                                metrics, and whatever else it holds
``train_config.yaml``                           the full resolved training config
``README.md``                                   the card in words
==============================================  ==============================================================

A plain PEFT folder (no card) also loads; it just says nothing about how it was trained.

The card is a versioned schema: `write_card` always writes the current ``card_version`` (`CARD_VERSION`), and
reading a card dispatches on its version. A card without one is version 1 (written before cards carried it) and
is brought to the current version by the steps in `_MIGRATIONS`, one per version, here and nowhere else; a card
of a newer version than this llmrec knows is refused.

Adapters are named by path, or by name (``"smollm2-ml100k-listwise-kg"``): a name is looked up among the shipped
adapters, then under ``$LLMREC_HOME/adapters/``. The shipped adapters live in the top-level folder ``adapters/`` of
the source tree beside every adapter's recipe (``adapters/<name>.yaml``), packaged as ``llmrec._shipped.adapters``
and found through the import system (`shipped_adapter_dir`). Names never look at the working directory, so a folder
called ``adapters/`` there is only used when a path to it is given. Only the adapters the defaults use ship; the
retired ones keep their recipe and their card (``adapters/retired/<name>/``, no weights), and naming one says how
to retrain it into ``$LLMREC_HOME/adapters/<name>`` (`retired_adapter_message`).

Example:
    >>> from llmrec.models.adapters import read_adapter_card, resolve_adapter
    >>> card = read_adapter_card(resolve_adapter("smollm2-ml100k-pointwise-residual"))  # doctest: +SKIP
    >>> card.mode, card.template, card.split.min_history  # doctest: +SKIP
    ('pointwise', 'pointwise_kg', 5)
"""

from __future__ import annotations

import copy
import json
import logging
import math
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from llmrec import __version__
from llmrec._shipped import shipped_folder
from llmrec.assets import llmrec_home
from llmrec.data.splits import Split, SplitSettings, check_training_split
from llmrec.errors import ConfigError, LlmrecError
from llmrec.prompts.templates import text_environment

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
#: The card format this llmrec writes (``card_version``); it reads every version up to this one.
CARD_VERSION = 2
#: The version of a card that has no ``card_version`` (one written before cards carried it).
FIRST_CARD_VERSION = 1
#: The Jinja template (package data next to this module) that `render_readme` fills from a card.
README_TEMPLATE = "adapter_readme.md.jinja"

#: The base model the shipped default adapters were trained on; other base models run bare unless given one.
DEFAULT_ADAPTER_BASE = "smollm2"
#: The shipped adapter a `"default"` adapter means, per scoring mode (generative prompts use the listwise one).
DEFAULT_ADAPTERS = {"listwise": "smollm2-ml100k-listwise-kg", "pointwise": "smollm2-ml100k-pointwise-residual"}
#: The default mode's adapter: pointwise, the only shipped adapter whose fit with the default first stage gives the
#: LLM a weight (eval/results/ml100k-default-fit: listwise KG gets 0).
DEFAULT_MODE = "pointwise"
DEFAULT_ADAPTER = DEFAULT_ADAPTERS[DEFAULT_MODE]
#: The folder (inside the shipped adapters' folder) that holds the cards of retired adapters, one folder each.
RETIRED_DIR = "retired"

#: Card keys in the order `AdapterCard.to_dict` writes them (keys it does not know follow, in their own order).
_KEY_ORDER = (
    "card_version",
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
    """An adapter path does not exist, is not a PEFT adapter, was trained on another base model, or has a card of
    a newer format than this llmrec reads."""


class AdapterCardError(LlmrecError):
    """An adapter folder is incomplete or its card is malformed."""


# ----------------------------------------------------------------------------------------------- card versions


def _card_v1_to_v2(card: dict[str, Any], folder: Path | None) -> dict[str, Any]:
    """Version 1 -> 2. Version 1 is every card written before cards carried a ``card_version``; the older of them
    lack two facts that version 2 records whenever they are known:

    - ``base_model_fingerprint``: the first cards left it to ``llmrec_base_model.json``, so it is taken from there
      (when the card is read from its folder and that record has one);
    - ``validation.negatives_source``: validation negatives were random unseen items before the trainer could draw
      them as its training negatives (``validation.source``), and cards said so only from then on.
    """
    if card.get("base_model_fingerprint") is None and folder is not None:
        info = read_base_model_info(folder)
        if info and info.get("fingerprint"):
            card["base_model_fingerprint"] = str(info["fingerprint"])
    validation = card.get("validation")
    if isinstance(validation, Mapping) and validation and "negatives_source" not in validation:
        card["validation"] = {**validation, "negatives_source": "random unseen items"}
    return card


#: How a card of version ``v`` becomes one of version ``v + 1``: one step per version below `CARD_VERSION`, each
#: given a copy of the card it may change and the folder the card was read from (None: a card given as a mapping).
_MIGRATIONS: dict[int, Callable[[dict[str, Any], Path | None], dict[str, Any]]] = {1: _card_v1_to_v2}


def card_version(data: Mapping[str, Any], *, where: str = "adapter card") -> int:
    """The format version of a card mapping: its ``card_version``, `FIRST_CARD_VERSION` when it has none.

    Raises:
        AdapterCardError: ``card_version`` is not a positive integer.
        AdapterError: a version newer than this llmrec reads (`CARD_VERSION`), naming `where`.
    """
    if "card_version" not in data:
        return FIRST_CARD_VERSION
    version = data["card_version"]
    if not isinstance(version, int) or isinstance(version, bool) or version < FIRST_CARD_VERSION:
        raise AdapterCardError(f"{where}: card_version must be a positive integer, got {version!r}")
    if version > CARD_VERSION:
        raise AdapterError(
            f"{where}: card_version {version} is newer than llmrec {__version__} reads (newest known: "
            f"{CARD_VERSION}); upgrade llmrec to use this adapter"
        )
    return version


def migrate_card(
    data: Mapping[str, Any], *, where: str = "adapter card", folder: str | Path | None = None
) -> dict[str, Any]:
    """A card mapping brought to the current format: each step of `_MIGRATIONS` from its version up, then
    ``card_version`` set to `CARD_VERSION` (`data` itself is left as it is).

    Args:
        data: the card as read.
        where: how errors name the card (e.g. its file).
        folder: the adapter folder the card was read from (older cards take facts from its other files).

    Raises:
        AdapterCardError: ``card_version`` is not a positive integer.
        AdapterError: a card of a newer version than this llmrec reads.
    """
    version = card_version(data, where=where)
    card = copy.deepcopy(dict(data))  # steps change nested sections freely; `data` stays as it is
    for step in range(version, CARD_VERSION):
        card = _MIGRATIONS[step](card, Path(folder) if folder is not None else None)
    card["card_version"] = CARD_VERSION
    return card


# ----------------------------------------------------------------------------------------------- the card


@dataclass(frozen=True)
class AdapterCard:
    """What an adapter says about itself (``adapter_card.json``), in the current card format (`CARD_VERSION`).

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
    def from_dict(
        cls, data: Mapping[str, Any], *, where: str = "adapter card", folder: str | Path | None = None
    ) -> AdapterCard:
        """Parse a card mapping of any known version (`migrate_card`; `folder`: the adapter folder it was read
        from). Unknown keys go to `extra` (and come back out of `to_dict`).

        Raises:
            AdapterCardError: no ``base_model``, a bad ``card_version``, or a known key of the wrong type.
            AdapterError: a card of a newer version than this llmrec reads.
        """
        if not isinstance(data, Mapping) or "base_model" not in data:
            raise AdapterCardError(f"{where}: not an llmrec adapter card (no base_model)")
        rest = migrate_card(data, where=where, folder=folder)
        del rest["card_version"]  # always the current one: `to_dict` writes it
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
        """The card as written to ``adapter_card.json``, in the current format (None-valued optional fields are
        left out)."""
        typed: dict[str, Any] = {
            "card_version": CARD_VERSION,
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
    """The card of a finished adapter folder, brought to the current format (`migrate_card`).

    Raises:
        AdapterCardError: the folder is missing a required file or the card is malformed.
        AdapterError: the card is of a newer version than this llmrec reads.
    """
    folder = Path(folder)
    missing = [name for name in REQUIRED_FILES if not (folder / name).is_file()]
    if missing:
        raise AdapterCardError(f"{folder} is not a complete llmrec adapter: missing {', '.join(missing)}")
    data = _read_json(folder / CARD_FILE, AdapterCardError)
    return AdapterCard.from_dict(data, where=str(folder / CARD_FILE), folder=folder)


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
    """The folder of the shipped adapters and the recipes: the data package ``llmrec._shipped.adapters``
    (``adapters/`` in a checkout), found through the import system."""
    return shipped_folder("adapters")


def recipe_path(name: str) -> Path | None:
    """The shipped recipe (training config) of adapter `name`, ``adapters/<name>.yaml``, or None when none ships."""
    path = shipped_adapter_dir() / f"{name}.yaml"
    return path if _is_name(name) and path.is_file() else None


def retired_adapters() -> list[str]:
    """Names of the adapters retired from the package: their cards ship (``adapters/retired/<name>/``), their
    weights do not; sorted."""
    folder = shipped_adapter_dir() / RETIRED_DIR
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if (p / CARD_FILE).is_file())


def retired_adapter_message(name: str) -> str | None:
    """What to tell someone who names a retired adapter `name`: that it left the package, where its card and recipe
    are, and the command that retrains it into ``$LLMREC_HOME/adapters/<name>`` (where the name finds it again);
    None when `name` is not a retired adapter."""
    if not _is_name(name) or name not in retired_adapters():
        return None
    card = shipped_adapter_dir() / RETIRED_DIR / name
    recipe = recipe_path(name)
    target = llmrec_home() / "adapters" / name
    if recipe is None:  # a card without its recipe: a broken install (recipes ship beside the cards)
        how = f"its recipe is missing from this install ({shipped_adapter_dir() / (name + '.yaml')})"
    else:
        how = (
            f"its recipe is {recipe}. Retrain it into {target}, where this name finds it: "
            f"llmrec train --config {recipe} --output {target}"
        )
    return (
        f"adapter {name!r} was removed from the llmrec package (only the adapters the defaults use ship; see "
        f"{shipped_adapter_dir() / README_FILE}); its card is in {card}, {how}"
    )


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

    A name that is not found but was a shipped adapter once (`retired_adapters`) raises the retired adapter's
    message (`retired_adapter_message`: its recipe and the command that retrains it).

    Raises:
        AdapterError: nothing found, naming the known adapters (or, for a retired adapter, how to retrain it).
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
    retired = retired_adapter_message(text) if not isinstance(ref, Path) else None
    if retired is not None:
        raise AdapterError(retired)
    raise AdapterError(
        f"adapter path {text!r} does not exist or is not a folder, and no adapter has that name "
        f"(known adapter names: {', '.join(adapter_names()) or 'none'})"
    )


def default_adapter(model: str, mode: str | None = None) -> str | None:
    """The shipped adapter a ``"default"`` adapter means for base model `model` ranking in `mode` (None: the base
    model has no default adapter)."""
    if model != DEFAULT_ADAPTER_BASE:
        return None
    mode = mode or DEFAULT_MODE
    return DEFAULT_ADAPTERS["pointwise" if mode == "pointwise" else "listwise"]  # generative reads listwise prompts


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
    """A short human-readable README for an adapter card, of any known version (`ref`: how the examples name the
    adapter; default the card's ``path``), filled into the template `README_TEMPLATE`.

    Raises:
        AdapterCardError / AdapterError: a card mapping with a bad or too new ``card_version``.
    """
    data = card.to_dict() if isinstance(card, AdapterCard) else migrate_card(card)
    return _readme_template().render(
        card=data,
        ref=ref or str(data.get("path", "adapters/" + str(data.get("name")))),
        below=validation_below_start(data),
    )


def _pairs(value: Mapping[Any, Any] | Iterable[tuple[Any, Any]], sep: str = "=") -> str:
    """``k=v, ...`` (`sep` between key and value) for a mapping or (key, value) pairs; values as `_fmt` writes."""
    items = value.items() if isinstance(value, Mapping) else value
    return ", ".join(f"{k}{sep}{_fmt(x)}" for k, x in items)


@lru_cache(maxsize=1)
def _readme_template() -> Any:
    """The compiled README template (package data next to this module), in the environment prompts render in."""
    env = text_environment()
    env.filters.update(
        fmt=_fmt,
        pairs=_pairs,
        signed=lambda x: f"{x:+.4f}",
        cells=lambda row, names: [_fmt(row.get(m)) for m in names],
        repr=repr,
    )
    env.globals.update(zip=zip, nan=math.nan)
    return env.from_string((Path(__file__).parent / README_TEMPLATE).read_text(encoding="utf-8"))
