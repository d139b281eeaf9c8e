"""Retrieval benchmark: exact vs approximate FAISS indexes, and retrieval for every ml-100k user.

Part 1 (synthetic, as the issue asks): random unit vectors (dim 384) at 1.7K, 100K and 1M items. For each size:
build time and single-query top-50 latency (median, p95) of the exact index (IndexFlatIP), and of the
approximate indexes (HNSW, IVF) at several settings of their recall/latency knob, with recall@50 against exact.
Random unit vectors in 384 dimensions are the worst case for ANN (no cluster structure: the true top-50 are
barely closer than everything else), so the table also runs IVF on a clustered synthetic set of the same size
and on the real MiniLM embeddings of the ml-100k catalogue.

Part 2 (ml-100k): all 943 users, K=20 and K=50, for each retriever (popularity, cooc, dense, fusion) after the
index exists: total time, and hit rate of the leave-one-out test item (retrievers fit on the train split).

Usage:
    python eval/bench_retrieval.py                   # full run (~10 min on 2 cores), writes eval/results/
    python eval/bench_retrieval.py --sizes 1682 20000 --out /tmp/bench   # quick smoke run

Every latency is one query at a time, the way a retriever serves one user. FAISS runs on --search-threads and
--build-threads threads (default 1 each): on this shared 2-core machine, with the other core busy, two OpenMP
threads made a single exact 20K-item query 25x slower (32 ms vs 1.3 ms) and a 10K-item HNSW build 2x slower.
HNSW is skipped above --hnsw-max items: its build alone would take tens of minutes on 2 cores (see the 100K row).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

K = 50
DIM = 384


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def random_unit(n: int, seed: int) -> np.ndarray:
    return unit(np.random.default_rng(seed).standard_normal((n, DIM), dtype=np.float32))


def clustered_unit(n: int, n_queries: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors around n/100 random centres (noise as large as the centre), queries from the same law."""
    rng = np.random.default_rng(seed)
    centres = unit(rng.standard_normal((max(1, n // 100), DIM), dtype=np.float32))

    def draw(m: int) -> np.ndarray:
        out = np.empty((m, DIM), dtype=np.float32)
        for start in range(0, m, 100_000):  # chunks keep the peak memory at one copy of the data
            stop = min(m, start + 100_000)
            noise = rng.standard_normal((stop - start, DIM), dtype=np.float32) / np.sqrt(DIM)
            out[start:stop] = unit(centres[rng.integers(0, len(centres), stop - start)] + noise)
        return out

    return draw(n), draw(n_queries)


THREADS = {"build": 1, "search": 1}


def threads(kind: str) -> None:
    import faiss

    faiss.omp_set_num_threads(THREADS[kind])


def single_query_latencies(index, queries: np.ndarray, k: int = K) -> tuple[list[float], np.ndarray]:
    """Seconds per query (one query per call) and the returned positions."""
    threads("search")
    times, hits = [], []
    for q in queries:
        started = time.perf_counter()
        _, positions = index.search(q[None, :], k)
        times.append(time.perf_counter() - started)
        hits.append(positions[0])
    return times, np.asarray(hits)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / truth.shape[1] for f, t in zip(found, truth, strict=True)]))


def ms(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)) * 1000, 3)


def bench_vectors(
    label: str, vectors: np.ndarray, queries: np.ndarray, *, kinds: list[str], flat_queries: int
) -> list[dict]:
    from llmrec.retrieval import IndexConfig, VectorIndex

    n = len(vectors)
    ids = [str(i) for i in range(n)]
    rows: list[dict] = []
    k = min(K, n)

    threads("build")
    started = time.perf_counter()
    flat = VectorIndex.build(vectors, ids, model="synthetic", config=IndexConfig(kind="flat"))
    flat_build = time.perf_counter() - started
    # Ground truth for every query in one batched exact search; latency from single queries.
    _, truth = flat.search(queries, k)
    times, _ = single_query_latencies(flat, queries[:flat_queries], k)
    rows.append(row(label, n, "flat (exact)", "-", flat_build, times, 1.0))
    print(rows[-1], flush=True)
    del flat

    sweeps = {
        "hnsw": ("ef_search", [64, 128, 256, 512, 1024, 2048]),
        "ivf": ("nprobe", None),
    }
    for kind in kinds:
        if kind == "hnsw":
            config = IndexConfig(kind="hnsw", hnsw_m=32, ef_construction=80)
        else:
            # sqrt(n) * 2 cells, trained on 40 points per cell: keeps the 1M build to ~1-2 min on 2 cores.
            nlist = max(1, int(2 * np.sqrt(n)))
            config = IndexConfig(kind="ivf", nlist=nlist, train_size=min(n, 40 * nlist))
        threads("build")
        started = time.perf_counter()
        index = VectorIndex.build(vectors, ids, model="synthetic", config=config)
        build = time.perf_counter() - started
        knob, values = sweeps[kind]
        if values is None:  # nprobe as a share of the cells: 1/64, 1/16, 1/4, 1/2, all
            cells = index.meta["params"]["nlist"]
            values = sorted({max(1, cells // d) for d in (64, 16, 4, 2, 1)})
        for value in values:
            index.set_search_params(**{knob: value})
            times, found = single_query_latencies(index, queries, k)
            params = (
                f"M=32, efC=80, {knob}={value}" if kind == "hnsw" else f"nlist={config.nlist}, {knob}={value}"
            )
            rows.append(row(label, n, kind, params, build, times, recall(found, truth)))
            print(rows[-1], flush=True)
        del index
    return rows


def row(label: str, n: int, kind: str, params: str, build: float, times: list[float], rec: float) -> dict:
    return {
        "data": label,
        "items": n,
        "index": kind,
        "params": params,
        "build_s": round(build, 2),
        "queries": len(times),
        "median_ms": ms(times, 50),
        "p95_ms": ms(times, 95),
        "recall@50": round(rec, 4),
    }


def bench_minilm(n_queries: int) -> list[dict]:
    """The real item embeddings of ml-100k (MiniLM), queried with user-history vectors."""
    from llmrec.data import load_dataset
    from llmrec.retrieval import DenseRetriever

    ds = load_dataset("ml-100k")
    dense = DenseRetriever.build(ds, "minilm", progress=False)
    users = ds.user_ids[:n_queries]
    queries = np.stack(
        [dense.query_vector(dense._positions([x.item_id for x in ds.history(u)])) for u in users]
    )
    return bench_vectors(
        "ml-100k MiniLM", dense.vectors, queries, kinds=["hnsw", "ivf"], flat_queries=n_queries
    )


def bench_ml100k() -> list[dict]:
    from llmrec.data import leave_one_out, load_dataset
    from llmrec.retrieval import build_retriever

    threads("search")
    split = leave_one_out(load_dataset("ml-100k"))
    train = split.train_dataset
    histories = {u: [x.item_id for x in train.history(u)] for u in train.user_ids}
    targets = {x.user_id: x.item_id for x in split.test}
    rows = []
    for name in ("popularity", "cooc", "dense", "fusion"):
        opts = {"progress": False} if name == "dense" else {}
        if name == "fusion":
            opts = {"member_opts": {"dense": {"progress": False}}}
        started = time.perf_counter()
        retriever = build_retriever(name, train, **opts)
        build = time.perf_counter() - started
        for k in (20, 50):
            hits, started = 0, time.perf_counter()
            for user in split.dataset.user_ids:
                got = retriever.retrieve(histories.get(user, []), k)
                hits += targets.get(user) in {c.item_id for c in got}
            seconds = time.perf_counter() - started
            rows.append(
                {
                    "retriever": retriever.name,
                    "k": k,
                    "users": len(split.dataset.user_ids),
                    "build_s": round(build, 2),
                    "all_users_s": round(seconds, 3),
                    f"hit@{k}": round(hits / len(split.test), 4),
                    "test_users": len(split.test),
                }
            )
            print(rows[-1], flush=True)
    return rows


def table(rows: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def machine() -> dict:
    import faiss

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "faiss": faiss.__version__,
        "faiss_threads": faiss.omp_get_max_threads(),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1682, 100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=200, help="queries per approximate setting")
    parser.add_argument(
        "--flat-queries", type=int, default=30, help="single queries timed on the exact index"
    )
    parser.add_argument("--hnsw-max", type=int, default=100_000, help="skip HNSW above this many items")
    parser.add_argument("--clustered-min", type=int, default=100_000, help="clustered set from this size up")
    parser.add_argument("--skip-ml100k", action="store_true")
    parser.add_argument("--build-threads", type=int, default=1)
    parser.add_argument("--search-threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--render-only", action="store_true", help="rewrite the .md from the .json in --out")
    args = parser.parse_args()
    if args.render_only:
        from llmrec.io import atomic_write_text

        results = json.loads((args.out / "bench_retrieval.json").read_text())
        atomic_write_text(args.out / "bench_retrieval.md", render(results))
        return

    THREADS.update(build=args.build_threads, search=args.search_threads)
    started = time.perf_counter()
    info = machine()
    info["build_threads"], info["search_threads"] = args.build_threads, args.search_threads
    print(info, flush=True)
    ann: list[dict] = []
    for n in args.sizes:
        queries = random_unit(args.queries, seed=1)
        vectors = random_unit(n, seed=0)
        kinds = ["hnsw", "ivf"] if n <= args.hnsw_max else ["ivf"]
        ann += bench_vectors("random", vectors, queries, kinds=kinds, flat_queries=args.flat_queries)
        del vectors
        if n >= args.clustered_min:
            vectors, queries = clustered_unit(n, args.queries, seed=2)
            ann += bench_vectors("clustered", vectors, queries, kinds=["ivf"], flat_queries=args.flat_queries)
            del vectors
    ml = []
    if not args.skip_ml100k:
        ann += bench_minilm(args.queries)
        ml = bench_ml100k()
    info["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    info["total_s"] = round(time.perf_counter() - started, 1)

    args.out.mkdir(parents=True, exist_ok=True)
    from llmrec.io import atomic_write_text

    results = {"machine": info, "ann": ann, "ml100k": ml}
    atomic_write_text(args.out / "bench_retrieval.json", json.dumps(results, indent=1))
    atomic_write_text(args.out / "bench_retrieval.md", render(results))
    print(f"wrote {args.out / 'bench_retrieval.md'}")


def targets(ann: list[dict], ml: list[dict]) -> list[str]:
    """The issue's two targets, checked against the rows (computed, so a rerun updates them)."""
    lines = []
    largest = max((r["items"] for r in ann if r["data"] in ("random", "clustered")), default=0)
    for data in ("random", "clustered"):
        rows = [r for r in ann if r["data"] == data and r["items"] == largest]
        if not rows:
            continue
        exact = next(r for r in rows if r["index"].startswith("flat"))
        good = [r for r in rows if not r["index"].startswith("flat") and r["recall@50"] >= 0.95]
        best = min(good, key=lambda r: r["median_ms"], default=None)
        fastest = min((r for r in rows if not r["index"].startswith("flat")), key=lambda r: r["median_ms"])
        if best is None:
            verdict = "no approximate setting reached recall@50 >= 0.95"
        else:
            met = "MET" if best["median_ms"] < 5 else "NOT MET"
            verdict = (
                f"{met}: fastest setting with recall@50 >= 0.95 is {best['index']} ({best['params']}) at "
                f"{best['median_ms']} ms median, recall {best['recall@50']}"
            )
        lines.append(
            f"- {largest:,} {data} items, top-50 < 5 ms median with recall@50 >= 0.95: {verdict}. Exact search: "
            f"{exact['median_ms']} ms median. Fastest approximate row: {fastest['params']} at "
            f"{fastest['median_ms']} ms, recall {fastest['recall@50']}."
        )
    for r in ml:
        if r["k"] == 20:
            met = "MET" if r["all_users_s"] < 2 else "NOT MET"
            lines.append(
                f"- all {r['users']} ml-100k users, K=20, < 2 s with {r['retriever']}: {met} ({r['all_users_s']} s)"
            )
    return lines


def render(results: dict) -> str:
    info, ann, ml = results["machine"], results["ann"], results["ml100k"]
    md = [
        "# Retrieval benchmark",
        "",
        f"`python eval/bench_retrieval.py` on {info['cpu']}, {info['cores']} cores, faiss {info['faiss']} with "
        f"{info['build_threads']} thread(s) to build and {info['search_threads']} to search. Load average "
        f"{info['loadavg_start']} at the start and {info['loadavg_end']} at the end: the machine is shared with other "
        f"jobs, so latencies (p95 above all) are noisy. Total {info['total_s']} s.",
        "",
        "## Targets",
        "",
        *targets(ann, ml),
        "",
        "Random unit vectors in 384 dimensions have no neighbourhood structure: the true top-50 of a query are",
        "barely closer than the rest of the catalogue, so an IVF index must visit nearly every cell and an HNSW",
        "graph nearly every node to find them. The clustered rows (vectors around n/100 centres, queries from the",
        "same law) and the real MiniLM item embeddings show what the same indexes do on data with structure.",
        "The IVF sweep visits 1/64, 1/16, 1/4, 1/2 and all of the cells, so a setting that just meets a target",
        "may lie between two rows; finer sweeps (or more cells, which cost more k-means training) are left to reruns.",
        "",
        "## Exact vs approximate index (top-50, one query at a time, dim 384)",
        "",
        table(
            ann,
            ["data", "items", "index", "params", "build_s", "queries", "median_ms", "p95_ms", "recall@50"],
        ),
    ]
    if ml:
        md += [
            "",
            "## ml-100k: every user, after the index exists",
            "",
            "Leave-one-out split; retrievers fit on the train interactions; `hit` = share of the 943 users whose test",
            "item is among the K candidates (chance is about K / 1682). `all_users_s` = retrieval for all users, one",
            "at a time, after `build_s` (the dense build reads cached MiniLM embeddings). Note that the defaults",
            "(history lengths, fusion weights 1:2) were chosen with a sweep on this same split.",
            "",
            table(
                [{**r, "hit": r.get(f"hit@{r['k']}")} for r in ml],
                ["retriever", "k", "users", "build_s", "all_users_s", "hit", "test_users"],
            ),
        ]
    return "\n".join(md) + "\n"


if __name__ == "__main__":
    main()
