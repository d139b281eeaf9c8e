"""Arms: turn one evaluation case into one score per candidate.

Baseline arms score the given candidates with a retriever fit on the train split (``Retriever.score``), or
randomly, or by the protocol's candidate order (under the retrieved protocol: the retriever's own order). LLM
arms rerank the given candidates with :class:`llmrec.ranking.Reranker` and report its token counts, forward
passes, parse failures and latency.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from llmrec.errors import ConfigError
from llmrec.evaluation.config import RETRIEVER_ARM_KINDS, ArmConfig
from llmrec.evaluation.protocols import EvalCase

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class ArmOutput:
    """What an arm returns for one case: one score per candidate (candidate order) and its costs."""

    scores: tuple[float, ...]
    prompt_tokens: int = 0
    forward_passes: int = 0
    parse_failures: int = 0
    latency_s: float = 0.0


class ArmScorer(Protocol):
    def __call__(self, case: EvalCase) -> ArmOutput: ...


RetrieverFactory = Callable[[str, dict], Any]


def build_arm(arm: ArmConfig, *, seed: int, retriever_factory: RetrieverFactory, dataset: Any) -> ArmScorer:
    """The scorer of `arm`. Retrievers come from `retriever_factory` (fit on the train split, shared)."""
    if arm.kind == "random":
        return _RandomArm(arm.name, seed)
    if arm.kind == "candidate_order":
        return _candidate_order
    if arm.kind in RETRIEVER_ARM_KINDS:
        return _RetrieverArm(retriever_factory(arm.kind, dict(arm.retriever_options)))
    if arm.kind == "llm":
        return _LlmArm(arm, dataset)
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


def adapter_base_model(adapter: str | Path) -> str:
    """The base model an adapter folder was trained on (``base_model_name_or_path`` of its adapter_config.json)."""
    path = Path(adapter).expanduser()
    config = path / "adapter_config.json"
    if not config.is_file():
        raise ConfigError(
            f"adapter {str(adapter)!r} has no adapter_config.json (is it a PEFT adapter folder?)"
        )
    try:
        base = json.loads(config.read_text(encoding="utf-8")).get("base_model_name_or_path")
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{config}: not valid JSON: {exc}") from None
    if not base:
        raise ConfigError(f"{config} does not name its base model (base_model_name_or_path)")
    return str(base)


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
    from llmrec.evaluation.llm import reranker_config

    reranker_config(arm)  # validates `options` against RerankerConfig before anything runs
    if arm.adapter is None:
        return
    adapter = resolve_adapter(arm.adapter, root)
    if not adapter.is_dir():
        raise ConfigError(f"arm {arm.name!r}: adapter folder {arm.adapter!r} does not exist")
    base = adapter_base_model(adapter)
    assert arm.model is not None
    if _canonical_model(base) != _canonical_model(arm.model):
        raise ConfigError(
            f"arm {arm.name!r}: adapter {arm.adapter!r} was trained on base model {base!r}, "
            f"but the arm's model is {arm.model!r}"
        )


def resolve_adapter(adapter: str, root: Path | None) -> Path:
    """An adapter path as given, or relative to `root` (the repository / config folder) when that exists."""
    path = Path(adapter).expanduser()
    if path.is_absolute() or path.exists() or root is None:
        return path
    return root / path


class _LlmArm:
    """Reranks the case's candidates with llmrec.ranking.Reranker (built on first use)."""

    def __init__(self, arm: ArmConfig, dataset: Any) -> None:
        self.arm = arm
        self.dataset = dataset
        self._reranker: Any = None

    def _build(self) -> Any:
        from llmrec.evaluation.llm import build_reranker

        return build_reranker(self.arm, self.dataset)

    def __call__(self, case: EvalCase) -> ArmOutput:
        if self._reranker is None:
            self._reranker = self._build()
        from llmrec.evaluation.llm import rank_case

        return rank_case(self._reranker, case)
