"""Arms: turn one evaluation case into one score per candidate.

Baseline arms score the given candidates with a retriever fit on the train split (``Retriever.score``), or
randomly, or by the protocol's candidate order (under the retrieved protocol: the retriever's own order). LLM
arms rerank the given candidates with :class:`llmrec.ranking.Reranker` (its settings, candidate order, score
fusion and LLM depth: the pipeline users call) and report its token counts, forward passes, parse failures and
latency.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Collection
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

from llmrec.data.splits import Split
from llmrec.errors import ConfigError
from llmrec.evaluation.config import RETRIEVER_ARM_KINDS, ArmConfig
from llmrec.evaluation.llm import build_reranker, rank_case, reranker_config
from llmrec.evaluation.protocols import ArmOutput, EvalCase
from llmrec.models.adapters import AdapterError, adapter_base_model, card_of, resolve_adapter

log = logging.getLogger(__name__)


class ArmScorer(Protocol):
    def __call__(self, case: EvalCase) -> ArmOutput: ...


RetrieverFactory = Callable[[str, dict], Any]


def build_arm(
    arm: ArmConfig,
    *,
    seed: int,
    retriever_factory: RetrieverFactory,
    dataset: Any,
    score_memo: Path | None = None,
    memo_writer: str = "main",
) -> ArmScorer:
    """The scorer of `arm`. Retrievers come from `retriever_factory` (fit on the train split, shared; an LLM arm's
    `Reranker` gets its fusion members from it too). An LLM arm answers prompts it has scored before from the score
    memo under `score_memo` (None: no memo; see `llmrec.evaluation.score_memo`), appending what it scores to
    ``<memo_writer>.jsonl``.
    """
    if arm.kind == "random":
        return _RandomArm(arm.name, seed)
    if arm.kind == "candidate_order":
        return _candidate_order
    if arm.kind in RETRIEVER_ARM_KINDS:
        return _RetrieverArm(retriever_factory(arm.kind, dict(arm.retriever_options)))
    if arm.is_llm:
        return _LlmArm(arm, dataset, score_memo, memo_writer, lambda name: retriever_factory(name, {}))
    raise ConfigError(f"arm {arm.name!r}: unknown kind {arm.kind!r}")


class _RandomArm:
    def __init__(self, name: str, seed: int) -> None:
        self.name, self.seed = name, seed

    def __call__(self, case: EvalCase) -> ArmOutput:
        rng = random.Random(f"llmrec-eval-random:{self.seed}:{self.name}:{case.user_id}")
        return ArmOutput(tuple(rng.random() for _ in case.candidates))


def _candidate_order(case: EvalCase) -> ArmOutput:
    n = len(case.candidates)
    return ArmOutput(tuple(float(n - i) for i in range(n)))


class _RetrieverArm:
    def __init__(self, retriever: Any) -> None:
        self.retriever = retriever

    def __call__(self, case: EvalCase) -> ArmOutput:
        start = time.perf_counter()
        scores = self.retriever.score(list(case.history), list(case.candidates))
        if len(scores) != len(case.candidates):
            raise ConfigError(
                f"retriever {getattr(self.retriever, 'name', '?')!r} returned {len(scores)} scores for "
                f"{len(case.candidates)} candidates"
            )
        return ArmOutput(tuple(float(s) for s in scores), latency_s=time.perf_counter() - start)


def _canonical_model(name: str) -> str:
    """An asset name and its cache folder are the same model; other names compare as resolved paths or ids."""
    from llmrec.assets import llmrec_home

    path = Path(name).expanduser()
    if path.exists():
        return str(path.resolve())
    asset_dir = llmrec_home() / name
    if "/" not in name and asset_dir.exists():
        return str(asset_dir.resolve())
    return name


def check_arm(arm: ArmConfig, *, root: Path | None = None) -> None:
    """Checks that need the file system: an LLM arm's adapter exists and was trained on the arm's model.

    Raises:
        ConfigError: naming the arm, the adapter's base model and the arm's model when they differ.
    """
    if not arm.is_llm:
        return
    reranker_config(arm)  # validates `options` against RerankerConfig before anything runs
    if arm.adapter is None:
        return
    try:
        base = adapter_base_model(_adapter_folder(arm, root))
    except AdapterError as exc:
        raise ConfigError(f"arm {arm.name!r}: {exc}") from None
    assert arm.model is not None
    if _canonical_model(base) != _canonical_model(arm.model):
        raise ConfigError(
            f"arm {arm.name!r}: adapter {arm.adapter!r} was trained on base model {base!r}, "
            f"but the arm's model is {arm.model!r}"
        )


def check_arm_split(
    arm: ArmConfig, split: Split, *, root: Path | None = None, users: Collection[str] | None = None
) -> None:
    """Refuse an LLM arm whose adapter was trained on a split that holds `split`'s held-out items of the users the
    arm is evaluated on (`users`; None: every user) -- the leak guard; an adapter card that does not record its
    training split gets a warning.

    Raises:
        SplitLeakError: naming the arm's adapter, both split settings and an example user.
    """
    if not arm.is_llm or arm.adapter is None:
        return
    card = card_of(_adapter_folder(arm, root))
    if card is None:
        log.warning(
            "arm %s: adapter %s has no card: cannot check that it was not trained on this evaluation's held-out "
            "items",
            arm.name,
            arm.adapter,
        )
        return
    card.check_split(split, adapter=arm.adapter, users=users)


def _adapter_folder(arm: ArmConfig, root: Path | None) -> Path:
    assert arm.adapter is not None
    try:
        return resolve_adapter(arm.adapter, base=root)
    except AdapterError as exc:
        raise ConfigError(f"arm {arm.name!r}: adapter {arm.adapter!r}: {exc}") from None


class _LlmArm:
    """Reranks the case's candidates with llmrec.ranking.Reranker (built on first use), through the score memo
    when one is given."""

    def __init__(
        self,
        arm: ArmConfig,
        dataset: Any,
        memo_root: Path | None = None,
        writer: str = "main",
        retrievers: Callable[[str], Any] | None = None,
    ) -> None:
        self.arm = arm
        self.dataset = dataset
        self.memo_root = memo_root
        self.writer = writer
        self.retrievers = retrievers
        self.memo: Any = None
        self._reranker: Any = None

    @property
    def reranker(self) -> Any:
        """The arm's `Reranker` (model loaded on first use)."""
        if self._reranker is None:
            self._reranker = build_reranker(self.arm, self.dataset, self.retrievers)
            if self.memo_root is not None and self._reranker.llm_skipped is None:
                from llmrec.evaluation.score_memo import adapter_weights_digest, attach_memo

                digest = adapter_weights_digest(resolve_adapter(self.arm.adapter)) if self.arm.adapter else None
                self.memo = attach_memo(self._reranker, digest, self.memo_root, writer=self.writer)
        return self._reranker

    def __call__(self, case: EvalCase) -> ArmOutput:
        reranker = self.reranker
        replayed = self.memo.replayed_seconds if self.memo is not None else 0.0
        output = rank_case(reranker, case)
        if self.memo is not None and self.memo.replayed_seconds > replayed:
            # a memo hit costs no model time: report the scoring time it took when it was scored
            output = replace(output, latency_s=output.latency_s + self.memo.replayed_seconds - replayed)
        return output
