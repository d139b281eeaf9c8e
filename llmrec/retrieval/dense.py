"""Dense retriever: sentence embeddings of item texts in a FAISS index, queried with the user's history.

The query is the recency-weighted mean of the embeddings of the user's last `history_len` items
(``query="mean"``, the default, needs no model at query time), the embedding of the history's text
(``"text"``), or the normalised sum of both (``"both"``). Scores are cosine similarities.

Example:
    >>> dense = DenseRetriever.build(load_dataset("ml-100k"))  # doctest: +SKIP
    >>> dense.retrieve(["50", "172", "181"], k=5)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from llmrec.data.matrix import catalogue_ids
from llmrec.errors import ConfigError
from llmrec.retrieval.base import CatalogueRetriever, Ranked, check_history_options, recency_weights
from llmrec.retrieval.embeddings import ItemEncoder, VectorEncoder, embed_items, item_text, texts_version
from llmrec.retrieval.index import IndexConfig, IndexMismatchError, VectorIndex, check_meta
from llmrec.retrieval.popularity import PopularityRetriever
from llmrec.types import Item

if TYPE_CHECKING:
    from llmrec.data.dataset import Dataset

log = logging.getLogger(__name__)

QUERY_MODES = ("mean", "text", "both")


class DenseRetriever(CatalogueRetriever):
    """Nearest items to the user's history in sentence-embedding space. Build it with `DenseRetriever.build`."""

    name = "dense"

    def __init__(
        self,
        index: VectorIndex,
        popularity: PopularityRetriever,
        *,
        encoder: VectorEncoder | None = None,
        texts: Sequence[str] | None = None,
        history_len: int = 10,
        recency_decay: float = 0.9,
        query: str = "mean",
        dataset_name: str = "?",
    ) -> None:
        super().__init__(index.item_ids, dataset_name, fallback=popularity)
        check_history_options(history_len, recency_decay)
        if query not in QUERY_MODES:
            raise ConfigError(f"query must be one of {QUERY_MODES}, got {query!r}")
        if query != "mean" and (encoder is None or texts is None):
            raise ConfigError(
                f"query={query!r} embeds the history's text, so it needs an encoder and item texts"
            )
        self.index = index
        self.vectors = index.vectors
        self.encoder = encoder
        self.texts = list(texts) if texts is not None else None
        self.history_len = history_len
        self.recency_decay = float(recency_decay)
        self.query = query

    @classmethod
    def build(
        cls,
        dataset: Dataset,
        model: str | os.PathLike[str] = "minilm",
        *,
        index: IndexConfig | str | None = None,
        index_path: str | os.PathLike[str] | None = None,
        rebuild: bool = False,
        history_len: int = 10,
        recency_decay: float = 0.9,
        query: str = "mean",
        text_fn: Callable[[Item], str] = item_text,
        batch_size: int = 64,
        use_cache: bool = True,
        cache_dir: str | os.PathLike[str] | None = None,
        device: str | None = None,
        progress: bool = True,
    ) -> DenseRetriever:
        """Embed the catalogue (or read the embeddings cache) and index it, or load a saved index.

        Args:
            dataset: its items are the catalogue; its interactions feed the popularity fallback.
            model: ``"minilm"`` (asset), a local sentence-transformers folder or a hub id.
            index: an `IndexConfig` or just its kind ("auto", "flat", "hnsw", "ivf").
            index_path: folder of a saved index: loaded if it exists (and checked against `model` and the
                catalogue), else built and saved there.
            rebuild: rebuild and overwrite the index at `index_path` even if it exists.
            history_len: how many of the user's latest items make the query.
            recency_decay: weight ratio between consecutive history items in the mean (1 = plain mean).
            query: "mean", "text" or "both" (see the module docstring).
            text_fn: item -> text to embed (e.g. one that appends verbalised KG facts).
            batch_size, device: passed to the embedder.
            use_cache, cache_dir: the item-embedding cache (default ``$LLMREC_HOME/embeddings``).
            progress: show a progress bar while embedding.

        Raises:
            IndexMismatchError: the saved index at `index_path` was built with another model, catalogue or texts.
        """
        return cls.from_encoder(
            dataset,
            ItemEncoder(model, batch_size=batch_size, device=device),
            index=index,
            index_path=index_path,
            rebuild=rebuild,
            history_len=history_len,
            recency_decay=recency_decay,
            query=query,
            text_fn=text_fn,
            use_cache=use_cache,
            cache_dir=cache_dir,
            progress=progress,
        )

    @classmethod
    def from_encoder(
        cls,
        dataset: Dataset,
        encoder: VectorEncoder,
        *,
        index: IndexConfig | str | None = None,
        index_path: str | os.PathLike[str] | None = None,
        rebuild: bool = False,
        history_len: int = 10,
        recency_decay: float = 0.9,
        query: str = "mean",
        text_fn: Callable[[Item], str] = item_text,
        use_cache: bool = True,
        cache_dir: str | os.PathLike[str] | None = None,
        progress: bool = True,
        transform: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> DenseRetriever:
        """`build` with any item encoder: an object with a ``key`` (names its vectors in caches and index
        metadata) and ``encode(texts, progress=...)`` returning L2-normalised rows (e.g.
        `llmrec.retrieval.decoder.DecoderItemEncoder`). `transform` maps the catalogue's (cached) vectors to the
        indexed ones (L2-normalised rows again; the cache keeps the encoder's own vectors)."""
        config = IndexConfig(kind=index) if isinstance(index, str) else (index or IndexConfig())
        ids = catalogue_ids(dataset)
        if not ids:
            raise ConfigError(f"dataset {dataset.name!r} has no items to index")
        texts = [text_fn(dataset.items[i]) for i in ids]
        version = texts_version(ids, texts)
        path = Path(index_path) if index_path is not None else None
        if path is not None and path.exists() and not rebuild:
            meta = VectorIndex.read_meta(path)
            check_meta(meta, path, model=encoder.key, item_ids=ids)
            if meta.get("text_version") != version:
                raise IndexMismatchError(
                    f"index at {path} was built from other item texts (version {meta.get('text_version')}, "
                    f"now {version}); rebuild it"
                )
            vector_index = VectorIndex.load(path, model=encoder.key, item_ids=ids)
            log.info("loaded %s index from %s", vector_index.kind, path)
        else:
            vectors = embed_items(
                encoder,
                ids,
                texts,
                use_cache=use_cache,
                cache_dir=Path(cache_dir) if cache_dir is not None else None,
                progress=progress,
            )
            if transform is not None:
                vectors = np.ascontiguousarray(transform(vectors), dtype=np.float32)
            vector_index = VectorIndex.build(
                vectors, ids, model=encoder.key, config=config, text_version=version
            )
            if path is not None:
                vector_index.save(path, overwrite=True)
        return cls(
            vector_index,
            PopularityRetriever.fit(dataset),
            encoder=encoder,
            texts=texts,
            history_len=history_len,
            recency_decay=recency_decay,
            query=query,
            dataset_name=dataset.name,
        )

    # --- query ----------------------------------------------------------------------------------------------

    def query_vector(self, history_idx: np.ndarray) -> np.ndarray:
        """The normalised query vector of a non-empty history given as catalogue positions."""
        recent = np.asarray(history_idx, dtype=np.int64)[-self.history_len :]
        query = np.zeros(self.vectors.shape[1], dtype=np.float64)
        if self.query in ("mean", "both"):
            weights = recency_weights(len(recent), self.recency_decay)
            mean = weights @ self.vectors[recent].astype(np.float64)
            query += mean / max(float(np.linalg.norm(mean)), 1e-12)
        if self.query in ("text", "both"):
            assert self.encoder is not None and self.texts is not None
            text = " ".join(self.texts[i] for i in recent)
            query += self.encoder.encode([text], progress=False)[0]
        norm = float(np.linalg.norm(query))
        if norm < 1e-9:
            # The history's vectors cancel out: the latest item alone is the best remaining signal.
            query = self.vectors[recent[-1]].astype(np.float64)
            norm = max(float(np.linalg.norm(query)), 1e-12)
        return (query / norm).astype(np.float32)

    def _scores(self, history_idx: np.ndarray) -> np.ndarray:
        return self.vectors @ self.query_vector(history_idx)

    def _scores_of(self, history_idx: np.ndarray, wanted: np.ndarray) -> np.ndarray:
        """Cosine of each wanted item with the history's query vector. Embeddings learn nothing from interactions,
        so these are also the scores as new to the user (`_scores_as_new`)."""
        return self.vectors[wanted] @ self.query_vector(history_idx)

    def _ranked_batch(self, histories: Sequence[np.ndarray], k: int, excluded: Sequence[np.ndarray]) -> list[Ranked]:
        """The `k` items nearest to each history's query vector, best first: one index search per user, so many
        users get exactly what each gets alone."""
        return [self._search(h, k, out) for h, out in zip(histories, excluded, strict=True)]

    def _search(self, history_idx: np.ndarray, k: int, excluded: np.ndarray) -> Ranked:
        query = self.query_vector(history_idx)
        n = len(self.item_ids)
        fetch = min(n, k + len(excluded))
        while True:
            scores, positions = self.index.search(query, fetch)
            scores, positions = scores[0], positions[0]
            keep = (positions >= 0) & ~np.isin(positions, excluded)
            if keep.sum() >= k or fetch >= n:
                break
            # An approximate index may have returned fewer usable hits: ask for more.
            fetch = min(n, fetch * 2)
        return Ranked(positions[keep][:k].astype(np.int64), scores[keep][:k], self.name)
