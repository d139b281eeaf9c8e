"""Experiment configs: typed dataclasses that validate themselves; YAML is only the file format.

An experiment is a dataset + split, one protocol, slices, a user sample and one or more *arms*. Baseline arms
(``random``, ``popularity``, ``cooc``, ``dense``, ``candidate_order``) score candidates without an LLM; ``llm``
arms rerank them with :class:`llmrec.ranking.Reranker`.

Example YAML::

    name: ml100k-quick
    dataset: ml-100k
    protocol: {kind: sampled, negatives: 19}
    users: 20
    baseline: popularity
    arms:
      - {name: popularity, kind: popularity}
      - {name: smollm2-listwise-kg, kind: llm, model: smollm2, template: listwise_kg, mode: listwise}

Unknown keys anywhere raise :class:`~llmrec.errors.ConfigError` naming the key and where it was.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import warnings
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmrec.config import check_known_keys, from_mapping
from llmrec.errors import ConfigError, LlmrecWarning
from llmrec.knowledge.statements import RELATIONS, relation
from llmrec.models.config import DTYPES, QUANTIZATIONS
from llmrec.prompts.templates import MODES
from llmrec.retrieval.factory import DEFAULT_RETRIEVER, RETRIEVER_NAMES

#: Baseline arm kinds that score candidates with the retriever of the same name (``build_retriever``).
RETRIEVER_ARM_KINDS = RETRIEVER_NAMES
BASELINE_KINDS = ("random", *RETRIEVER_ARM_KINDS, "candidate_order")
#: Arm kinds that rank through `llmrec.ranking.Reranker`: ``llm`` (a study's LLM arm: its own fields, the LLM forced
#: to run) and ``reranker`` (the pipeline a user gets from a `RerankerConfig`, defaults included).
RERANKER_ARM_KINDS = ("llm", "reranker")
ARM_KINDS = (*BASELINE_KINDS, *RERANKER_ARM_KINDS)
PROTOCOL_KINDS = ("sampled", "retrieved", "pointwise", "knowledge_probe")
#: Protocol fields of the knowledge probe only (left out of other protocols' records and fingerprints).
PROBE_FIELDS = ("relations", "pairs", "min_pairs")
NEGATIVE_SOURCES = ("unseen", "disliked")
SPLIT_KINDS = ("leave_one_out",)
#: Rows a fused LLM arm adds to the report: its LLM score alone, and the fusion without the LLM.
FUSION_SUFFIXES = (".llm-only", ".no-llm")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


#: Arm keys renamed to the `RerankerConfig` option they set: old name -> new name (still read, with a warning).
_RENAMED_ARM_KEYS = {"bootstrap": "permutations"}


def _renamed_arm_keys(raw: Mapping[str, Any]) -> dict[str, Any]:
    """`raw` with deprecated arm keys renamed (a warning names the new key; both names at once raise)."""
    out = dict(raw)
    for old, new in _RENAMED_ARM_KEYS.items():
        if old not in out:
            continue
        if new in out:
            raise ConfigError(f"arm {raw['name']!r}: {old!r} is the old name of {new!r}; set only {new!r}")
        warnings.warn(
            f"arm {raw['name']!r}: {old!r} is deprecated, use {new!r} (the RerankerConfig option it sets)",
            LlmrecWarning,
            stacklevel=3,
        )
        out[new] = out.pop(old)
    return out


def _check_name(value: object, where: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise ConfigError(f"{where} must be a name of letters, digits, '_', '-', '.', '+' (got {value!r})")
    return value


def _check_choice(value: object, choices: tuple[str, ...], where: str) -> None:
    if value not in choices:
        raise ConfigError(f"{where} must be {', '.join(choices[:-1])} or {choices[-1]}, got {value!r}")


def _check_int(value: object, where: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{where} must be an integer >= {minimum} (got {value!r})")
    return value


@dataclass(frozen=True)
class SplitConfig:
    """How targets and histories are made. Only per-user leave-one-out for now.

    Args:
        kind: ``leave_one_out``: each user's last positive interaction is the test target, the one before it is
            the validation target; retrievers are fit on the train part only.
        positive_min_rating: targets must have at least this rating (None: any interaction can be a target).
        min_history: users need at least this many train interactions to be evaluated.
        target: ``test`` or ``valid``: which held-out interaction to evaluate.
    """

    kind: str = "leave_one_out"
    positive_min_rating: float | None = 4.0
    min_history: int = 1
    target: str = "test"

    def __post_init__(self) -> None:
        if self.kind not in SPLIT_KINDS:
            raise ConfigError(f"split.kind must be one of {SPLIT_KINDS}, got {self.kind!r}")
        if self.positive_min_rating is not None and not isinstance(self.positive_min_rating, (int, float)):
            raise ConfigError(
                f"split.positive_min_rating must be a number or null, got {self.positive_min_rating!r}"
            )
        _check_int(self.min_history, "split.min_history", 0)
        if self.target not in ("test", "valid"):
            raise ConfigError(f"split.target must be 'test' or 'valid', got {self.target!r}")


@dataclass(frozen=True)
class ProtocolConfig:
    """Which candidates each arm ranks.

    Args:
        kind: ``sampled`` (target + `negatives` unseen items, LLMRank), ``retrieved`` (the `retriever`'s top
            `k`, LlamaRec; target may be absent) or ``pointwise`` (target + `negatives` unseen items scored one by
            one; AUC, TALLRec).
        negatives: sampled negatives per user (sampled, pointwise).
        retriever: retriever name for the retrieved protocol (default ``zfusion``, the default first stage; any
            name of ``llmrec.retrieval.RETRIEVER_NAMES``).
        k: candidates retrieved (retrieved protocol).
        retriever_options: keyword options passed to ``build_retriever``.
        negatives_from: sampled and pointwise: ``unseen`` (items the user never interacted with) or ``disliked``
            (TALLRec's liked-vs-disliked setting: items the user rated below ``split.positive_min_rating``
            *after* the target, so they are neither in the training data nor in the history shown; users with
            fewer than `negatives` such items are left out).
        relations: ``knowledge_probe`` (`llmrec.evaluation.probe`: true vs corrupted KG statements, scored yes/no
            by base models): the relations probed (`llmrec.knowledge.statements.RELATIONS`; default all).
        pairs: ``knowledge_probe``: (true, corrupted) statement pairs per relation, fewer where the KG holds fewer
            (default 100).
        min_pairs: ``knowledge_probe``: a relation with fewer true statements in the KG is an error (default 20).
    """

    kind: str = "sampled"
    negatives: int = 19
    retriever: str = DEFAULT_RETRIEVER
    k: int = 20
    retriever_options: Mapping[str, Any] = field(default_factory=dict)
    negatives_from: str = "unseen"
    relations: tuple[str, ...] | None = None
    pairs: int | None = None
    min_pairs: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in PROTOCOL_KINDS:
            raise ConfigError(f"protocol.kind must be one of {PROTOCOL_KINDS}, got {self.kind!r}")
        self._check_probe_fields()
        _check_int(self.negatives, "protocol.negatives", 1)
        _check_int(self.k, "protocol.k", 1)
        if not isinstance(self.retriever, str):
            raise ConfigError(f"protocol.retriever must be a retriever name, got {self.retriever!r}")
        if not isinstance(self.retriever_options, Mapping):
            raise ConfigError("protocol.retriever_options must be a mapping")
        if self.negatives_from not in NEGATIVE_SOURCES:
            raise ConfigError(
                f"protocol.negatives_from must be one of {NEGATIVE_SOURCES}, got {self.negatives_from!r}"
            )
        if self.kind == "retrieved" and self.negatives_from != "unseen":
            raise ConfigError("protocol.negatives_from applies to the sampled and pointwise protocols")

    def _check_probe_fields(self) -> None:
        if self.kind != "knowledge_probe":
            extra = [k for k in PROBE_FIELDS if getattr(self, k) is not None]
            if extra:
                raise ConfigError(f"protocol.{extra[0]} applies to the knowledge_probe protocol, not to {self.kind!r}")
            return
        for key, default in (("relations", tuple(RELATIONS)), ("pairs", 100), ("min_pairs", 20)):
            if getattr(self, key) is None:
                object.__setattr__(self, key, default)
        assert self.relations is not None and self.pairs is not None and self.min_pairs is not None
        if not isinstance(self.relations, (list, tuple)) or not all(isinstance(r, str) for r in self.relations):
            raise ConfigError(f"protocol.relations must be a list of relation names, got {self.relations!r}")
        object.__setattr__(self, "relations", tuple(self.relations))
        if not self.relations:
            raise ConfigError(f"protocol.relations is empty; known relations: {', '.join(RELATIONS)}")
        for name in self.relations:
            relation(name)  # an unknown name lists the known ones
        if len(set(self.relations)) != len(self.relations):
            raise ConfigError(f"protocol.relations names a relation twice: {list(self.relations)}")
        _check_int(self.min_pairs, "protocol.min_pairs", 2)  # an AUC with a CI needs a few pairs
        _check_int(self.pairs, "protocol.pairs", self.min_pairs)

    def as_dict(self) -> dict[str, Any]:
        """The protocol as plain data; the knowledge probe's fields only under that protocol, so records and
        fingerprints of the other protocols are what they were before the probe existed."""
        out = {**dataclasses.asdict(self), "retriever_options": dict(self.retriever_options)}
        if self.kind == "knowledge_probe":
            out["relations"] = list(self.relations or ())
        else:
            for key in PROBE_FIELDS:
                out.pop(key)
        return out


@dataclass(frozen=True)
class SliceConfig:
    """Thresholds of the reported slices.

    Args:
        cold_item_max_train: a target with at most this many train interactions is a cold item.
        short_history_max: a user whose history (the items before the target) has at most this many items has
            a short history.
    """

    cold_item_max_train: int = 20
    short_history_max: int = 30

    def __post_init__(self) -> None:
        _check_int(self.cold_item_max_train, "slices.cold_item_max_train", 0)
        _check_int(self.short_history_max, "slices.short_history_max", 0)


@dataclass(frozen=True)
class ArmConfig:
    """One system under test.

    Args:
        name: row name in the report.
        kind: ``random``, ``popularity``, ``cooc``, ``dense`` (retriever scores), ``candidate_order`` (the
            protocol's candidate order: the retriever's order under the retrieved protocol), ``llm`` (an LLM through
            `Reranker`, set by the fields below, its LLM always run) or ``reranker`` (the pipeline exactly as a
            user builds it: ``reranker`` holds `RerankerConfig` fields, and what it leaves out takes
            `RerankerConfig`'s defaults: ``{name: default, kind: reranker}`` is the default `Reranker`).
        reranker: ``reranker`` arms: the `RerankerConfig` fields (a mapping; unknown keys are refused).
        retriever_options: keyword options of ``build_retriever`` (baseline retriever kinds only).
        model: LLM arms: asset name, folder or hub id of the decoder.
        adapter: LLM arms: LoRA adapter folder, or null for zero-shot.
        template: LLM arms: prompt template name.
        mode: LLM arms: ``listwise``, ``pointwise`` or ``generative``.
        knowledge: LLM arms: show knowledge-graph facts in the prompt.
        permutations: LLM arms: candidate orders scored and averaged (position-bias bootstrapping), the
            `RerankerConfig` option of that name (default 1). The old name ``bootstrap`` is still read from
            config files, with a deprecation warning.
        quantization: LLM arms: ``none``, ``4bit`` or ``8bit``.
        dtype: LLM arms: weight dtype of unquantised layers (`llmrec.models.ModelConfig.dtype`): ``auto``
            (float32 on CPU, bfloat16 on GPU), ``float32``, ``bfloat16`` (about 1.5x faster on CPUs with native
            bfloat16 such as AVX512-BF16, 1.7x with ``options: {merge_adapter: true}``; scores through a float32
            output head, rank correlation 0.995 with float32; see ``eval/bench_rerank50.py``) or ``float16``.
        options: LLM arms: further ``RerankerConfig`` fields, passed through.
        fusion: LLM arms: score fusion with first-stage retrievers (`llmrec.ranking.fusion`). None (default):
            the adapter card's fitted fusion when it has one; false: the LLM score alone; a mapping (members,
            weights, llm_weight, optionally llm_depth): these weights. The arm ranks through `Reranker.rank`
            with that fusion (`RerankerConfig.fusion`), and also reports ``<name>.llm-only`` (the LLM's own score)
            and ``<name>.no-llm`` (the same fusion without the LLM) from the same ranked lists. With ``llm_depth`` K
            the LLM scores only the members' top K, as a `Reranker` with that depth does, so the arm has no
            ``.llm-only`` row.
        users: evaluate this arm on only the first `users` users of the experiment's seeded user order (costly
            arms on a sample, cheap ones on everyone); comparisons with the baseline pair the shared users.
    """

    name: str
    kind: str
    retriever_options: Mapping[str, Any] = field(default_factory=dict)
    model: str | None = None
    adapter: str | None = None
    template: str | None = None
    mode: str | None = None
    knowledge: bool | None = None
    permutations: int | None = None
    quantization: str | None = None
    dtype: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    users: int | None = None
    fusion: Any = None
    reranker: Mapping[str, Any] | None = None

    _LLM_FIELDS = ("model", "adapter", "template", "mode", "knowledge", "permutations", "quantization", "dtype")

    def __post_init__(self) -> None:
        where = f"arm {self.name!r}"
        _check_name(self.name, "arm.name")
        if self.kind not in ARM_KINDS:
            raise ConfigError(f"{where}: kind must be one of {ARM_KINDS}, got {self.kind!r}")
        if self.users is not None:
            _check_int(self.users, f"{where}: users", 1)
        if self.reranker is not None and self.kind != "reranker":
            raise ConfigError(f"{where}: field 'reranker' applies to reranker arms, not to a {self.kind!r} arm")
        if self.kind == "reranker":
            self._take_reranker_config(where)
        elif self.kind == "llm":
            set_defaults = {
                "model": "smollm2",
                "mode": "listwise",
                "knowledge": False,
                "permutations": 1,
                "quantization": "none",
                "dtype": "auto",
            }
            for key, value in set_defaults.items():
                if getattr(self, key) is None:
                    object.__setattr__(self, key, value)
            if self.template is None:
                object.__setattr__(self, "template", f"{self.mode}_kg" if self.knowledge else self.mode)
            if self.mode not in MODES:
                raise ConfigError(f"{where}: mode must be one of {MODES}, got {self.mode!r}")
            if not isinstance(self.knowledge, bool):
                raise ConfigError(f"{where}: knowledge must be true or false, got {self.knowledge!r}")
            _check_int(self.permutations, f"{where}: permutations", 1)
            _check_choice(self.quantization, QUANTIZATIONS, f"{where}: quantization")
            _check_choice(self.dtype, DTYPES, f"{where}: dtype")
            if not isinstance(self.options, Mapping):
                raise ConfigError(f"{where}: options must be a mapping")
            if self.retriever_options:
                raise ConfigError(
                    f"{where}: field 'retriever_options' applies to baseline arms, not to llm arms"
                )
            if self.fusion is True:
                object.__setattr__(self, "fusion", None)
            if self.fusion is not None and self.fusion is not False:
                from llmrec.ranking.fusion import ScoreFusion

                ScoreFusion.from_dict(self.fusion, f"{where}: fusion")
        else:
            extra = [k for k in self._LLM_FIELDS if getattr(self, k) is not None]
            if self.options:
                extra.append("options")
            if self.fusion is not None:
                extra.append("fusion")
            if extra:
                raise ConfigError(
                    f"{where}: field(s) {', '.join(repr(e) for e in extra)} apply to llm arms, "
                    f"not to a {self.kind!r} arm"
                )

    def _take_reranker_config(self, where: str) -> None:
        """Validate ``reranker`` as a `RerankerConfig` and mirror what the harness reads of it (model, adapter,
        mode, template, dtype, quantization) into this arm's fields; setting those fields directly is refused."""
        from llmrec.ranking.config import RerankerConfig

        extra = [k for k in self._LLM_FIELDS if getattr(self, k) is not None]
        extra += ["options"] * bool(self.options) + ["fusion"] * (self.fusion is not None)
        extra += ["retriever_options"] * bool(self.retriever_options)
        if extra:
            raise ConfigError(
                f"{where}: field(s) {', '.join(repr(e) for e in extra)} of llm arms do not apply to a reranker arm: "
                "put RerankerConfig fields under 'reranker'"
            )
        if not isinstance(self.reranker if self.reranker is not None else {}, Mapping):
            raise ConfigError(f"{where}: reranker must be a mapping of RerankerConfig fields, got {self.reranker!r}")
        config = RerankerConfig.from_dict(dict(self.reranker or {}))
        object.__setattr__(self, "reranker", dict(self.reranker or {}))
        for key, value in {
            "model": config.model.name_or_path,
            "adapter": config.adapter_ref,
            "mode": config.mode,
            "template": config.template,
            "knowledge": config.knowledge,
            "permutations": config.permutations,
            "quantization": config.model.quantization,
            "dtype": config.model.dtype,
        }.items():
            object.__setattr__(self, key, value)

    @property
    def is_llm(self) -> bool:
        """Whether the arm ranks through `Reranker` (an ``llm`` or a ``reranker`` arm)."""
        return self.kind in RERANKER_ARM_KINDS

    def resolved(self) -> dict[str, Any]:
        """The full config as plain data (what metrics.json records and the cache fingerprints)."""
        out: dict[str, Any] = {"name": self.name, "kind": self.kind, "users": self.users}
        if self.kind == "reranker":
            out["reranker"] = dict(self.reranker or {})
            out["adapter"] = self.adapter  # "default" resolved: another default adapter is another arm
        elif self.is_llm:
            for key in self._LLM_FIELDS:
                if key == "dtype" and self.dtype == "auto":
                    continue  # recorded only when set, so reports and caches of arms made before it still match
                out[key] = getattr(self, key)
            out["options"] = dict(self.options)
            out["fusion"] = self.fusion if self.fusion is None or self.fusion is False else dict(self.fusion)
        else:
            out["retriever_options"] = dict(self.retriever_options)
        return out


def _has_llm_depth(arm: ArmConfig) -> bool:
    """Whether the arm's own fusion makes the LLM score only a depth (a card's fusion is read at run time)."""
    return isinstance(arm.fusion, Mapping) and arm.fusion.get("llm_depth") is not None


@dataclass(frozen=True)
class ExperimentConfig:
    """A whole experiment. See the module docstring for the YAML shape.

    Args:
        name: experiment name; the report goes to ``<results_dir>/<name>/``.
        dataset: dataset name (``ml-100k``) or folder of atomic files.
        arms: the systems compared, at least one.
        split, protocol, slices: see their classes.
        users: evaluate a seeded random sample of this many users (null: all users with a target).
        seed: seeds user sampling, negative sampling, shuffling and the random arm.
        baseline: name of the arm every other arm is compared against (default: the first arm).
        bootstrap_samples: paired bootstrap resamples for confidence intervals.
        confidence: level of the confidence intervals.
        results_dir: folder that holds report folders (relative paths are relative to the config file's folder's
            ``results`` subfolder unless absolute).
        cache_dir: per-(arm, user) result cache (default ``$LLMREC_HOME/eval-cache/<name>``).
        description: free text shown at the top of the report.
        comparisons: extra paired comparisons ``[arm, versus]`` reported beside the baseline ones (e.g. an arm
            with knowledge-graph facts against the same arm without them).
    """

    name: str
    dataset: str
    arms: tuple[ArmConfig, ...]
    split: SplitConfig = field(default_factory=SplitConfig)
    protocol: ProtocolConfig = field(default_factory=ProtocolConfig)
    slices: SliceConfig = field(default_factory=SliceConfig)
    users: int | None = None
    seed: int = 0
    baseline: str | None = None
    bootstrap_samples: int = 1000
    confidence: float = 0.95
    results_dir: str | None = None
    cache_dir: str | None = None
    description: str = ""
    comparisons: tuple[tuple[str, str], ...] = ()
    source: str | None = None  # the YAML file it came from (set by load_config)

    def __post_init__(self) -> None:
        _check_name(self.name, "experiment name")
        if not isinstance(self.dataset, str) or not self.dataset:
            raise ConfigError(f"dataset must be a dataset name or folder, got {self.dataset!r}")
        if not self.arms:
            raise ConfigError(f"experiment {self.name!r} has no arms")
        names = [a.name for a in self.arms]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"duplicate arm name(s): {', '.join(dupes)}")
        if self.users is not None:
            _check_int(self.users, "users", 1)
        _check_int(self.seed, "seed", 0)
        _check_int(self.bootstrap_samples, "bootstrap_samples", 1)
        if not isinstance(self.confidence, float) or not 0.5 <= self.confidence < 1.0:
            raise ConfigError(f"confidence must be a number in [0.5, 1), got {self.confidence!r}")
        if self.baseline is None:
            object.__setattr__(self, "baseline", names[0])
        elif self.baseline not in names:
            raise ConfigError(f"baseline {self.baseline!r} is not an arm (arms: {', '.join(names)})")
        # A fused LLM arm also reports its LLM-only score and its fusion without the LLM (see ArmConfig.fusion).
        derived = [
            f"{a.name}{suffix}"
            for a in self.arms
            if a.is_llm
            for suffix in FUSION_SUFFIXES
            if suffix != FUSION_SUFFIXES[0] or not _has_llm_depth(a)  # the LLM scored a depth: no LLM-alone row
        ]
        pairs = []
        for pair in self.comparisons:
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                raise ConfigError(f"comparisons entries must be [arm, versus] pairs, got {pair!r}")
            for n in pair:
                if n not in names and n not in derived:
                    raise ConfigError(f"comparison {list(pair)!r} names {n!r}, which is not an arm")
            pairs.append((str(pair[0]), str(pair[1])))
        object.__setattr__(self, "comparisons", tuple(pairs))
        if self.protocol.kind == "knowledge_probe":
            for a in self.arms:
                if a.kind != "llm" or a.adapter is not None:
                    raise ConfigError(
                        f"arm {a.name!r}: the knowledge_probe protocol scores base models: its arms are llm arms "
                        f"with a model and no adapter (got kind {a.kind!r}, adapter {a.adapter!r})"
                    )
        if self.protocol.kind == "pointwise" and any(a.is_llm and a.mode == "generative" for a in self.arms):
            raise ConfigError("the pointwise protocol needs scores for each item; generative arms give none")

    @classmethod
    def from_dict(cls, data: object, *, source: str | None = None) -> ExperimentConfig:
        """Build from parsed YAML/JSON, validating every field."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"an experiment config must be a mapping, got {type(data).__name__}")
        data = dict(data)
        check_known_keys(cls, data, "the experiment config", exclude={"source"})
        for key in ("name", "dataset", "arms"):
            if key not in data:
                raise ConfigError(f"the experiment config needs a {key!r} field")
        raw_arms = data.pop("arms")
        if not isinstance(raw_arms, list):
            raise ConfigError("arms must be a list of arm mappings")
        arms = []
        for n, raw in enumerate(raw_arms):
            if not isinstance(raw, Mapping) or "name" not in raw or "kind" not in raw:
                raise ConfigError(f"arm #{n + 1} must be a mapping with at least 'name' and 'kind'")
            arms.append(from_mapping(ArmConfig, _renamed_arm_keys(raw), f"arm {raw['name']!r}"))
        data["split"] = from_mapping(SplitConfig, data.get("split"), "split")
        data["protocol"] = from_mapping(ProtocolConfig, data.get("protocol"), "protocol")
        data["slices"] = from_mapping(SliceConfig, data.get("slices"), "slices")
        if isinstance(data.get("confidence"), int) and not isinstance(data.get("confidence"), bool):
            data["confidence"] = float(data["confidence"])
        return cls(arms=tuple(arms), source=source, **data)

    def with_users(self, users: int | None) -> ExperimentConfig:
        """A copy that evaluates a seeded sample of `users` users (None keeps the config's choice)."""
        return self if users is None else dataclasses.replace(self, users=users)

    def arms_named(self, names: Collection[str] | None, *, keep: Collection[str] = ()) -> list[ArmConfig]:
        """The arms called `names` (and `keep`), in the config's order; all of them when `names` is empty or None.

        Raises:
            ConfigError: a name that is not an arm of this config (naming the arms it has).
        """
        if not names:
            return list(self.arms)
        unknown = [a for a in names if a not in {x.name for x in self.arms}]
        if unknown:
            raise ConfigError(f"unknown arm(s) {', '.join(unknown)} (arms: {', '.join(a.name for a in self.arms)})")
        wanted = set(names) | set(keep)
        return [a for a in self.arms if a.name in wanted]

    def arm(self, name: str) -> ArmConfig:
        for a in self.arms:
            if a.name == name:
                return a
        raise ConfigError(f"no arm named {name!r}")

    def results_path(self) -> Path:
        """``<results_dir>/<name>``: where the report is written."""
        if self.results_dir is not None:
            base = Path(self.results_dir).expanduser()
            if not base.is_absolute() and self.source is not None:
                base = Path(self.source).parent / base
        elif self.source is not None:
            base = Path(self.source).parent / "results"
        else:
            base = Path("eval") / "results"
        return base / self.name

    def cache_path(self) -> Path:
        from llmrec.assets import llmrec_home

        if self.cache_dir is not None:
            return Path(self.cache_dir).expanduser()
        return llmrec_home() / "eval-cache" / self.name

    def case_fingerprint(self) -> dict[str, Any]:
        """Everything that decides which (history, candidates, target) each user gets."""
        return {
            "dataset": self.dataset,
            "split": dataclasses.asdict(self.split),
            "protocol": self.protocol.as_dict(),
            "seed": self.seed,
        }


def load_config(path: str | Path) -> ExperimentConfig:
    """Read an experiment YAML file. Raises ConfigError for a missing file, bad YAML or a bad field."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"experiment config {str(p)!r} does not exist")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from None
    return ExperimentConfig.from_dict(data, source=str(p))


def fingerprint(data: object) -> str:
    """Stable short hash of JSON-able data (sorted keys)."""
    blob = json.dumps(data, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
