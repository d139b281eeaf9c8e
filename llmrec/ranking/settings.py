"""Settings resolution: a `RerankerConfig` resolved against the adapter card and the template into the settings a
`Reranker` ranks with (adapter, template, mode, model to load, prompt settings, score fusion, window).

Precedence, per setting: what the config asks for, else what the adapter was trained with (its card), else the
default. The leak guard (an adapter trained on the held-out items of the split being ranked) runs here too, so a
bad combination fails before any model is loaded.

Example:
    >>> from llmrec.ranking import RerankerConfig
    >>> settings = resolve_settings(RerankerConfig(adapter=None, mode="pointwise"), dataset)  # doctest: +SKIP
    >>> settings.template.name, settings.fusion  # doctest: +SKIP
    ('pointwise_kg', None)
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from llmrec.errors import ConfigError, LlmrecWarning, OlderCardWarning
from llmrec.models import ModelConfig
from llmrec.models.adapters import AdapterCard, card_of, resolve_adapter
from llmrec.prompts import PromptSettings, PromptTemplate, load_template
from llmrec.ranking.config import DEFAULT_ADAPTER_REF, RerankerConfig
from llmrec.ranking.fusion import ScoreFusion

if TYPE_CHECKING:
    from llmrec.data.dataset import Dataset
    from llmrec.models import LoadedModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ResolvedSettings:
    """What a `Reranker` ranks with, resolved from its `RerankerConfig` (see `resolve_settings`).

    Attributes:
        adapter_name, adapter_path: the adapter in use (its folder name and path), or None for the bare model.
        card: the adapter's card (None: no adapter, or a plain PEFT folder without a card).
        template: the prompt template; mode: its scoring mode.
        model: the `ModelConfig` to load (the adapter attached, merged if asked); unused for a model passed in.
        prompt: the prompt settings (the config's options over the card's over the defaults).
        fusion: score fusion with first-stage retrievers (the config's weights, else the card's), or None.
        window, step: candidates per listwise/generative prompt (0: the template labels no candidates) and how
            far the sliding window moves.
        card_notes: what the card, made by an older llmrec, lacks (each also raised as an `OlderCardWarning`).
    """

    adapter_name: str | None
    adapter_path: str | None
    card: AdapterCard | None
    template: PromptTemplate
    mode: str
    model: ModelConfig
    prompt: PromptSettings
    fusion: ScoreFusion | None
    window: int
    step: int
    card_notes: tuple[str, ...] = ()


def resolve_settings(
    config: RerankerConfig, dataset: Dataset, lm: LoadedModel | None = None, *, stacklevel: int = 1
) -> ResolvedSettings:
    """Resolve `config` against the adapter card and the template, without loading a model.

    Args:
        config: what was asked for.
        dataset: the data to rank on; when it is the train part of a split, the adapter's training split is
            checked against it (unless ``config.check_split`` is False).
        lm: a model that will be used as loaded: the default adapter then applies only if it is loaded into it.
        stacklevel: as `warnings.warn`'s, counted from the caller of this function (1: the warnings point at
            that caller; the `Reranker` passes 2 so they point at the user's ``Reranker(...)``).

    Raises:
        ConfigError: a template of another mode than asked, pointwise with permutations, an adapter name taken,
            merge_adapter without an adapter or with `lm`, a window step not below the window, an llm_depth
            without score fusion. SplitLeakError: the adapter was trained on the held-out items of `dataset`'s
            split. AdapterError: an adapter that cannot be found or read.
    """
    adapter_name, adapter_path, card = _adapter(config, lm)
    template = load_template(template_name(config, card))
    if config.mode is not None and template.mode != config.mode:
        raise ConfigError(
            f"template {template.name!r} is a {template.mode} template, but mode={config.mode!r} was asked"
        )
    mode = template.mode
    if card is not None and card.mode is not None and card.mode != mode:
        warnings.warn(
            f"adapter {adapter_name} was trained for {card.mode} scoring ({card.template}) but ranks in "
            f"{mode} mode here; use a {mode} adapter or none",
            LlmrecWarning,
            stacklevel=stacklevel + 1,
        )
    if mode == "pointwise" and config.permutations > 1:
        raise ConfigError(
            "permutations > 1 is for position bias in listwise/generative prompts; pointwise prompts show one "
            "candidate each, so set permutations=1"
        )
    if adapter_path is not None and config.check_split:
        check_training_split(dataset, card, adapter_name)
    notes: tuple[str, ...] = ()
    if card is not None:
        notes = tuple(
            f"adapter {adapter_name!r} ({adapter_path}): {note}"
            for note in card.upgrade_notes(fusion=config.fusion is True)
        )
    for note in notes:
        warnings.warn(note, OlderCardWarning, stacklevel=stacklevel + 1)
    model = _model_config(config, adapter_name, adapter_path, lm)
    trained = card.prompt_settings() if card is not None else {}
    asked = {
        "history_budget": config.history_budget,
        "fact_budget": config.fact_budget,
        "candidate_order": config.candidate_order,
        "cf_evidence": config.cf_evidence,
    }
    # The options asked for, else the ones the adapter was trained with (its card), else the defaults.
    prompt = PromptSettings.resolve(asked, trained)
    window, step = _window(config, template)
    fusion = resolve_fusion(config.fusion, card, config.llm_depth, adapter=adapter_path)
    if config.fusion is True and fusion is not None and fusion.llm_weight == 0 and config.force_llm:
        # unforced, the Reranker skips the LLM and says so (`Reranker.llm_skipped`)
        log.warning(
            "the card of adapter %s gives the LLM weight 0 in its score fusion (%s): rankings equal the "
            "first-stage fusion of %s, and the forced LLM's cost buys nothing; fusion=False ranks by the LLM alone",
            adapter_name,
            fusion.fitted.get("llm_dropped", "fitted on validation users"),
            ", ".join(fusion.members),
        )
    return ResolvedSettings(
        adapter_name, adapter_path, card, template, mode, model, prompt, fusion, window, step, notes
    )


def _adapter(config: RerankerConfig, lm: LoadedModel | None) -> tuple[str | None, str | None, AdapterCard | None]:
    """The adapter asked for (name, folder path, card), with "default" resolved; a model handed in is used as
    loaded: the default adapter only if it was loaded into it."""
    adapter_ref = config.adapter_ref
    if lm is not None and config.adapter == DEFAULT_ADAPTER_REF and adapter_ref is not None:
        if adapter_ref not in lm.adapter_names and lm.merged_adapter != adapter_ref:
            adapter_ref = None
    if adapter_ref is not None:
        folder = resolve_adapter(adapter_ref)
        return folder.name or "adapter", str(folder), card_of(folder)
    if config.adapter == DEFAULT_ADAPTER_REF:
        log.info(
            "no default adapter for base model %r: ranking with the bare model (pass adapter=... to use one)",
            config.model.name_or_path,
        )
    return None, None, None


def template_name(config: RerankerConfig, card: AdapterCard | None) -> str:
    """The configured template; else the card's when the adapter was trained for the asked mode (or no mode
    was asked); else the default template of the mode."""
    if config.template is not None:
        return config.template
    if card is not None and card.template and card.mode and config.mode in (None, card.mode):
        return card.template
    return config.template_name


def check_training_split(dataset: Dataset, card: AdapterCard | None, adapter_name: str | None) -> None:
    """Refuse an adapter trained on a split holding the held-out items of the split `dataset` comes from."""
    split = getattr(dataset, "source_split", None)
    if split is None:
        return  # not the train part of a split: nothing is held out
    if card is None:
        log.warning(
            "adapter %s has no card: cannot check that it was not trained on the held-out items of this %s",
            adapter_name,
            split.settings.describe(),
        )
        return
    card.check_split(split, adapter=adapter_name)


def _model_config(
    config: RerankerConfig, adapter_name: str | None, adapter_path: str | None, lm: LoadedModel | None
) -> ModelConfig:
    """`config.model` with the adapter attached and active (merged when asked)."""
    model_cfg: ModelConfig = config.model
    merge = config.merge_adapter if config.merge_adapter is not None else adapter_path is not None and lm is None
    if adapter_path is not None:
        assert adapter_name is not None
        adapters = dict(model_cfg.adapters)
        if adapters.get(adapter_name, adapter_path) != adapter_path:
            raise ConfigError(f"adapter name {adapter_name!r} is already used for {adapters[adapter_name]}")
        adapters[adapter_name] = adapter_path
        model_cfg = replace(
            model_cfg,
            adapters=tuple(adapters.items()),
            active_adapter=adapter_name,
            merge_adapter=model_cfg.merge_adapter or merge,
        )
    elif config.merge_adapter:
        raise ConfigError("RerankerConfig.merge_adapter=True needs an adapter to merge (adapter is None)")
    if config.merge_adapter and lm is not None:
        raise ConfigError(
            "RerankerConfig.merge_adapter applies to the model the Reranker loads; a model passed as lm= is "
            "used as loaded (load it with ModelConfig(merge_adapter=True) to merge)"
        )
    return model_cfg


def _window(config: RerankerConfig, template: PromptTemplate) -> tuple[int, int]:
    """(window, step) of the sliding windows: the config's, capped at what the template can label."""
    max_labels = template.max_candidates or 0
    window = min(config.window_size or max_labels, max_labels) if max_labels else 0
    step = config.window_step or max(1, window // 2)
    if window and step >= window:
        raise ConfigError(f"RerankerConfig.window_step={step} must be smaller than the window {window}")
    return window, step


def card_fusion(card: AdapterCard | None) -> ScoreFusion | None:
    """The score fusion stored in an llmrec adapter's card (``fusion``), or None."""
    if card is None or card.fusion is None:
        return None
    return ScoreFusion.from_dict(card.fusion, f"adapter {card.name or card.base_model!r}: card fusion")


def resolve_fusion(
    fusion: bool | Mapping[str, Any],
    card: AdapterCard | None,
    llm_depth: int | None = None,
    *,
    adapter: str | None = None,
) -> ScoreFusion | None:
    """The score fusion a `Reranker` applies: `fusion` weights when it is a mapping, else the card's when `fusion`
    is True, else none; `llm_depth` (when not None) replaces the depth. The one place this is decided, for the
    `Reranker` and for the evaluation harness (which reads it to know which report rows an arm has).

    Raises:
        ConfigError: `llm_depth` without a fusion to apply it to, naming why there is none.
    """
    resolved = (
        ScoreFusion.from_dict(fusion, "RerankerConfig.fusion") if isinstance(fusion, Mapping)
        else card_fusion(card) if fusion else None
    )  # fmt: skip
    if llm_depth is None:
        return resolved
    if resolved is None:
        why = (
            "fusion=False" if not fusion
            else "the bare model has no adapter card" if adapter is None
            else f"the card of adapter {adapter} has no fusion weights (fit them: llmrec eval CONFIG --fit-fusion "
            "ARM --write-card)"
        )  # fmt: skip
        raise ConfigError(f"RerankerConfig.llm_depth={llm_depth} needs score fusion, but {why}")
    return replace(resolved, llm_depth=llm_depth)
