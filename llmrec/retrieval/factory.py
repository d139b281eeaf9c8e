"""The retriever registry, and `build_retriever(name, dataset, **opts)`: one entry point for every retriever.

`RETRIEVERS` is the one list of retriever names: each with its builder and what its scores allow. The other
layers derive their lists from it: the CLI's choices, the evaluation harness's retriever arms, training's negative
sources, and the candidate orders of `llmrec.ranking.order`.

Example:
    >>> retriever_names(orders_candidates=True)
    ('cooc', 'popularity', 'dense')
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llmrec.errors import ConfigError
from llmrec.retrieval.als import AlsRetriever
from llmrec.retrieval.base import Retriever
from llmrec.retrieval.cooccurrence import CooccurrenceRetriever
from llmrec.retrieval.decoder import LlmDenseRetriever
from llmrec.retrieval.dense import DenseRetriever
from llmrec.retrieval.ease import EaseRetriever
from llmrec.retrieval.fitted import seed_cache
from llmrec.retrieval.popularity import PopularityRetriever
from llmrec.retrieval.rrf import FusionRetriever
from llmrec.retrieval.sequential import FORMAT_VERSION as SASREC_FORMAT_VERSION
from llmrec.retrieval.sequential import SasrecRetriever
from llmrec.retrieval.zscore import DEFAULT_MEMBERS as ZFUSION_MEMBERS
from llmrec.retrieval.zscore import VERSION as ZSCORE_VERSION
from llmrec.retrieval.zscore import ZScoreFusionRetriever

if TYPE_CHECKING:
    from llmrec.data.dataset import Dataset



@dataclass(frozen=True)
class RetrieverSpec:
    """One registered retriever.

    Attributes:
        name: what configs and the CLI call it.
        build: ``build(dataset, **opts)``; None for ``fusion``, which `build_retriever` builds from its members.
        scores_as_new: its ``score(..., user_items=...)`` leaves the user's own interactions out of the fitted
            statistics, so a training target (which is in the fitted data) is scored as a test target would be.
            A model that cannot forget a user without a refit (ALS, SASRec, and a fusion of them) cannot.
        holds_out_last: its fit never trains on a user's last interaction (SASRec: its early-stopping target), so
            it scores that interaction out of sample from the earlier history; the z-score fusion fits its
            weights on those interactions.
        orders_candidates: a listwise prompt may list candidates best-first by its scores (`llmrec.ranking.order`);
            needs `scores_as_new`, since training orders a target's candidates with the user left out. EASE
            qualifies but is not offered: no adapter was trained or measured with an EASE order.
        version: bump when it scores the same data differently (evaluation caches and reports key on it; a
            refactor that keeps its scores keeps its version).
    """

    name: str
    build: Callable[..., Retriever] | None
    scores_as_new: bool = False
    holds_out_last: bool = False
    orders_candidates: bool = False
    version: int = 1

    def __post_init__(self) -> None:
        if self.orders_candidates and not self.scores_as_new:
            raise ValueError(f"retriever {self.name!r} orders candidates, so its scores must leave a user out")


#: Every retriever, by name. The order is the order of every list derived from it (choices, error messages).
RETRIEVERS: dict[str, RetrieverSpec] = {
    spec.name: spec
    for spec in (
        RetrieverSpec("cooc", CooccurrenceRetriever.fit, scores_as_new=True, orders_candidates=True),
        RetrieverSpec("popularity", PopularityRetriever.fit, scores_as_new=True, orders_candidates=True),
        RetrieverSpec("dense", DenseRetriever.build, scores_as_new=True, orders_candidates=True),
        # `dense` over item vectors read out of a decoder LLM (`llmrec.retrieval.decoder`); a z-fusion member.
        # Version 2: the default read-out moved from the last layer's raw state to layer 18's, centred.
        RetrieverSpec("llm_dense", LlmDenseRetriever.build, scores_as_new=True, version=2),
        RetrieverSpec("ease", EaseRetriever.fit, scores_as_new=True),
        RetrieverSpec("als", AlsRetriever.fit),
        RetrieverSpec("sasrec", SasrecRetriever.fit, holds_out_last=True, version=SASREC_FORMAT_VERSION),
        RetrieverSpec("zfusion", None, version=ZSCORE_VERSION),  # built from its members (`_build_zfusion`)
        RetrieverSpec("fusion", None),  # reciprocal-rank fusion, built from its members (`_build_fusion`)
    )
}
RETRIEVER_NAMES = tuple(RETRIEVERS)


def retriever_names(
    *, scores_as_new: bool | None = None, orders_candidates: bool | None = None
) -> tuple[str, ...]:
    """The registered names, in registry order, that have the given properties (None: either value)."""
    return tuple(
        spec.name
        for spec in RETRIEVERS.values()
        if scores_as_new in (None, spec.scores_as_new) and orders_candidates in (None, spec.orders_candidates)
    )

#: The default first stage: SASRec + EASE + dense, z-scored and fused with weights fit on the dataset's own
#: validation users (`llmrec.retrieval.zscore`), the best first stage measured (eval/results/ml100k-fusion-fit).
DEFAULT_RETRIEVER = "zfusion"
#: The reciprocal-rank fusion ("fusion", the default before "zfusion"): SASRec + EASE + dense, 2:2:1, chosen on
#: ml-100k validation targets (eval/results/ml100k-tune); below SASRec alone on ML-1M (eval/results/ml1m).
DEFAULT_FUSION = ("sasrec", "ease", "dense")
DEFAULT_FUSION_WEIGHTS = (2.0, 2.0, 1.0)


def _check_opts(name: str, builder: Callable[..., Any], opts: Mapping[str, Any]) -> None:
    accepted = [p for p in inspect.signature(builder).parameters if p not in ("cls", "self", "dataset")]
    unknown = [key for key in opts if key not in accepted]
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, accepted, n=1)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ConfigError(
            f"unknown option(s) for retriever {name!r}: {', '.join(hints)}; accepted: {', '.join(accepted)}"
        )


def build_retriever(name: str, dataset: Dataset, *, progress: bool | None = None, **opts: Any) -> Retriever:
    """Build the retriever called `name` (any of `RETRIEVER_NAMES`) over `dataset`.

    ``opts`` go to the registered builder (e.g. `DenseRetriever.build`, `CooccurrenceRetriever.fit`).
    For "zfusion" (the default first stage): ``members`` (default sasrec, ease, dense), ``member_opts``
    ({member name: opts}), ``weights`` (default: fit on the dataset's own validation users), ``validation_users``,
    ``negatives``, ``seed``, ``cache_dir`` (`llmrec.retrieval.zscore.ZScoreFusionRetriever.fit`).
    For "fusion": ``members`` (default ``DEFAULT_FUSION``: sasrec, ease, dense), ``weights`` (default 1 each,
    except the default members get ``DEFAULT_FUSION_WEIGHTS``, chosen on validation targets), ``rrf_k``,
    ``depth`` and ``member_opts`` ({member name: opts}). ``progress`` (None: each builder's default) shows or
    hides the progress bars of the retrievers that draw them while fitting (SASRec's epochs, dense embeddings),
    fusion members included; an explicit ``progress`` in ``opts`` or ``member_opts`` wins.

    Example:
        >>> build_retriever("cooc", split.train_dataset, history_len=20)  # doctest: +SKIP

    Raises:
        ConfigError: unknown name or option (with a did-you-mean hint).
    """
    spec = RETRIEVERS.get(name) if isinstance(name, str) else None
    if spec is None:
        close = difflib.get_close_matches(str(name), RETRIEVER_NAMES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"unknown retriever {name!r}{hint}; known: {', '.join(RETRIEVER_NAMES)}")
    if name in ("sasrec", "zfusion") and opts.get("cache_dir") is None:
        _seed_default_cache()
    if spec.name == "zfusion":
        return _build_zfusion(dataset, progress, opts)
    if spec.build is None:
        return _build_fusion(dataset, progress, opts)
    _check_opts(name, spec.build, opts)
    if progress is not None and "progress" in inspect.signature(spec.build).parameters:
        opts = {"progress": progress, **opts}
    return spec.build(dataset, **opts)


def _build_fusion(dataset: Dataset, progress: bool | None, opts: Mapping[str, Any]) -> FusionRetriever:
    """The "fusion" retriever: its members built by `build_retriever`, fused by `FusionRetriever`."""
    opts = dict(opts)
    members: Sequence[str] = opts.pop("members", DEFAULT_FUSION)
    if tuple(members) == DEFAULT_FUSION:
        opts.setdefault("weights", DEFAULT_FUSION_WEIGHTS)
    member_opts: Mapping[str, Mapping[str, Any]] = opts.pop("member_opts", {})
    _check_opts("fusion", FusionRetriever.__init__, {"retrievers": None, **opts})
    unknown_members = [m for m in member_opts if m not in members]
    if unknown_members:
        raise ConfigError(
            f"member_opts names retrievers not in members {list(members)}: {unknown_members}"
        )
    if "fusion" in members:
        raise ConfigError("fusion cannot be a member of itself")
    built = [build_retriever(m, dataset, **{"progress": progress, **member_opts.get(m, {})}) for m in members]
    return FusionRetriever(built, **opts)


def _build_zfusion(dataset: Dataset, progress: bool | None, opts: Mapping[str, Any]) -> ZScoreFusionRetriever:
    """The "zfusion" retriever: its members built by `build_retriever`, their weights fit (or loaded) by
    `ZScoreFusionRetriever.fit`."""
    opts = dict(opts)
    members = tuple(str(m) for m in opts.pop("members", ZFUSION_MEMBERS))
    member_opts = {str(k): dict(v) for k, v in dict(opts.pop("member_opts", {})).items()}
    _check_opts("zfusion", ZScoreFusionRetriever.fit, {"members": None, "out_of_sample": None, "versions": None, **opts})
    if not members or len(set(members)) != len(members):
        raise ConfigError(f"zfusion members must be one or more distinct retriever names, got {list(members)}")
    fusable = [n for n, s in RETRIEVERS.items() if s.build is not None]
    for name in members:
        if name not in fusable:
            raise ConfigError(f"zfusion member {name!r} is not a retriever it can fuse; known: {', '.join(fusable)}")
        spec = RETRIEVERS[name]
        if not (spec.scores_as_new or spec.holds_out_last) and opts.get("weights") is None:
            raise ConfigError(
                f"zfusion cannot fit a weight for {name!r}: it neither leaves a user out of its fit nor holds out "
                "each user's last interaction, so its validation scores would leak; give weights or drop it"
            )
    unknown = sorted(set(member_opts) - set(members))
    if unknown:
        raise ConfigError(f"member_opts names retrievers that are not members {list(members)}: {unknown}")
    built = {m: build_retriever(m, dataset, **{"progress": progress, **member_opts.get(m, {})}) for m in members}
    return ZScoreFusionRetriever.fit(
        dataset,
        built,
        out_of_sample={m: "user_items" if RETRIEVERS[m].scores_as_new else "holds_out_last" for m in members},
        versions={m: {"version": RETRIEVERS[m].version, "opts": _scoring_opts(member_opts.get(m, {}))} for m in members},
        **opts,
    )


def _seed_default_cache() -> None:
    """Put the shipped fits of the bundled datasets into the default retriever cache (`llmrec.retrieval.fitted`)."""
    from llmrec.assets import llmrec_home

    seed_cache(llmrec_home() / "retrievers")


#: Member options that change how a retriever is built or shown, not what it scores.
_DISPLAY_OPTS = ("progress", "rebuild", "index_path")


def _scoring_opts(opts: Mapping[str, Any]) -> dict[str, Any]:
    """`opts` without the ones that do not change a member's scores (what a fit is keyed on)."""
    return {k: v for k, v in opts.items() if k not in _DISPLAY_OPTS}
