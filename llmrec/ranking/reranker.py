"""The reranker facade: history -> (retrieve) candidates -> KG + prompt -> LLM scorer -> `RankedList`.

`Reranker` composes the pieces: `llmrec.ranking.settings` resolves its config (adapter, template, prompt settings,
score fusion, windows), `llmrec.prompts.make_builder` and `make_scorer` build the prompt builder and the scorer,
and `rank_batch` runs retrieval, candidate order, LLM scoring (windows, bootstrap orders) and score fusion.

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
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from llmrec.errors import ConfigError, LlmSkippedWarning
from llmrec.models import ModelConfig, load_model
from llmrec.models.adapters import AdapterCard
from llmrec.prompts import PromptBuilder, PromptSettings, PromptTemplate, make_builder
from llmrec.ranking.base import RankingError, Scorer, ScoreResult
from llmrec.ranking.config import RerankerConfig
from llmrec.ranking.factory import make_scorer
from llmrec.ranking.fusion import ScoreFusion
from llmrec.ranking.order import GIVEN, order_candidates
from llmrec.ranking.result import RankedList
from llmrec.ranking.settings import resolve_settings
from llmrec.ranking.windows import aggregate, permutations, sliding_window_order
from llmrec.retrieval.base import FALLBACK_SOURCE
from llmrec.types import Candidate, Interaction

if TYPE_CHECKING:
    from llmrec.data.dataset import Dataset
    from llmrec.models import LoadedModel
    from llmrec.retrieval import Retriever

#: Re-exported: `llmrec.cli.rank` reads them from here.
__all__ = ["Reranker"]

log = logging.getLogger(__name__)


class Reranker:
    """Ranks a user's candidates with an LLM. Build once, call `rank` / `rank_batch` many times.

    Args:
        dataset: the catalogue (titles, KG) the prompts are built from; also the retriever's training data.
        config: a `RerankerConfig` (default: SmolLM2 with the pointwise residual adapter and its card's fusion with
            the zfusion first stage).
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
        self.config = config = config or RerankerConfig()
        settings = resolve_settings(config, dataset, lm, stacklevel=2)
        self.adapter_name: str | None = settings.adapter_name
        self.adapter_path: str | None = settings.adapter_path
        #: The card of the adapter in use (None: no adapter, or a plain PEFT folder without a card).
        self.adapter_card: AdapterCard | None = settings.card
        self.template: PromptTemplate = settings.template
        self.mode: str = settings.mode
        #: What the adapter's card, made by an older llmrec, lacks (each also raised as an `OlderCardWarning`).
        self.card_notes: list[str] = list(settings.card_notes)
        #: The prompt settings in use (`RerankerConfig` options over the adapter card's over the defaults).
        self.prompt_settings: PromptSettings = settings.prompt
        #: Whether prompts show collaborative evidence from `dataset`'s interactions (the card's setting by default).
        self.cf_evidence: bool = settings.prompt.cf_evidence
        #: How candidates are listed in prompts ("given" or a retriever name; see `RerankerConfig`).
        self.candidate_order: str = settings.prompt.candidate_order
        #: Score fusion with first-stage retrievers (the config's weights, else the adapter card's), or None.
        self.fusion: ScoreFusion | None = settings.fusion
        self.window: int = settings.window
        self.step: int = settings.step
        self._retriever = retriever
        self._retriever_source = retrievers
        self._order_retriever: Any = None
        self._fusion_members: list[Any] | None = None
        #: Why the LLM is neither loaded nor run (its fusion weight is 0 and `force_llm` is off), else None.
        self.llm_skipped: str | None = None if config.force_llm else skip_reason(self.fusion, self.adapter_name)
        if self.llm_skipped is not None:
            warnings.warn(self.llm_skipped, LlmSkippedWarning, stacklevel=2)
            self.lm: LoadedModel | None = lm
            self.builder: PromptBuilder | None = None
            self.scorer: Scorer | None = None
            return
        self.lm = _load_or_check(settings.model, self.adapter_name, lm)
        self.builder = make_builder(
            dataset, self.lm.tokenizer, self.template, self.prompt_settings, knowledge=knowledge,
            triples=config.knowledge,
        )  # fmt: skip
        self.scorer = self._make_scorer()

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
        """Rank for several users; their prompts share forward passes (pointwise, and listwise when each user's
        candidates fit one window), so a batch costs less than its users one by one."""
        if candidates is not None and len(candidates) != len(histories):
            raise RankingError(f"{len(histories)} histories but {len(candidates)} candidate lists")
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
            raise ConfigError(f"k must be an integer >= 1, got {k!r}")
        started = time.perf_counter()
        skip = self.llm_skipped is not None
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
            if not skip:
                cands = order_candidates(self._candidate_orderer(), hist_ids, cands)
            retrieve_s = time.perf_counter() - t0
            requests.append((list(history), cands, source, retrieve_s))
        members = [self._member_scores(hist, cands) for hist, cands, _, _ in requests] if self.fusion else None
        if skip and members is not None:
            results = [self._first_stage_only(cands, ms, src, rs) for (_, cands, src, rs), ms in zip(requests, members)]
            return [r.top(k) if k is not None else r for r in results]
        llm_requests = requests
        if self.fusion is not None and members is not None and self.fusion.llm_depth is not None:
            llm_requests = [  # the LLM ranks only the best llm_depth of the members' fusion
                (hist, [cands[i] for i in self.fusion.llm_candidates(ms)], source, rs)
                for (hist, cands, source, rs), ms in zip(requests, members, strict=True)
            ]
        assert self.lm is not None, "the LLM is loaded unless it is skipped"
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

    def _first_stage_only(self, cands: list[str], members: list[list[float]], source: str, retrieve_s: float) -> RankedList:
        """`cands` ranked by the fusion without the LLM (the LLM is skipped: see `llm_skipped`)."""
        assert self.fusion is not None
        t0 = time.perf_counter()
        first_stage = dict(zip(cands, self.fusion.without_llm().combine(None, members)))
        ranked = self._result(
            cands, first_stage, "first_stage", [], [], 1, source, retrieve_s, 0.0, time.perf_counter() - t0
        )
        return replace(
            ranked,
            permutations=1,  # no candidate order was scored
            first_stage_scores=first_stage,
            fusion=self.fusion.to_dict(),
            llm_skipped=self.llm_skipped,
        )

    def _make_scorer(self) -> Scorer:
        cfg = self.config
        titles = (
            {i: item.title for i, item in self.dataset.items.items()} if self.mode == "generative" else None
        )
        assert self.lm is not None
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
        """Whether the users' prompts can share forward passes: pointwise always (one prompt per candidate), listwise
        when each user's candidates fit one window; never with several candidate orders."""
        if len(requests) < 2 or self.config.permutations != 1:
            return False
        if self.mode == "pointwise":
            return True
        return self.mode == "listwise" and all(len(c) <= self.window for _, c, _, _ in requests)

    def _rank_batched(self, requests: list[Any]) -> list[RankedList]:
        assert self.builder is not None and self.scorer is not None
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
        builder, scorer = self.builder, self.scorer
        assert builder is not None and scorer is not None
        all_results: list[ScoreResult] = []
        all_prompts: list[Any] = []
        per_order: list[dict[str, float]] = []
        windows = 1
        timing = {"prompt": 0.0, "score": 0.0}
        kind = ""

        def score_set(subset: list[str]) -> ScoreResult:
            t0 = time.perf_counter()
            prompts = builder.build(history, subset)
            t1 = time.perf_counter()
            result = scorer.score(prompts)
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
            prompts=tuple(p.text for p in prompts),
        )


def _load_or_check(model: ModelConfig, adapter_name: str | None, lm: LoadedModel | None) -> LoadedModel:
    """`lm` when given (refused when it lacks the adapter `adapter_name`), else `model` (a `ModelConfig`) loaded."""
    if lm is None:
        return load_model(model)
    if adapter_name is not None and adapter_name not in lm.adapter_names and lm.merged_adapter != adapter_name:
        raise ConfigError(f"the given model has no adapter {adapter_name!r} loaded")
    return lm


def skip_reason(fusion: ScoreFusion | None, adapter: str | None) -> str | None:
    """Why a `Reranker` with this fusion should not run its LLM (its weight is 0), or None when it should."""
    if fusion is None or fusion.llm_weight > 0:
        return None
    cv = fusion.fitted.get("cv") or {}
    evidence = (
        f" (on {fusion.fitted.get('users')} validation users, held-out NDCG@10 gain {cv['llm_gain']:+.4f}, SE "
        f"{cv['llm_gain_se']:.4f})" if "llm_gain" in cv and "llm_gain_se" in cv else ""
    )  # fmt: skip
    whose = f"adapter {adapter}" if adapter else "the model"
    return (
        f"the LLM ({whose}) has weight 0 in its score fusion with {'+'.join(fusion.members)}{evidence}: it is not "
        "run, candidates keep the first stage's order; RerankerConfig(force_llm=True) / --force-llm runs it anyway"
    )
