"""`RankService`: the dataset, the first stage and one `Reranker` per served adapter, loaded once.

Every adapter shares one base model (PEFT adapters attached side by side; merged when only one needs the LLM) and
one set of first-stage retrievers. `check` validates a request against the catalogue before it is queued, so a
bad request never reaches a batch; `rank_group` ranks a batch of checked requests of one adapter through
`Reranker.rank_batch`: the same path as the Python API, the CLI and the evaluation harness.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from llmrec.errors import ConfigError, LlmrecError, LlmSkippedWarning, UnknownIdError
from llmrec.models import load_model
from llmrec.ranking import Reranker, RerankerConfig
from llmrec.ranking.reranker import skip_reason
from llmrec.ranking.settings import resolve_settings
from llmrec.serve.config import ServeConfig

if TYPE_CHECKING:
    from llmrec.data.dataset import Dataset
    from llmrec.models import LoadedModel
    from llmrec.ranking import RankedList
    from llmrec.retrieval import Retriever

log = logging.getLogger(__name__)

#: The `ServeConfig.adapters` entry (and the adapter name of requests) for the bare base model.
NO_ADAPTER = "none"


class RequestError(LlmrecError):
    """A request that cannot be served as asked; `field` names the part of the request that is wrong."""

    def __init__(self, field: str, message: str, status: int = 422) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.status = status


@dataclass(frozen=True)
class RankJob:
    """A checked request: the history (item ids, oldest first), candidates (None: retrieve), how many to return."""

    adapter: str
    history: tuple[str, ...]
    candidates: tuple[str, ...] | None
    k: int

    @property
    def batch_key(self) -> tuple[str, bool]:
        """Requests batch together when they use the same adapter and all retrieve or all give candidates."""
        return (self.adapter, self.candidates is None)


class RankService:
    """Loads what `config` names once; ranks batches of requests.

    Args:
        config: the service settings.
        dataset: the catalogue (loaded from ``config.dataset`` when None).
        lm: a loaded base model with the adapters attached (loaded from the adapters' cards when None).
        retrievers: ready first-stage retrievers by name (others are built on `dataset` on first use).
    """

    def __init__(
        self,
        config: ServeConfig,
        dataset: Dataset | None = None,
        *,
        lm: LoadedModel | None = None,
        retrievers: dict[str, Retriever] | None = None,
    ) -> None:
        from llmrec.data import load_dataset

        started = time.perf_counter()
        self.config = config
        self.dataset = dataset if dataset is not None else load_dataset(config.dataset)
        self._retrievers: dict[str, Retriever] = dict(retrievers or {})
        base = RerankerConfig.from_dict(dict(config.reranker))
        configs: dict[str, RerankerConfig] = {}
        settings: dict[str, Any] = {}
        for ref in list(config.adapters) or [base.adapter_ref or NO_ADAPTER]:
            cfg = replace(base, adapter=None if ref == NO_ADAPTER else ref)
            resolved = resolve_settings(cfg, self.dataset)
            name = resolved.adapter_name or NO_ADAPTER  # requests name an adapter by its folder name
            if name in configs:
                raise ConfigError(f"adapters: {ref!r} is served as {name!r} already")
            configs[name], settings[name] = cfg, resolved
        names = list(configs)
        skipped = {
            name: reason
            for name, s in settings.items()
            if not configs[name].force_llm and (reason := skip_reason(s.fusion, s.adapter_name)) is not None
        }
        for name, reason in skipped.items():
            log.info("adapter %s: %s", name, reason)
        needs_llm = [name for name in names if name not in skipped]
        if lm is None and needs_llm:
            lm = load_model(_shared_model(settings, needs_llm))
        self.lm = lm
        #: The `Reranker` of each served adapter, in the configured order (the first is the default).
        self.rerankers: dict[str, Reranker] = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LlmSkippedWarning)
            for name in names:
                self.rerankers[name] = Reranker(
                    self.dataset, replace(configs[name], merge_adapter=None), lm=lm, retrievers=self.retriever
                )
        # Fit or load the first stage now, not on the first request.
        self.retriever(base.retriever)
        for reranker in self.rerankers.values():
            if reranker.fusion is not None:
                for member in reranker.fusion.members:
                    self.retriever(member)
        self.load_seconds = time.perf_counter() - started
        log.info("serving %s: adapters %s, loaded in %.1f s", self.dataset.name, ", ".join(names), self.load_seconds)

    @property
    def default_adapter(self) -> str:
        return next(iter(self.rerankers))

    def retriever(self, name: str) -> Retriever:
        """The first-stage retriever called `name`, built on the dataset once and shared by every adapter."""
        if name not in self._retrievers:
            from llmrec.retrieval import build_retriever

            log.info("building the %s retriever", name)
            self._retrievers[name] = build_retriever(name, self.dataset, progress=False)
        return self._retrievers[name]

    # -- requests --------------------------------------------------------------------------------------------------

    def check(
        self,
        *,
        user_id: str | None,
        history: Sequence[str] | None,
        candidates: Sequence[str] | None,
        k: int,
        adapter: str | None,
        history_field: str = "history",
        candidates_field: str = "candidates",
        user_field: str = "user_id",
    ) -> RankJob:
        """A `RankJob` for a request, or `RequestError` naming the field that is wrong (unknown user, item or
        adapter, an empty history, duplicate candidates)."""
        name = adapter if adapter is not None else self.default_adapter
        if name not in self.rerankers:
            raise RequestError("adapter", f"unknown adapter {name!r}; this server has: {', '.join(self.rerankers)}",
                               status=404)  # fmt: skip
        if (user_id is None) == (history is None):
            raise RequestError(user_field, f"give either {user_field} or {history_field}, not both and not neither")
        if user_id is not None:
            try:
                items = tuple(x.item_id for x in self.dataset.history(user_id))
            except UnknownIdError:
                raise RequestError(user_field, f"unknown user {user_id!r}", status=404) from None
        else:
            assert history is not None
            items = tuple(str(i) for i in history)
            if not items:
                raise RequestError(history_field, "must hold at least one item id (oldest first)")
            _check_known(self.dataset, items, history_field)
        if candidates is not None:
            cands = tuple(str(c) for c in candidates)
            if not cands:
                raise RequestError(candidates_field, "must hold at least one item id, or be left out to retrieve")
            dupes = sorted({c for c in cands if cands.count(c) > 1})
            if dupes:
                raise RequestError(candidates_field, f"duplicate item id(s): {', '.join(map(repr, dupes[:5]))}")
            _check_known(self.dataset, cands, candidates_field)
        else:
            cands = None
        return RankJob(name, items, cands, k)

    def rank_group(self, key: Any, jobs: Sequence[RankJob]) -> list[RankedList | BaseException]:
        """Rank checked jobs of one batch key in shared forward passes; a job that fails alone gets its error."""
        reranker = self.rerankers[jobs[0].adapter]
        histories = [list(j.history) for j in jobs]
        candidates = None if jobs[0].candidates is None else [list(j.candidates or ()) for j in jobs]
        try:
            ranked = reranker.rank_batch(histories, candidates)
        except LlmrecError:
            if len(jobs) == 1:
                raise
            return [self._rank_alone(reranker, j) for j in jobs]  # find which job failed
        return [r.top(j.k) for r, j in zip(ranked, jobs, strict=True)]

    @staticmethod
    def _rank_alone(reranker: Reranker, job: RankJob) -> RankedList | BaseException:
        try:
            return reranker.rank(list(job.history), None if job.candidates is None else list(job.candidates), k=job.k)
        except LlmrecError as exc:
            return exc


def _check_known(dataset: Dataset, items: Sequence[str], field: str) -> None:
    unknown = [i for i in items if i not in dataset.items]
    if unknown:
        shown = ", ".join(repr(i[:40]) for i in unknown[:5])
        more = f" (and {len(unknown) - 5} more)" if len(unknown) > 5 else ""
        raise RequestError(field, f"{len(unknown)} item id(s) not in the catalogue: {shown}{more}")


def _shared_model(settings: dict[str, Any], names: list[str]) -> Any:
    """One `ModelConfig` with the adapters of `names` attached (merged when there is one): they must share a base."""
    models = {name: settings[name].model for name in names}
    bases = {name: replace(m, adapters=(), active_adapter=None, merge_adapter=False) for name, m in models.items()}
    first = names[0]
    for name in names[1:]:
        if bases[name] != bases[first]:
            raise ConfigError(
                f"adapters {first} and {name} need different base models ({bases[first].name_or_path} vs "
                f"{bases[name].name_or_path}): one server holds one base model"
            )
    adapters = tuple((settings[n].adapter_name, settings[n].adapter_path) for n in names if settings[n].adapter_path)
    return replace(bases[first], adapters=adapters, merge_adapter=len(adapters) == 1)
