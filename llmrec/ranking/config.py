"""`RerankerConfig`: what a `Reranker` is asked for, checked field by field (`llmrec.ranking.settings` resolves
it against the adapter card and the template).

Example:
    >>> RerankerConfig(mode="pointwise").adapter_ref
    'smollm2-ml100k-pointwise-residual'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from llmrec.config import from_mapping
from llmrec.errors import ConfigError
from llmrec.models import ModelConfig
from llmrec.models.adapters import DEFAULT_MODE, default_adapter
from llmrec.prompts import MODES, load_template
from llmrec.ranking.fusion import ScoreFusion
from llmrec.ranking.order import check_candidate_order
from llmrec.retrieval.factory import DEFAULT_RETRIEVER

#: Template used for each mode when only the mode is given (and no adapter card names one).
DEFAULT_TEMPLATES = {"listwise": "listwise_kg", "pointwise": "pointwise_kg", "generative": "generative"}
#: The `RerankerConfig.adapter` value that asks for the default adapter of the model and mode.
DEFAULT_ADAPTER_REF = "default"


@dataclass(frozen=True)
class RerankerConfig:
    """Everything a `Reranker` needs to know; unknown keys in `from_dict` raise.

    Args:
        model: a `ModelConfig` or a model name/path (full precision).
        adapter: an adapter name (a shipped one, e.g. ``"smollm2-ml100k-pointwise-residual"``) or folder path,
            ``None`` for the bare model, or ``"default"``: for SmolLM2 the shipped adapter of the mode
            (`llmrec.models.DEFAULT_ADAPTERS`: the pointwise residual adapter unless ``mode`` is listwise or
            generative), for other models none.
        mode: ``listwise`` | ``pointwise`` | ``generative``; None = the adapter's mode (from its card), else the
            template's.
        template: template name or path; None = the template the adapter was trained with (its card) when it
            was trained for `mode`, else the default template of `mode` (pointwise_kg by default).
        retriever: the first stage of `rank` calls without candidates (default ``zfusion``: sasrec + ease +
            dense z-scored with weights fit on the dataset's own validation users; or any name of
            ``llmrec.retrieval.RETRIEVER_NAMES``).
        retriever_opts: options for `llmrec.retrieval.build_retriever` (its ``progress`` also applies to the
            retrievers of the score fusion and of the candidate order).
        n_candidates: how many candidates to retrieve when none are given.
        window_size: candidates per listwise/generative prompt (None = the template's maximum); more candidates
            than this are ranked with sliding windows.
        window_step: how far the window moves (None = half the window).
        permutations: position-bias bootstrap: score this many candidate orders (the given order first, then
            seeded shuffles) and average. 1 = off.
        seed: seed of the bootstrap shuffles.
        batch_size: prompts (listwise, across users) or candidate suffixes (pointwise) per forward pass.
        prefix_cache: pointwise: encode the shared prefix once (False re-encodes it per candidate).
        max_new_tokens: generative: tokens to generate (None = 4 per candidate + 8).
        knowledge: show KG facts when the template asks for them.
        history_budget, fact_budget: token budgets passed to the `PromptBuilder` (None = the values the adapter
            was trained with, from its card; else the builder's defaults).
        candidate_order: how candidates are listed in the prompt: "given" (as passed or retrieved), or
            best-first by a retriever fitted on `dataset` ("cooc", "popularity", "dense"). None = the order the
            adapter was trained with (its card), else "given".
        cf_evidence: show collaborative evidence from `dataset`'s interactions with the facts ("liked by 31% of
            those who liked Fargo (1996)", a popularity band); None = as the adapter was trained (its card), else
            off. `knowledge=False` with `cf_evidence=True` shows the evidence without KG facts.
        fusion: combine the LLM score with first-stage retriever scores using the weights fitted on validation
            users and stored in the adapter card (``fusion``), when it has them; False ranks by the LLM alone; a
            mapping (members, weights, llm_weight, optionally llm_depth; `ScoreFusion.to_dict`'s form, as an eval
            arm's ``fusion``) uses those weights instead of the card's, e.g. ones fit under another protocol. A
            member named as `retriever` is the first stage itself (built once): ``{"members": ["zfusion"],
            "weights": [1.0], "llm_weight": 0.5}`` puts the LLM on top of the default first stage's own score.
        llm_depth: with score fusion, the LLM scores only this many candidates, the best of the first-stage
            members' own fusion, and the others follow below in that order (cost falls with the depth; None = the
            card's ``fusion.llm_depth``, else every candidate). Needs score fusion: the card's weights or a
            `fusion` mapping.
        check_split: when `dataset` is the train part of a split, refuse an adapter whose training split holds
            that split's held-out items (of any user). The evaluation harness turns it off after making the same
            check for just the users it evaluates.
        force_llm: score with the LLM even when the score fusion gives it weight 0 (its card's weights were fit on
            validation users and cross-validation found no gain): by default such a `Reranker` does not load or
            run the LLM, ranks by the first stage alone and says so (`Reranker.llm_skipped`,
            `RankedList.llm_skipped`). Studies force it to measure what the LLM alone does.
        merge_adapter: merge the adapter into the weights of the model the `Reranker` loads (it never switches
            adapters): about 10% faster scoring on a CPU, scores equal up to float rounding. None (default): merge
            whenever the `Reranker` loads its model with an adapter; True needs an adapter; for a model passed as
            ``lm``, load it with ``ModelConfig(merge_adapter=True)`` instead. The evaluation harness keeps adapters
            attached unless an arm sets it (its reports replay as they were made).
    """

    model: Any = "smollm2"
    adapter: str | None = DEFAULT_ADAPTER_REF
    mode: str | None = None
    template: str | None = None
    retriever: str = DEFAULT_RETRIEVER
    retriever_opts: Mapping[str, Any] = field(default_factory=dict)
    n_candidates: int = 20
    window_size: int | None = None
    window_step: int | None = None
    permutations: int = 1
    seed: int = 0
    batch_size: int = 8
    prefix_cache: bool = True
    max_new_tokens: int | None = None
    knowledge: bool = True
    history_budget: int | None = None
    fact_budget: int | None = None
    candidate_order: str | None = None
    fusion: bool | Mapping[str, Any] = True
    llm_depth: int | None = None
    cf_evidence: bool | None = None
    check_split: bool = True
    force_llm: bool = False
    merge_adapter: bool | None = None

    def __post_init__(self) -> None:
        if isinstance(self.model, str):
            object.__setattr__(self, "model", ModelConfig(self.model))
        elif isinstance(self.model, Mapping):
            object.__setattr__(self, "model", ModelConfig.from_dict(self.model))
        elif not isinstance(self.model, ModelConfig):
            raise ConfigError(
                f"RerankerConfig.model must be a ModelConfig, a mapping or a name, got {self.model!r}"
            )
        if self.mode is not None and self.mode not in MODES:
            raise ConfigError(f"RerankerConfig.mode must be one of {MODES}, got {self.mode!r}")
        for name in ("n_candidates", "permutations", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"RerankerConfig.{name} must be an integer >= 1, got {value!r}")
        for name in ("window_size", "window_step", "max_new_tokens", "history_budget", "fact_budget", "llm_depth"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"RerankerConfig.{name} must be None or an integer >= 1, got {value!r}")
        if self.candidate_order is not None:
            check_candidate_order(self.candidate_order, "RerankerConfig.candidate_order")
        if isinstance(self.fusion, Mapping):
            ScoreFusion.from_dict(self.fusion, "RerankerConfig.fusion")
        elif not isinstance(self.fusion, bool):
            raise ConfigError(f"RerankerConfig.fusion must be true, false or a mapping of weights, got {self.fusion!r}")
        if not isinstance(self.force_llm, bool):
            raise ConfigError(f"RerankerConfig.force_llm must be true or false, got {self.force_llm!r}")
        if self.merge_adapter is not None and not isinstance(self.merge_adapter, bool):
            raise ConfigError(f"RerankerConfig.merge_adapter must be null, true or false, got {self.merge_adapter!r}")
        if self.window_size is not None and self.window_size < 2:
            raise ConfigError(
                f"RerankerConfig.window_size must be >= 2 to compare candidates, got {self.window_size}"
            )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RerankerConfig:
        """Build from a mapping (e.g. YAML); unknown keys raise `ConfigError` naming them."""
        return from_mapping(cls, data, "RerankerConfig")

    @property
    def template_name(self) -> str:
        """`template`, else the default template of `mode` (the `Reranker` prefers the adapter card's template
        when `template` is None and the adapter was trained for `mode`)."""
        return self.template or DEFAULT_TEMPLATES[self.mode or DEFAULT_MODE]

    @property
    def adapter_ref(self) -> str | None:
        """The adapter asked for, by name or path, with "default" resolved (None: the bare model)."""
        if self.adapter != DEFAULT_ADAPTER_REF:
            return self.adapter
        mode = self.mode
        if mode is None and self.template is not None:
            mode = load_template(self.template).mode
        return default_adapter(self.model.name_or_path, mode)
