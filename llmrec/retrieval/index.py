"""A FAISS inner-product index over item vectors, saved and loaded atomically together with its metadata.

Small catalogues get an exact ``IndexFlatIP``; above ``approx_threshold`` items the default is HNSW (or IVF on
request). The folder holds ``index.faiss``, ``embeddings.npy`` (the vectors, for exact re-scoring and queries)
and ``meta.json`` (model, dimension, item ids, kind and parameters). Loading checks the model and dimension
asked for against the metadata and raises `IndexMismatchError` instead of failing somewhere inside FAISS.

Example:
    >>> index = VectorIndex.build(vectors, item_ids, model="asset:minilm")  # doctest: +SKIP
    >>> index.save("runs/ml-100k-index")  # doctest: +SKIP
    >>> VectorIndex.load("runs/ml-100k-index", model="asset:minilm", dim=384)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from llmrec.errors import ConfigError, DataFormatError

log = logging.getLogger(__name__)

INDEX_KINDS = ("auto", "flat", "hnsw", "ivf")
META_FILE = "meta.json"
INDEX_FILE = "index.faiss"
VECTORS_FILE = "embeddings.npy"
FORMAT_VERSION = 1


class IndexMismatchError(ConfigError):
    """A saved index was built with another model, dimension or catalogue than the one asked for."""


@dataclass(frozen=True)
class IndexConfig:
    """How to build the index.

    Args:
        kind: "auto" (flat up to `approx_threshold` items, else HNSW), "flat" (exact), "hnsw" or "ivf".
        approx_threshold: catalogue size above which "auto" picks HNSW.
        hnsw_m: HNSW graph degree (more = better recall, slower build, more memory).
        ef_construction: HNSW build-time beam width.
        ef_search: HNSW query-time beam width (the main recall/latency knob).
        nlist: IVF cells; None means ``4 * sqrt(n)``.
        nprobe: IVF cells visited per query (the main recall/latency knob).
        train_size: IVF k-means training sample size (at most the catalogue).
    """

    kind: str = "auto"
    approx_threshold: int = 50_000
    hnsw_m: int = 32
    ef_construction: int = 80
    ef_search: int = 128
    nlist: int | None = None
    nprobe: int = 32
    train_size: int = 100_000

    def __post_init__(self) -> None:
        if self.kind not in INDEX_KINDS:
            raise ConfigError(f"IndexConfig.kind must be one of {INDEX_KINDS}, got {self.kind!r}")
        for name in ("approx_threshold", "hnsw_m", "ef_construction", "ef_search", "nprobe", "train_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"IndexConfig.{name} must be a positive integer, got {value!r}")
        if self.nlist is not None and (
            isinstance(self.nlist, bool) or not isinstance(self.nlist, int) or self.nlist <= 0
        ):
            raise ConfigError(f"IndexConfig.nlist must be a positive integer or None, got {self.nlist!r}")

    def resolved_kind(self, n: int) -> str:
        if self.kind != "auto":
            return self.kind
        return "flat" if n <= self.approx_threshold else "hnsw"


class VectorIndex:
    """Item vectors in a FAISS inner-product index; positions in the index are positions in `item_ids`."""

    def __init__(self, index: Any, vectors: np.ndarray, meta: dict[str, Any]) -> None:
        self.index = index
        self.vectors = vectors
        self.meta = meta
        self.item_ids: list[str] = list(meta["item_ids"])

    # --- metadata -------------------------------------------------------------------------------------------

    @property
    def kind(self) -> str:
        return str(self.meta["kind"])

    @property
    def model(self) -> str:
        return str(self.meta["model"])

    @property
    def dim(self) -> int:
        return int(self.meta["dim"])

    def __len__(self) -> int:
        return len(self.item_ids)

    # --- build ----------------------------------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        vectors: np.ndarray,
        item_ids: Sequence[str],
        *,
        model: str,
        config: IndexConfig | None = None,
        text_version: str | None = None,
    ) -> VectorIndex:
        """Index `vectors` (one row per item id, normalised for cosine) with the kind `config` asks for."""
        import faiss

        config = config or IndexConfig()
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] == 0:
            raise ConfigError(f"vectors must be a non-empty 2-D array, got shape {vectors.shape}")
        n, dim = vectors.shape
        if n != len(item_ids):
            raise ConfigError(f"{n} vectors but {len(item_ids)} item ids")
        if len(set(item_ids)) != n:
            raise ConfigError("item ids must be distinct")
        kind = config.resolved_kind(n)
        started = time.perf_counter()
        params: dict[str, Any] = {}
        index: Any
        if kind == "flat":
            index = faiss.IndexFlatIP(dim)
            index.add(vectors)
        elif kind == "hnsw":
            index = faiss.IndexHNSWFlat(dim, config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = config.ef_construction
            index.add(vectors)
            index.hnsw.efSearch = config.ef_search
            params = {
                "hnsw_m": config.hnsw_m,
                "ef_construction": config.ef_construction,
                "ef_search": config.ef_search,
            }
        else:
            nlist = config.nlist or max(1, int(4 * math.sqrt(n)))
            nlist = min(nlist, n)
            quantizer = faiss.IndexFlatIP(dim)
            index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
            rng = np.random.default_rng(0)
            sample = (
                vectors
                if n <= config.train_size
                else vectors[rng.choice(n, config.train_size, replace=False)]
            )
            index.train(sample)
            index.add(vectors)
            index.nprobe = min(config.nprobe, nlist)
            params = {"nlist": nlist, "nprobe": index.nprobe, "train_size": min(n, config.train_size)}
        meta = {
            "format": FORMAT_VERSION,
            "kind": kind,
            "model": model,
            "dim": dim,
            "count": n,
            "params": params,
            "text_version": text_version,
            "item_ids": [str(i) for i in item_ids],
            "config": asdict(config),
        }
        log.info(
            "built %s index over %d items (dim %d) in %.2f s", kind, n, dim, time.perf_counter() - started
        )
        return cls(index, vectors, meta)

    # --- search ---------------------------------------------------------------------------------------------

    def set_search_params(self, *, ef_search: int | None = None, nprobe: int | None = None) -> None:
        """Change the recall/latency knob of an approximate index (ignored by a flat index)."""
        if ef_search is not None and self.kind == "hnsw":
            self.index.hnsw.efSearch = int(ef_search)
            self.meta["params"]["ef_search"] = int(ef_search)
        if nprobe is not None and self.kind == "ivf":
            self.index.nprobe = int(nprobe)
            self.meta["params"]["nprobe"] = int(nprobe)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-`k` inner products for each query row: ``(scores, positions)``; missing hits have position -1."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if queries.shape[1] != self.dim:
            raise IndexMismatchError(
                f"query dimension {queries.shape[1]} does not match the index dimension {self.dim}"
            )
        k = min(int(k), len(self))
        if k <= 0:
            raise ConfigError(f"k must be > 0, got {k}")
        scores, positions = self.index.search(queries, k)
        return scores, positions

    # --- persistence ----------------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = True) -> Path:
        """Write the index folder atomically (built in a temporary sibling, then renamed into place)."""
        import faiss

        from llmrec.io import atomic_write_dir

        with atomic_write_dir(path, overwrite=overwrite) as tmp:
            faiss.write_index(self.index, str(tmp / INDEX_FILE))
            np.save(tmp / VECTORS_FILE, self.vectors)
            (tmp / META_FILE).write_text(json.dumps(self.meta))
        log.info("saved %s index (%d items) to %s", self.kind, len(self), path)
        return Path(path)

    @staticmethod
    def read_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
        """The metadata of a saved index, without loading the index."""
        meta_path = Path(path) / META_FILE
        if not meta_path.is_file():
            raise ConfigError(f"{path} is not a saved llmrec index (no {META_FILE} in it)")
        try:
            meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError as exc:
            raise DataFormatError(meta_path, exc.lineno, f"not valid JSON: {exc.msg}") from None
        missing = [key for key in ("kind", "model", "dim", "item_ids") if key not in meta]
        if missing:
            raise DataFormatError(meta_path, None, f"index metadata lacks {', '.join(missing)}")
        return meta

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        model: str | None = None,
        dim: int | None = None,
        item_ids: Sequence[str] | None = None,
    ) -> VectorIndex:
        """Load a saved index, checking it against the model, dimension and item ids asked for (when given).

        Raises:
            IndexMismatchError: the index was built with another model, dimension or catalogue.
            ConfigError / DataFormatError: the folder is not a complete saved index.
        """
        import faiss

        meta = cls.read_meta(path)
        check_meta(meta, path, model=model, dim=dim, item_ids=item_ids)
        folder = Path(path)
        for name in (INDEX_FILE, VECTORS_FILE):
            if not (folder / name).is_file():
                raise ConfigError(f"saved index {path} is incomplete: {name} is missing")
        index = faiss.read_index(str(folder / INDEX_FILE))
        vectors = np.load(folder / VECTORS_FILE, allow_pickle=False)
        if (
            index.d != meta["dim"]
            or index.ntotal != len(meta["item_ids"])
            or vectors.shape != (index.ntotal, index.d)
        ):
            raise DataFormatError(folder, None, "index, vectors and metadata disagree on size or dimension")
        return cls(index, vectors, meta)


def check_meta(
    meta: dict[str, Any],
    path: object,
    *,
    model: str | None = None,
    dim: int | None = None,
    item_ids: Sequence[str] | None = None,
) -> None:
    """Raise `IndexMismatchError` when saved index metadata does not match what is asked for."""
    if model is not None and meta["model"] != model:
        raise IndexMismatchError(
            f"index at {path} was built with model {meta['model']!r}, but {model!r} was asked for; "
            "rebuild it (or point to another index folder)"
        )
    if dim is not None and int(meta["dim"]) != int(dim):
        raise IndexMismatchError(
            f"index at {path} has dimension {meta['dim']}, but the model asked for gives dimension {dim}"
        )
    if item_ids is not None and list(meta["item_ids"]) != [str(i) for i in item_ids]:
        raise IndexMismatchError(
            f"index at {path} covers {len(meta['item_ids'])} items that differ from the dataset's "
            f"{len(item_ids)} items; rebuild it for this dataset"
        )
