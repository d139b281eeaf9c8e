"""The reranker facade: history -> (retrieve) candidates -> KG + prompt -> LLM scorer -> `RankedList`.

Example:
    >>> from llmrec.data import load_dataset
    >>> from llmrec.ranking import Reranker, RerankerConfig
    >>> ds = load_dataset("ml-100k")  # doctest: +SKIP
    >>> reranker = Reranker(ds, RerankerConfig(mode="listwise"))  # doctest: +SKIP
    >>> ranked = reranker.rank(["50", "172", "181"], k=5)  # doctest: +SKIP
    >>> ranked.item_ids, ranked.scores, ranked.facts  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from llmrec.config import from_mapping
from llmrec.errors import ConfigError, LlmrecWarning, OlderCardWarning
from llmrec.models import ModelConfig, load_model
from llmrec.models.adapters import AdapterCard, card_of, default_adapter, resolve_adapter
from llmrec.prompts import MODES, PromptBuilder, PromptSettings, load_template, make_builder
from llmrec.ranking.base import RankingError, Scorer, ScoreResult
from llmrec.ranking.factory import make_scorer
from llmrec.ranking.fusion import ScoreFusion
from llmrec.ranking.order import GIVEN, check_candidate_order, order_candidates
from llmrec.ranking.windows import aggregate, permutations, sliding_window_order
from llmrec.retrieval.base import FALLBACK_SOURCE
from llmrec.types import Candidate, Interaction

if TYPE_CHECKING:
    from llmrec.data.dataset import Dataset
    from llmrec.models import LoadedModel
    from llmrec.retrieval import Retriever

log = logging.getLogger(__name__)

#: Template used for each mode when only the mode is given (and no adapter card names one).
DEFAULT_TEMPLATES = {"listwise": "listwise_kg", "pointwise": "pointwise_kg", "generative": "generative"}
_DEFAULT = "default"


@dataclass(frozen=True)
class RerankerConfig:
    """Everything a `Reranker` needs to know; unknown keys in `from_dict` raise.

    Args:
        model: a `ModelConfig` or a model name/path (full precision).
        adapter: an adapter name (a shipped one, e.g. ``"smollm2-ml100k-pointwise-kg"``) or folder path,
            ``None`` for the bare model, or ``"default"``: for SmolLM2 the shipped adapter of the mode
            (`llmrec.models.DEFAULT_ADAPTERS`: listwise unless ``mode="pointwise"``), for other models none.
        mode: ``listwise`` | ``pointwise`` | ``generative``; None = the adapter's mode (from its card), else the
            template's.
        template: template name or path; None = the template the adapter was trained with (its card) when it
            was trained for `mode`, else the default template of `mode` (listwise_kg by default).
        retriever: the first stage of `rank` calls without candidates (default ``fusion``: sasrec + ease + dense;
            or any name of ``llmrec.retrieval.RETRIEVER_NAMES``).
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
            member named as `retriever` is the first stage itself (built once): ``{"members": ["fusion"],
            "weights": [1.0], "llm_weight": 0.5}`` puts the LLM on top of the default first stage's own score.
        llm_depth: with score fusion, the LLM scores only this many candidates, the best of the first-stage
            members' own fusion, and the others follow below in that order (cost falls with the depth; None = the
            card's ``fusion.llm_depth``, else every candidate). Needs score fusion: the card's weights or a
            `fusion` mapping.
        check_split: when `dataset` is the train part of a split, refuse an adapter whose training split holds
            that split's held-out items (of any user). The evaluation harness turns it off after making the same
            check for just the users it evaluates.
        merge_adapter: merge the adapter into the weights of the model the `Reranker` loads (it never switches
            adapters): about 10% faster scoring on a CPU, scores equal up to float rounding. Needs an adapter;
            for a model passed as ``lm``, load it with ``ModelConfig(merge_adapter=True)`` instead.
    """

    model: Any = "smollm2"
    adapter: str | None = _DEFAULT
    mode: str | None = None
    template: str | None = None
    retriever: str = "fusion"
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
    merge_adapter: bool = False

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
        if not isinstance(self.merge_adapter, bool):
            raise ConfigError(f"RerankerConfig.merge_adapter must be true or false, got {self.merge_adapter!r}")
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
        return self.template or DEFAULT_TEMPLATES[self.mode or "listwise"]

    @property
    def adapter_ref(self) -> str | None:
        """The adapter asked for, by name or path, with "default" resolved (None: the bare model)."""
        if self.adapter != _DEFAULT:
            return self.adapter
        mode = self.mode
        if mode is None and self.template is not None:
            from llmrec.prompts import load_template

            mode = load_template(self.template).mode
        return default_adapter(self.model.name_or_path, mode)


@dataclass(frozen=True)
class RankedList:
    """The result of ranking one user's candidates, best first.

    Attributes:
        item_ids, scores, ranks: aligned, best first; ranks start at 1.
        score_kind: how to read the scores (``label_logprob``, ``yes_no_margin`` or ``rank``: windows and
            generative ranking give rank-derived scores, n for the best).
        mode, template, adapter: what produced it.
        prompt_tokens: tokens of all prompts rendered (summed over windows and bootstrap orders).
        encoded_tokens: tokens actually run through the model (fewer with the pointwise prefix cache).
        forward_passes: model forward calls (one per generated token in generative mode).
        parse_failures: generative outputs that did not name every candidate exactly once.
        timings: seconds: ``retrieve``, ``prompt``, ``score``, ``total``.
        facts: per item, the KG sentences the model was shown about it (why it is here).
        windows, permutations: prompts per order and candidate orders scored.
        candidate_source: where candidates came from (a retriever name, ``"popularity-fallback"`` when the
            history was empty, or ``"given"``).
        llm_scores: with score fusion, the LLM's own score per item it scored (`scores` are then the fused ones;
            with an ``llm_depth`` only the items the LLM scored are here).
        first_stage_scores: with score fusion, the members' fusion without the LLM per item (what `scores` would
            be at LLM weight 0: the ranking the LLM is measured against).
        fusion: with score fusion, its members and weights (from the adapter card or the config).
    """

    item_ids: tuple[str, ...]
    scores: tuple[float, ...]
    ranks: tuple[int, ...]
    score_kind: str
    mode: str
    template: str
    adapter: str | None
    prompt_tokens: int
    encoded_tokens: int
    forward_passes: int
    parse_failures: int
    timings: Mapping[str, float]
    facts: Mapping[str, tuple[str, ...]]
    windows: int = 1
    permutations: int = 1
    candidate_source: str = "given"
    raw_outputs: tuple[str, ...] = ()
    llm_scores: Mapping[str, float] = field(default_factory=dict)
    first_stage_scores: Mapping[str, float] = field(default_factory=dict)
    fusion: Mapping[str, Any] | None = None

    def __len__(self) -> int:
        return len(self.item_ids)

    def top(self, k: int) -> RankedList:
        """The first `k` entries (with the same counters)."""
        kept = self.item_ids[:k]
        return replace(
            self,
            item_ids=kept,
            scores=self.scores[:k],
            ranks=self.ranks[:k],
            facts={i: self.facts.get(i, ()) for i in kept},
            llm_scores={i: self.llm_scores[i] for i in kept if i in self.llm_scores},
            first_stage_scores={i: self.first_stage_scores[i] for i in kept if i in self.first_stage_scores},
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``ranked`` = [{item_id, score, rank, facts}], plus the counters and timings."""
        data = asdict(self)
        for key in ("item_ids", "scores", "ranks", "facts"):
            data.pop(key)
        data["ranked"] = [
            {"item_id": i, "score": s, "rank": r, "facts": list(self.facts.get(i, ()))}
            for i, s, r in zip(self.item_ids, self.scores, self.ranks)
        ]
        data["timings"] = dict(self.timings)
        data["raw_outputs"] = list(self.raw_outputs)
        return data


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


class Reranker:
    """Ranks a user's candidates with an LLM. Build once, call `rank` / `rank_batch` many times.

    Args:
        dataset: the catalogue (titles, KG) the prompts are built from; also the retriever's training data.
        config: a `RerankerConfig` (default: SmolLM2, listwise_kg, the fused first stage, default adapter).
        retriever: a ready retriever (otherwise built lazily from `config.retriever` on the first call
            without candidates).
        knowledge: a ready `KnowledgeGraph` (otherwise built from `dataset` when the template shows facts).
        lm: a loaded model to use instead of loading `config.model` (the default adapter then applies only if
            it is loaded into `lm`).
        retrievers: where to get retrievers by name (the first stage, score-fusion members, the candidate
            order) instead of fitting them on `dataset`, e.g. ones already fit on it; called once per name.
    """

    def __init__(
        self,
        dataset: Dataset,
        config: RerankerConfig | None = None,
        *,
        retriever: Retriever | None = None,
        knowledge: Any = None,
        lm: LoadedModel | None = None,
        retrievers: Callable[[str], Retriever] | None = None,
    ) -> None:
        self.dataset = dataset
        self._retriever_source = retrievers
        self.config = config = config or RerankerConfig()
        self.adapter_name: str | None = None
        adapter_ref = config.adapter_ref
        if lm is not None and config.adapter == _DEFAULT and adapter_ref is not None:
            # A model handed in is used as loaded: the default adapter only if it was loaded into it.
            if adapter_ref not in lm.adapter_names and lm.merged_adapter != adapter_ref:
                adapter_ref = None
        adapter_path: str | None = None
        #: The card of the adapter in use (None: no adapter, or a plain PEFT folder without a card).
        self.adapter_card: AdapterCard | None = None
        if adapter_ref is not None:
            folder = resolve_adapter(adapter_ref)
            adapter_path = str(folder)
            self.adapter_name = folder.name or "adapter"
            self.adapter_card = card_of(folder)
        elif config.adapter == _DEFAULT:
            log.info(
                "no default adapter for base model %r: ranking with the bare model (pass adapter=... to use one)",
                config.model.name_or_path,
            )
        card = self.adapter_card
        template = load_template(self._template_name(card))
        if config.mode is not None and template.mode != config.mode:
            raise ConfigError(
                f"template {template.name!r} is a {template.mode} template, but mode={config.mode!r} was asked"
            )
        self.mode: str = template.mode
        if card is not None and card.mode is not None and card.mode != self.mode:
            warnings.warn(
                f"adapter {self.adapter_name} was trained for {card.mode} scoring ({card.template}) but ranks in "
                f"{self.mode} mode here; use a {self.mode} adapter or none",
                LlmrecWarning,
                stacklevel=2,
            )
        if self.mode == "pointwise" and config.permutations > 1:
            raise ConfigError(
                "permutations > 1 is for position bias in listwise/generative prompts; pointwise prompts show one "
                "candidate each, so set permutations=1"
            )
        if adapter_path is not None and config.check_split:
            self._check_training_split(dataset, card)
        #: What the adapter's card, made by an older llmrec, lacks (each also raised as an `OlderCardWarning`).
        self.card_notes: list[str] = []
        if card is not None:
            self.card_notes = [
                f"adapter {self.adapter_name!r} ({adapter_path}): {note}"
                for note in card.upgrade_notes(fusion=config.fusion is True)
            ]
        for note in self.card_notes:
            warnings.warn(note, OlderCardWarning, stacklevel=2)
        model_cfg: ModelConfig = config.model
        if adapter_path is not None:
            assert self.adapter_name is not None
            adapters = dict(model_cfg.adapters)
            if adapters.get(self.adapter_name, adapter_path) != adapter_path:
                raise ConfigError(
                    f"adapter name {self.adapter_name!r} is already used for {adapters[self.adapter_name]}"
                )
            adapters[self.adapter_name] = adapter_path
            model_cfg = replace(
                model_cfg,
                adapters=tuple(adapters.items()),
                active_adapter=self.adapter_name,
                merge_adapter=model_cfg.merge_adapter or config.merge_adapter,
            )
        elif config.merge_adapter:
            raise ConfigError("RerankerConfig.merge_adapter=True needs an adapter to merge (adapter is None)")
        if config.merge_adapter and lm is not None:
            raise ConfigError(
                "RerankerConfig.merge_adapter applies to the model the Reranker loads; a model passed as lm= is "
                "used as loaded (load it with ModelConfig(merge_adapter=True) to merge)"
            )
        self.adapter_path = adapter_path
        self.lm = lm if lm is not None else load_model(model_cfg)
        if lm is not None and self.adapter_name is not None and self.adapter_name not in lm.adapter_names:
            if lm.merged_adapter != self.adapter_name:
                raise ConfigError(f"the given model has no adapter {self.adapter_name!r} loaded")
        trained = card.prompt_settings() if card is not None else {}
        asked = {
            "history_budget": config.history_budget,
            "fact_budget": config.fact_budget,
            "candidate_order": config.candidate_order,
            "cf_evidence": config.cf_evidence,
        }
        # The options asked for, else the ones the adapter was trained with (its card), else the defaults.
        settings = PromptSettings.resolve(asked, trained)
        #: The prompt settings in use (`RerankerConfig` options over the adapter card's over the defaults).
        self.prompt_settings: PromptSettings = settings
        #: Whether prompts show collaborative evidence from `dataset`'s interactions (the card's setting by default).
        self.cf_evidence: bool = settings.cf_evidence
        #: How candidates are listed in prompts ("given" or a retriever name; see `RerankerConfig`).
        self.candidate_order: str = settings.candidate_order
        self.builder: PromptBuilder = make_builder(
            dataset, self.lm.tokenizer, template, settings, knowledge=knowledge, triples=config.knowledge
        )
        self.template = template
        max_labels = template.max_candidates or 0
        self.window = min(config.window_size or max_labels, max_labels) if max_labels else 0
        self.step = config.window_step or max(1, self.window // 2)
        if self.window and self.step >= self.window:
            raise ConfigError(
                f"RerankerConfig.window_step={self.step} must be smaller than the window {self.window}"
            )
        self.scorer: Scorer = self._make_scorer()
        self._retriever = retriever
        self._order_retriever: Any = None
        #: Score fusion with first-stage retrievers (the config's weights, else the adapter card's), or None.
        self.fusion: ScoreFusion | None = resolve_fusion(
            config.fusion, card, config.llm_depth, adapter=self.adapter_path
        )
        if config.fusion is True and self.fusion is not None and self.fusion.llm_weight == 0:
            log.warning(
                "the card of adapter %s gives the LLM weight 0 in its score fusion (%s): rankings equal the "
                "first-stage fusion of %s, and the LLM's cost buys nothing; fusion=False ranks by the LLM alone",
                config.adapter,
                self.fusion.fitted.get("llm_dropped", "fitted on validation users"),
                ", ".join(self.fusion.members),
            )
        self._fusion_members: list[Any] | None = None

    def _template_name(self, card: AdapterCard | None) -> str:
        """The configured template; else the card's when the adapter was trained for the asked mode (or no mode
        was asked); else the default template of the mode."""
        cfg = self.config
        if cfg.template is not None:
            return cfg.template
        if card is not None and card.template and card.mode and cfg.mode in (None, card.mode):
            return card.template
        return cfg.template_name

    def _check_training_split(self, dataset: Dataset, card: AdapterCard | None) -> None:
        """Refuse an adapter trained on a split holding the held-out items of the split `dataset` comes from."""
        split = getattr(dataset, "source_split", None)
        if split is None:
            return  # not the train part of a split: nothing is held out
        if card is None:
            log.warning(
                "adapter %s has no card: cannot check that it was not trained on the held-out items of this %s",
                self.adapter_name,
                split.settings.describe(),
            )
            return
        card.check_split(split, adapter=self.adapter_name)

    # -- public -------------------------------------------------------------------------------------------------

    @property
    def retriever(self) -> Retriever:
        if self._retriever is None and self._retriever_source is not None:
            self._retriever = self._retriever_source(self.config.retriever)
        if self._retriever is None:
            from llmrec.retrieval import build_retriever

            log.info("building the %s retriever", self.config.retriever)
            self._retriever = build_retriever(
                self.config.retriever, self.dataset, **dict(self.config.retriever_opts)
            )
        return self._retriever

    def rank(
        self,
        history: Sequence[str | Interaction],
        candidates: Sequence[str | Candidate] | None = None,
        k: int | None = None,
    ) -> RankedList:
        """Rank `candidates` (retrieved when None) for a user with this `history` (oldest first).

        Args:
            history: item ids or interactions, oldest first.
            candidates: item ids or `Candidate`s in their initial order; None = retrieve ``n_candidates``.
            k: return only the best `k` (all by default).

        Raises:
            RankingError: empty candidates or duplicates. UnknownIdError: an id not in the catalogue.
            ContextLengthError: a prompt does not fit the model. NonFiniteLogitsError: NaN/inf logits.
        """
        return self.rank_batch([history], None if candidates is None else [candidates], k=k)[0]

    def rank_batch(
        self,
        histories: Sequence[Sequence[str | Interaction]],
        candidates: Sequence[Sequence[str | Candidate]] | None = None,
        k: int | None = None,
    ) -> list[RankedList]:
        """Rank for several users; listwise prompts of different users share forward passes when possible."""
        if candidates is not None and len(candidates) != len(histories):
            raise RankingError(f"{len(histories)} histories but {len(candidates)} candidate lists")
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
            raise ConfigError(f"k must be an integer >= 1, got {k!r}")
        started = time.perf_counter()
        requests = []
        for n, history in enumerate(histories):
            hist_ids = [h.item_id if isinstance(h, Interaction) else str(h) for h in history]
            self.dataset.check_items(hist_ids)
            t0 = time.perf_counter()
            if candidates is None:
                found = self.retriever.retrieve(hist_ids, k=self.config.n_candidates)
                cands = [c.item_id for c in found]
                fell_back = bool(found) and all(c.source == FALLBACK_SOURCE for c in found)
                source = FALLBACK_SOURCE if fell_back else self.retriever.name
            else:
                cands = [c.item_id if isinstance(c, Candidate) else str(c) for c in candidates[n]]
                source = "given"
            self._check_candidates(cands)
            cands = order_candidates(self._candidate_orderer(), hist_ids, cands)
            retrieve_s = time.perf_counter() - t0
            requests.append((list(history), cands, source, retrieve_s))
        members = [self._member_scores(hist, cands) for hist, cands, _, _ in requests] if self.fusion else None
        llm_requests = requests
        if self.fusion is not None and members is not None and self.fusion.llm_depth is not None:
            llm_requests = [  # the LLM ranks only the best llm_depth of the members' fusion
                (hist, [cands[i] for i in self.fusion.llm_candidates(ms)], source, rs)
                for (hist, cands, source, rs), ms in zip(requests, members, strict=True)
            ]
        with self.lm.using_adapter(self.adapter_name):
            if self._can_batch(llm_requests):
                results = self._rank_batched(llm_requests)
            else:
                results = [
                    self._rank_one(history, cands, source, rs) for history, cands, source, rs in llm_requests
                ]
        if self.fusion is not None and members is not None:
            results = [
                self._fused(cands, r, ms)
                for (_, cands, _, _), r, ms in zip(requests, results, members, strict=True)
            ]
        if len(results) > 1:
            log.debug("ranked %d users in %.2f s", len(results), time.perf_counter() - started)
        return [r.top(k) if k is not None else r for r in results]

    # -- internals ------------------------------------------------------------------------------------------------

    def _member_scores(self, history: list[Any], cands: list[str]) -> list[list[float]]:
        """Each score-fusion member's scores of `cands` (the members are built on first use)."""
        assert self.fusion is not None
        if self._fusion_members is None:
            log.info("building the first-stage retrievers of the score fusion: %s", ", ".join(self.fusion.members))
            self._fusion_members = [self._named_retriever(m) for m in self.fusion.members]
        hist_ids = [h.item_id if isinstance(h, Interaction) else str(h) for h in history]
        return [list(m.score(hist_ids, cands)) for m in self._fusion_members]

    def _fused(self, cands: list[str], ranked: RankedList, members: list[list[float]]) -> RankedList:
        """`ranked` (the LLM's ranking of all of `cands`, or of the fusion's ``llm_depth`` best) re-scored by the
        card's fusion of the LLM score with the first-stage `members` scores of `cands`."""
        assert self.fusion is not None
        llm = dict(zip(ranked.item_ids, ranked.scores))
        fused = dict(zip(cands, self.fusion.combine([llm.get(c, math.nan) for c in cands], members)))
        first_stage = dict(zip(cands, self.fusion.without_llm().combine(None, members)))
        position = {c: n for n, c in enumerate(cands)}
        ordered = sorted(cands, key=lambda c: (-fused[c], position[c]))
        return replace(
            ranked,
            item_ids=tuple(ordered),
            scores=tuple(fused[c] for c in ordered),
            ranks=tuple(range(1, len(ordered) + 1)),
            score_kind="fused",
            facts={c: ranked.facts.get(c, ()) for c in ordered},
            llm_scores={c: llm[c] for c in ordered if c in llm},
            first_stage_scores={c: first_stage[c] for c in ordered},
            fusion=self.fusion.to_dict(),
        )

    def _make_scorer(self) -> Scorer:
        cfg = self.config
        titles = (
            {i: item.title for i, item in self.dataset.items.items()} if self.mode == "generative" else None
        )
        return make_scorer(
            self.mode,
            self.lm,
            batch_size=cfg.batch_size,
            prefix_cache=cfg.prefix_cache,
            max_new_tokens=cfg.max_new_tokens,
            titles=titles,
        )

    def _candidate_orderer(self) -> Any:
        """The retriever that orders candidates in prompts (None: keep the given order)."""
        if self.candidate_order == GIVEN:
            return None
        if self._order_retriever is None:
            self._order_retriever = self._named_retriever(self.candidate_order)
        return self._order_retriever

    def _named_retriever(self, name: str) -> Any:
        """The retriever called `name` for a fusion member or the candidate order: the first stage itself when
        `name` is the configured first stage (built once), else a new one (progress bars as the first stage's)."""
        if name == self.config.retriever:
            return self.retriever
        if self._retriever_source is not None:
            return self._retriever_source(name)
        from llmrec.retrieval import build_retriever

        log.info("building the %s retriever", name)
        return build_retriever(name, self.dataset, progress=self.config.retriever_opts.get("progress"))

    def _check_candidates(self, cands: list[str]) -> None:
        if not cands:
            raise RankingError("no candidates to rank (the candidate list is empty)")
        if len(set(cands)) != len(cands):
            dupes = sorted({c for c in cands if cands.count(c) > 1})
            raise RankingError(f"duplicate candidate id(s): {', '.join(dupes)}")
        self.dataset.check_items(cands)

    def _can_batch(self, requests: list[Any]) -> bool:
        return (
            len(requests) > 1
            and self.mode == "listwise"
            and self.config.permutations == 1
            and all(len(c) <= self.window for _, c, _, _ in requests)
        )

    def _rank_batched(self, requests: list[Any]) -> list[RankedList]:
        t0 = time.perf_counter()
        prompts = [self.builder.build(history, cands) for history, cands, _, _ in requests]
        prompt_s = (time.perf_counter() - t0) / len(requests)
        t1 = time.perf_counter()
        results = self.scorer.score_many(prompts)
        score_s = (time.perf_counter() - t1) / len(requests)
        out = []
        for (_, cands, source, retrieve_s), ps, res in zip(requests, prompts, results):
            scores = dict(zip(res.candidate_ids, res.scores))
            out.append(
                self._result(
                    cands, scores, res.score_kind, [res], ps, 1, source, retrieve_s, prompt_s, score_s
                )
            )
        return out

    def _rank_one(self, history: list[Any], cands: list[str], source: str, retrieve_s: float) -> RankedList:
        cfg = self.config
        all_results: list[ScoreResult] = []
        all_prompts: list[Any] = []
        per_order: list[dict[str, float]] = []
        windows = 1
        timing = {"prompt": 0.0, "score": 0.0}
        kind = ""

        def score_set(subset: list[str]) -> ScoreResult:
            t0 = time.perf_counter()
            prompts = self.builder.build(history, subset)
            t1 = time.perf_counter()
            result = self.scorer.score(prompts)
            timing["prompt"] += t1 - t0
            timing["score"] += time.perf_counter() - t1
            all_prompts.extend(prompts)
            all_results.append(result)
            return result

        for order in permutations(len(cands), cfg.permutations, cfg.seed):
            shown = [cands[i] for i in order]
            if self.mode == "pointwise" or len(shown) <= self.window:
                res = score_set(shown)
                per_order.append(dict(zip(res.candidate_ids, res.scores)))
                kind = res.score_kind
                continue

            def rank_window(segment: list[str]) -> list[str]:
                res = score_set(segment)
                by_id = dict(zip(res.candidate_ids, res.scores))
                return sorted(segment, key=lambda cid: -by_id[cid])  # stable: ties keep the shown order

            final, windows = sliding_window_order(shown, self.window, self.step, rank_window)
            per_order.append({c: float(len(final) - pos) for pos, c in enumerate(final)})
            kind = "rank"
        scores = aggregate(per_order) if len(per_order) > 1 else per_order[0]
        return self._result(
            cands,
            scores,
            kind,
            all_results,
            all_prompts,
            windows,
            source,
            retrieve_s,
            timing["prompt"],
            timing["score"],
        )

    def _result(
        self,
        cands: list[str],
        scores: Mapping[str, float],
        kind: str,
        results: Sequence[ScoreResult],
        prompts: Sequence[Any],
        windows: int,
        source: str,
        retrieve_s: float,
        prompt_s: float,
        score_s: float,
    ) -> RankedList:
        position = {c: n for n, c in enumerate(cands)}
        ordered = sorted(cands, key=lambda c: (-scores[c], position[c]))
        facts: dict[str, tuple[str, ...]] = {}
        for p in prompts:
            for cid, fs in p.facts.items():
                if fs and cid not in facts:
                    facts[cid] = tuple(fs)
        return RankedList(
            item_ids=tuple(ordered),
            scores=tuple(float(scores[c]) for c in ordered),
            ranks=tuple(range(1, len(ordered) + 1)),
            score_kind=kind,
            mode=self.mode,
            template=self.template.name,
            adapter=self.adapter_path,
            prompt_tokens=sum(r.prompt_tokens for r in results),
            encoded_tokens=sum(r.encoded_tokens for r in results),
            forward_passes=sum(r.forward_passes for r in results),
            parse_failures=sum(r.parse_failures for r in results),
            timings={
                "retrieve": retrieve_s,
                "prompt": prompt_s,
                "score": score_s,
                "total": retrieve_s + prompt_s + score_s,
            },
            facts={c: facts.get(c, ()) for c in ordered},
            windows=windows,
            permutations=self.config.permutations,
            candidate_source=source,
            raw_outputs=tuple(r.raw_output for r in results if r.raw_output is not None),
        )


