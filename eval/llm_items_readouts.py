"""Read the ml-100k catalogue out of Qwen2.5-Coder-1.5B once for several (layer, pooling) read-outs of `llm_dense`
and cache each as `llmrec.retrieval.decoder.DecoderItemEncoder(layer=L, pooling=P)` would (issue 30 item 5), so
eval/ml100k-llm-items-valid.yaml can choose the read-out on validation targets without one pass per variant.

    OMP_NUM_THREADS=1 python eval/llm_items_readouts.py   # ~15 minutes on one AMD EPYC thread, bfloat16
"""

from __future__ import annotations

import logging
import time

import numpy as np

from llmrec.data import load_dataset
from llmrec.data.matrix import catalogue_ids
from llmrec.knowledge.graph import KnowledgeGraph
from llmrec.retrieval.decoder import DecoderItemEncoder, FactTexts
from llmrec.retrieval.embeddings import embed_items, load_cached

LAYERS = (-1, 14, 18, 21, 24)  # Qwen2.5-1.5B has 28 decoder layers; -1 is the last, after the final norm
POOLINGS = ("last", "mean")


class _Precomputed:
    def __init__(self, key: str, vectors: np.ndarray) -> None:
        self.key, self.vectors = key, vectors

    def encode(self, texts, *, progress=True):  # noqa: ANN001, ARG002 - the VectorEncoder protocol
        return self.vectors


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    dataset = load_dataset("ml-100k")
    ids = catalogue_ids(dataset)
    fact_texts = FactTexts(KnowledgeGraph.from_dataset(dataset, metadata=False), dataset.items)
    texts = [fact_texts(dataset.items[i]) for i in ids]
    encoders = {
        (layer, pooling): DecoderItemEncoder(dtype="bfloat16", layer=layer, pooling=pooling)
        for layer in LAYERS
        for pooling in POOLINGS
    }
    todo = [v for v, enc in encoders.items() if load_cached(enc.key, ids, texts) is None]
    print(f"{len(todo)} read-outs to compute: {todo}")
    if not todo:
        return
    started = time.perf_counter()
    vectors = encoders[todo[0]].read_out(texts, todo, progress=False)
    print(f"one pass over {len(ids)} items: {time.perf_counter() - started:.0f} s")
    for variant in todo:
        embed_items(_Precomputed(encoders[variant].key, vectors[variant]), ids, texts, progress=False)


if __name__ == "__main__":
    main()
