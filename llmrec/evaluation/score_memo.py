"""A content-addressed memo of LLM scores: the same prompts to the same model are scored once.

The per-arm result cache (:mod:`llmrec.evaluation.cache`) is keyed on everything that shapes an arm's output, so
a new fusion weight or a retriever's version bump makes an LLM arm run again. Most such changes leave the prompts
as they were. The memo is keyed on what decides an LLM score and nothing else:

- the prompts themselves (their text, answer words, candidates shown, special-token setting);
- the model (its name, base-model fingerprint, dtype, quantization) and the adapter's weights and LoRA config (not
  its card: what the card decides about prompts is in the prompts, and its fusion weights are applied afterwards);
- the scorer (its class, settings and ``VERSION``) and model loading's ``LOADING_VERSION`` (explicit versions that
  a change of behaviour bumps, not the source bytes), plus the torch and transformers versions.

So after a refactor the harness re-renders every prompt (cheap), finds the unchanged ones in the memo and runs the
model only where a prompt really changed. A hit replays the stored scores and the stored scoring time, so a
report's latency column still reports what scoring costs.

Files: ``<the experiment's cache folder>/score-memo/<fingerprint>/<writer>.jsonl`` (the cache folder defaults to
``$LLMREC_HOME/eval-cache/<experiment>``), one JSON line per scored candidate set, appended and flushed as it is
made (a line cut short by a crash is skipped on load); each process of a data-parallel run appends to its own file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from llmrec.errors import ConfigError
from llmrec.evaluation.cache import parse_line
from llmrec.io import append_line

log = logging.getLogger(__name__)

#: Bump when the meaning of a memo entry changes.
MEMO_VERSION = 2


def prompts_key(prompts: Sequence[Any]) -> str:
    """The memo key of one candidate set's rendered prompts."""
    payload = [
        [p.text, list(p.answer_tokens), list(p.candidate_ids), bool(p.add_special_tokens)] for p in prompts
    ]
    return hashlib.sha256(json.dumps(payload, ensure_ascii=False).encode()).hexdigest()[:32]


def _files_digest(files: Sequence[Path]) -> str:
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.name.encode())
        digest.update(f.read_bytes())
    return digest.hexdigest()[:16]


#: The adapter files that decide what the model computes (the card, README and recipe do not).
ADAPTER_WEIGHT_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin", "llmrec_base_model.json")


def scoring_version(scorer: Any) -> dict[str, Any]:
    """The explicit versions of what lies between a rendered prompt and its scores: model loading
    (`llmrec.models.loading.LOADING_VERSION`) and the scorer's own ``VERSION``.

    Raises:
        ConfigError: the scorer declares no ``VERSION`` (its scores could not be told from another's).
    """
    from llmrec.models.loading import LOADING_VERSION

    version = getattr(type(scorer), "VERSION", None)
    if not isinstance(version, int):
        raise ConfigError(f"scorer {type(scorer).__name__} has no integer VERSION: the score memo cannot key on it")
    return {"loading": LOADING_VERSION, "scorer": version}


def _scorer_settings(scorer: Any) -> dict[str, Any]:
    """The scorer's plain settings (batch size, prefix cache ...): they may change float rounding."""
    return {
        k: v
        for k, v in sorted(vars(scorer).items())
        if not k.startswith("_") and isinstance(v, (bool, int, float, str, type(None)))
    }


def adapter_weights_digest(folder: str | os.PathLike[str]) -> str:
    """Hash of an adapter's weights and LoRA config (`ADAPTER_WEIGHT_FILES`)."""
    folder = Path(folder)
    return _files_digest([folder / f for f in ADAPTER_WEIGHT_FILES if (folder / f).is_file()])


def memo_fingerprint(scorer: Any, lm: Any, adapter_digest: str | None) -> str:
    """The memo folder name for `scorer` on the loaded model `lm` with the adapter whose weights hash to
    `adapter_digest` (`adapter_weights_digest`; None: the bare model)."""
    import torch
    import transformers

    from llmrec.models.loading import base_model_fingerprint

    cfg = lm.config
    payload = {
        "version": MEMO_VERSION,
        "model": str(cfg.name_or_path),
        "base_fingerprint": base_model_fingerprint(lm.model),
        "dtype": str(cfg.dtype),
        "quantization": str(cfg.quantization),
        "adapter": adapter_digest,
        "scorer": type(scorer).__name__,
        "settings": _scorer_settings(scorer),
        "code": scoring_version(scorer),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    from llmrec.models import heads

    if heads.has_float32_head(lm.model):  # a half-precision model whose logits come from a float32 head
        payload["output_head"] = True
    if getattr(lm, "merged_adapter", None) is not None:
        payload["merged_adapter"] = True  # merged weights round differently (only set then: older memos still match)
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


def _entry(key: str, result: Any) -> dict[str, Any]:
    data = asdict(result)
    data["candidate_ids"] = list(result.candidate_ids)
    data["scores"] = list(result.scores)
    return {"key": key, "result": data}


def _result_of(data: dict[str, Any]) -> Any:
    from llmrec.ranking.base import ScoreResult

    return ScoreResult(
        **{**data, "candidate_ids": tuple(data["candidate_ids"]), "scores": tuple(float(s) for s in data["scores"])}
    )


class ScoreMemo:
    """A `Scorer` that answers from the memo folder and asks `inner` only for prompts it has not seen.

    Args:
        inner: the scorer that runs the model.
        folder: this scorer's memo folder (``<root>/<memo_fingerprint(...)>``).
        writer: the file this process appends to (``<writer>.jsonl``); other processes' files are read too.

    Attributes:
        hits / misses: candidate sets answered from the memo / by `inner`.
        replayed_seconds: the stored scoring time of the hits (added to a replayed user's latency).
    """

    def __init__(self, inner: Any, folder: str | os.PathLike[str], writer: str = "main") -> None:
        self.inner = inner
        self.mode = inner.mode
        self.folder = Path(folder)
        self.path = self.folder / f"{writer}.jsonl"
        self.hits = 0
        self.misses = 0
        self.replayed_seconds = 0.0
        self._entries: dict[str, dict[str, Any]] = {}
        self._needs_newline = False
        if self.folder.is_dir():
            for f in sorted(self.folder.glob("*.jsonl")):
                text = f.read_text(encoding="utf-8")
                if f == self.path:
                    self._needs_newline = bool(text) and not text.endswith("\n")
                for line in text.split("\n"):
                    entry = _parse(line)
                    if entry is not None:
                        self._entries[entry["key"]] = entry["result"]

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, prompts: Sequence[Any]) -> bool:
        return prompts_key(prompts) in self._entries

    def score(self, prompts: Sequence[Any]) -> Any:
        return self.score_many([prompts])[0]

    def score_many(self, batch: Sequence[Sequence[Any]]) -> list[Any]:
        keys = [prompts_key(p) for p in batch]
        missing = [n for n, k in enumerate(keys) if k not in self._entries]
        scored_now = set(missing)
        if missing:
            fresh = self.inner.score_many([batch[n] for n in missing])
            for n, result in zip(missing, fresh, strict=True):
                self.put(batch[n], result)
            self.misses += len(missing)
        out = []
        for n, key in enumerate(keys):
            result = _result_of(self._entries[key])
            if n not in scored_now:
                self.hits += 1
                self.replayed_seconds += result.seconds
            out.append(result)
        return out

    def put(self, prompts: Sequence[Any], result: Any) -> None:
        """Store `result` as the scores of `prompts` (appended and flushed at once)."""
        entry = _entry(prompts_key(prompts), result)
        self._entries[entry["key"]] = entry["result"]
        append_line(self.path, json.dumps(entry), fresh_line=self._needs_newline)
        self._needs_newline = False


def _parse(line: str) -> dict[str, Any] | None:
    entry = parse_line(line)
    return entry if entry is not None and "key" in entry and "result" in entry else None


def attach_memo(reranker: Any, adapter_digest: str | None, root: Path, writer: str = "main") -> ScoreMemo:
    """Wrap `reranker`'s scorer in a `ScoreMemo` under `root` (its folder named by `memo_fingerprint`) and
    return the memo."""
    folder = root / memo_fingerprint(reranker.scorer, reranker.lm, adapter_digest)
    memo = ScoreMemo(reranker.scorer, folder, writer=writer)
    reranker.scorer = memo
    log.info("score memo %s: %d scored candidate sets", folder, len(memo))
    return memo


__all__ = [
    "MEMO_VERSION",
    "adapter_weights_digest",
    "ScoreMemo",
    "attach_memo",
    "memo_fingerprint",
    "prompts_key",
    "scoring_version",
]
