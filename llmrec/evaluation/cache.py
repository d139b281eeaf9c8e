"""Per-(arm, user) result cache: an interrupted run resumes, a re-run of an unchanged arm is instant.

One JSON-lines file per arm, ``<cache_dir>/<arm>.jsonl``. Line 1 is a header holding the arm's *fingerprint*
(a hash of its resolved config, the case-making config -- dataset, split, protocol, seed --, the cache format
version and, for adapters, the adapter's files). Every further line is one user's scores and costs, appended and
flushed as soon as it is computed; a line cut short by a crash is skipped on load.

The fingerprint also covers what shapes the outputs besides the config: the explicit version of each component
(:func:`behaviour_versions`), the numeric libraries' versions and the template's text; never the source bytes, so a
refactor keeps the caches. A cache whose fingerprint differs (another config, version or library) is detected,
logged, moved aside to ``<arm>.jsonl.stale`` and never reused. A cached user is reused only if its candidates equal
the case's candidates, so a change in the data cannot slip stale scores into a report.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from llmrec.errors import LlmrecError
from llmrec.evaluation.protocols import ArmOutput, EvalCase
from llmrec.io import append_line

log = logging.getLogger(__name__)

#: Bump when the meaning of cached scores changes. 3: an LLM arm's scores are the `Reranker`'s own (fused when it
#: fuses), with its LLM and first-stage scores beside them.
CACHE_VERSION = 3


def behaviour_versions() -> dict[str, Any]:
    """The explicit version of every component that shapes an arm's output, each owned by its component: the
    split, the protocol, each retriever (`llmrec.retrieval.RETRIEVERS`), fact selection, prompt rendering, model
    loading and each scorer. A change of behaviour bumps its component's version; a refactor that keeps the
    outputs (checked by ``llmrec eval CONFIG --verify``) keeps every cache and report."""
    from llmrec.data.splits import SPLIT_VERSION
    from llmrec.evaluation.protocols import PROTOCOL_VERSION
    from llmrec.knowledge.selection import FACTS_VERSION
    from llmrec.models.loading import LOADING_VERSION
    from llmrec.prompts.builder import PROMPT_VERSION
    from llmrec.ranking import GenerativeScorer, ListwiseScorer, PointwiseScorer
    from llmrec.retrieval import RETRIEVERS

    return {
        "split": SPLIT_VERSION,
        "protocol": PROTOCOL_VERSION,
        "retrievers": {name: spec.version for name, spec in RETRIEVERS.items()},
        "facts": FACTS_VERSION,
        "prompts": PROMPT_VERSION,
        "loading": LOADING_VERSION,
        "scorers": {cls.__name__: cls.VERSION for cls in (ListwiseScorer, PointwiseScorer, GenerativeScorer)},
    }


def template_digest(name: str) -> str:
    """Hash of a template's content (header settings and body), not its name or path: an edited template renders
    other prompts."""
    import dataclasses

    from llmrec.prompts import load_template

    fields = dataclasses.asdict(load_template(name))
    fields.pop("path", None)
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:16]


def numeric_libraries() -> dict[str, str]:
    """The versions of the libraries whose kernels compute the scores (a new torch may round otherwise)."""
    from llmrec.evaluation.provenance import library_versions

    versions = library_versions()
    return {k: versions[k] for k in ("torch", "transformers", "peft", "numpy", "scipy", "faiss-cpu", "implicit")}


def _adapter_file_bytes(path: Path) -> bytes:
    """What of an adapter file shapes the LLM's scores: the card without its score-fusion weights (the arm's own
    fusion config is keyed separately) and without its ``card_version`` (a card upgraded to a newer schema says
    the same about its adapter)."""
    if path.name != "adapter_card.json":
        return path.read_bytes()
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return path.read_bytes()
    if isinstance(card, dict):
        card.pop("fusion", None)
        card.pop("card_version", None)
    return json.dumps(card, sort_keys=True).encode()


def adapter_digest(adapter_dir: Path) -> str:
    """Hash of what of an adapter folder shapes the LLM's scores (weights, configs, the card without fusion)."""
    digest = hashlib.sha256()
    for f in sorted(p for p in adapter_dir.rglob("*") if p.is_file()):
        if f.name == "README.md":  # rendered from the card: says nothing the card does not
            continue
        digest.update(str(f.relative_to(adapter_dir)).encode())
        digest.update(_adapter_file_bytes(f))
    return digest.hexdigest()


def arm_fingerprint(
    arm_config: Mapping[str, Any], case_config: Mapping[str, Any], adapter_dir: Path | None = None
) -> str:
    """Hash of everything that decides an arm's per-user output (not its name or user cap).

    An adapter counts by its folder's name and content, not by where it lies: a moved checkout or another install
    of the same adapter keeps its caches.
    """
    resolved = {k: v for k, v in arm_config.items() if k not in ("name", "users")}
    if adapter_dir is not None:
        resolved["adapter"] = adapter_dir.name
    payload: dict[str, Any] = {
        "version": CACHE_VERSION,
        "arm": resolved,
        "cases": case_config,
        "components": behaviour_versions(),
        "libraries": numeric_libraries(),
    }
    if resolved.get("template"):
        payload["template"] = template_digest(str(resolved["template"]))
    if adapter_dir is not None and adapter_dir.is_dir():
        payload["adapter_files"] = adapter_digest(adapter_dir)
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _split(text: str) -> tuple[dict[str, Any] | None, dict[str, dict[str, Any]]]:
    """A cache file's header and its per-user records (unparseable lines, e.g. a half-written last one, skipped)."""
    lines = text.split("\n")
    records = (parse_line(line) for line in lines[1:])
    return parse_line(lines[0]), {r["user"]: r for r in records if r is not None and "user" in r}


def _header_line(fingerprint: str) -> str:
    return json.dumps({"fingerprint": fingerprint, "version": CACHE_VERSION})


def _read_if_made_by(path: Path, fingerprint: str) -> dict[str, dict[str, Any]] | None:
    """The records of a cache file made with `fingerprint`; None for a file made with another one."""
    text = path.read_text(encoding="utf-8")
    if not text:  # created, nothing written yet
        return {}
    header, records = _split(text)
    return records if header is not None and header.get("fingerprint") == fingerprint else None


def read_records(path: Path, fingerprint: str) -> dict[str, dict[str, Any]]:
    """The per-user records of a cache file made with `fingerprint` ({} for a missing file or another
    fingerprint: a shard of another config or code version is never mixed in)."""
    if not path.is_file():
        return {}
    records = _read_if_made_by(path, fingerprint)
    if records is None:
        log.warning("cache %s was made by a different config version: not reused", path)
        return {}
    return records


def shard_path(path: Path, rank: int) -> Path:
    """Where process `rank` of a data-parallel run appends its results of the arm cached at `path`."""
    return path.with_name(f"{path.stem}.shard{rank}{path.suffix}")


def merge_shards(path: Path, fingerprint: str) -> int:
    """Fold every shard of `path` (made with `fingerprint`) into `path`, rewritten atomically; shards are removed
    once merged, shards of another fingerprint are moved aside (``.stale``). Returns the number of records."""
    from llmrec.io import atomic_write_text

    records = read_records(path, fingerprint)
    shards = sorted(path.parent.glob(f"{path.stem}.shard*{path.suffix}"))
    for shard in shards:
        found = _read_if_made_by(shard, fingerprint)
        if found is None:
            os.replace(shard, shard.with_name(shard.name + ".stale"))
            continue
        records.update(found)
    lines = [_header_line(fingerprint), *(json.dumps(r) for r in records.values())]
    atomic_write_text(path, "\n".join(lines) + "\n")
    for shard in shards:
        shard.unlink(missing_ok=True)
        shard.with_name(shard.name + ".lock").unlink(missing_ok=True)
    return len(records)


class CacheBusyError(LlmrecError):
    """Another run is writing the same arm's cache."""


class ArmCache:
    """The on-disk results of one arm. Use as ``cache.get(case)`` / ``cache.put(case, output)``.

    Example:
        >>> cache = ArmCache(tmp / "popularity.jsonl", "abc123")  # doctest: +SKIP
        >>> cache.get(case) is None  # doctest: +SKIP
        True
    """

    def __init__(
        self, path: str | os.PathLike[str], fingerprint: str, *, also_read: Sequence[Path] = ()
    ) -> None:
        self.path = Path(path)
        self.fingerprint = fingerprint
        self.stale_replaced = False
        self._records: dict[str, dict[str, Any]] = {}
        self._needs_newline = False
        for other in also_read:  # read-only: results other processes (or earlier runs) made
            self._records.update(read_records(other, fingerprint))
        self._load()

    def _load(self) -> None:
        if not self.path.exists():
            return
        text = self.path.read_text(encoding="utf-8")
        # A crash mid-append leaves a partial last line: start the next record on a fresh line.
        self._needs_newline = bool(text) and not text.endswith("\n")
        header, records = _split(text)
        if header is None or header.get("fingerprint") != self.fingerprint:
            found = None if header is None else header.get("fingerprint")
            stale = self.path.with_name(self.path.name + ".stale")
            log.warning(
                "cache %s was made by a different config version (fingerprint %s, now %s): not reused, moved to %s",
                self.path,
                found,
                self.fingerprint,
                stale.name,
            )
            os.replace(self.path, stale)
            self.stale_replaced = True
            return
        self._records.update(records)

    def __len__(self) -> int:
        return len(self._records)

    @contextlib.contextmanager
    def locked(self) -> Iterator[ArmCache]:
        """Hold an exclusive lock on the cache while an arm runs, so two runs never interleave their appends.

        Raises:
            CacheBusyError: another process holds the lock.
        """
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "w") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise CacheBusyError(
                    f"another run is writing {self.path}; wait for it to finish (or point --cache-dir elsewhere)"
                ) from None
            try:
                yield self
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def get(self, case: EvalCase) -> ArmOutput | None:
        """The cached output for the case's user, or None (absent, or made for other candidates)."""
        record = self._records.get(case.user_id)
        if record is None or tuple(record["candidates"]) != case.candidates:
            return None
        return ArmOutput(
            scores=tuple(float(s) for s in record["scores"]),
            prompt_tokens=int(record["prompt_tokens"]),
            forward_passes=int(record["forward_passes"]),
            parse_failures=int(record["parse_failures"]),
            latency_s=float(record["latency_s"]),
            llm_scores=_floats(record.get("llm_scores")),
            first_stage_scores=_floats(record.get("first_stage_scores")),
        )

    def put(self, case: EvalCase, output: ArmOutput) -> None:
        """Append the case's output (flushed and fsynced, so a crash loses at most this line)."""
        record = {"user": case.user_id, "candidates": list(case.candidates), **asdict(output)}
        for key in ("scores", "llm_scores", "first_stage_scores"):
            if record[key] is not None:
                record[key] = list(record[key])
        append_line(self.path, json.dumps(record), header=_header_line(self.fingerprint), fresh_line=self._needs_newline)
        self._needs_newline = False
        self._records[case.user_id] = record


def _floats(values: Sequence[float] | None) -> tuple[float, ...] | None:
    return None if values is None else tuple(float(v) for v in values)


def parse_line(line: str) -> dict[str, Any] | None:
    """One JSON-lines record (None for a blank, cut-short or non-object line)."""
    if not line.strip():
        return None
    try:
        value = json.loads(line)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None
