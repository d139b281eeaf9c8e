"""First-stage benchmark: fit time, fit memory and retrieval time of every retriever, measured side by side.

For each retriever (fit on the leave-one-out train split): fit time (median of --repeats fits; SASRec once, or
its cached fit when one exists: pass --fit-sasrec to time a fresh fit) and the fit's peak memory (the process's
peak RSS during the fit minus its RSS before, Linux only), then the time to retrieve the top 50 for all test users
one at a time and all at once with `retrieve_many` (median of --repeats passes of each, alternating; the two must
give the same lists), with the full-catalogue HR@50 as a sanity check. Last, KG fact
selection as prompts use it: the knowledge graph's build time and the median time to select facts for a user's
20 candidates (the first stage's top 20, CF evidence included).
Targets: ml-100k (issue: first stage): EASE and ALS fit < 10 s, SASRec < 10 minutes; retrieval for all users
< 5 s. ML-1M (issue: ML-1M and many processes): retrieval for all 6,040 users < 10 s.

Usage:
    OMP_NUM_THREADS=1 python eval/bench_first_stage.py                 # ~1 minute with a cached SASRec
    OMP_NUM_THREADS=1 python eval/bench_first_stage.py --fit-sasrec    # + a fresh SASRec fit (~2-4 minutes)
    OMP_NUM_THREADS=1 python eval/bench_first_stage.py --dataset ml-1m # ~5 minutes with a cached SASRec
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

RETRIEVERS = ("popularity", "cooc", "ease", "als", "dense", "sasrec", "fusion")
TARGETS = {
    "ml-100k": "Targets: EASE and ALS fit < 10 s, SASRec < 10 min; top-50 retrieval for all test users < 5 s.",
    "ml-1m": "Target: top-50 retrieval for all 6,040 users < 10 s (each retriever).",
}


def rss_mib(field: str) -> float | None:
    """VmRSS (now) or VmHWM (peak since the last `reset_peak_rss`) of this process in MiB; None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def reset_peak_rss() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
    except OSError:
        pass


def kg_selection(train, cases, first_stage, users: int = 200) -> dict:
    """Knowledge-graph build time and per-user fact selection time for 20 candidates (median, milliseconds)."""
    from llmrec.knowledge import KnowledgeGraph

    started = time.perf_counter()
    kg = KnowledgeGraph.from_dataset(train, interactions=True)
    build = time.perf_counter() - started
    times, facts = [], 0
    for history, _ in cases[:users]:
        candidates = [c.item_id for c in first_stage.retrieve(history, 20)]
        started = time.perf_counter()
        chosen = kg.select_facts(history, candidates, max_per_candidate=3, budget=200, items=train.items)
        times.append(time.perf_counter() - started)
        facts += sum(len(v) for v in chosen.values())
    return {"build_s": build, "users": len(times), "median_ms_per_user": 1000 * statistics.median(times),
            "facts_per_user": facts / max(1, len(times)), "triples": len(kg)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--fit-sasrec", action="store_true", help="time a fresh SASRec fit (not the cached one)")
    parser.add_argument("--dataset", default="ml-100k", choices=sorted(TARGETS))
    parser.add_argument("--retrievers", default=",".join(RETRIEVERS), help="comma-separated subset to measure")
    parser.add_argument("--out", default="eval/results", help="folder for bench_first_stage[_ml1m].{md,json}")
    args = parser.parse_args()

    from llmrec.data import PositivePolicy, leave_one_out, load_dataset
    from llmrec.retrieval import build_retriever, retrieve_many

    dataset = load_dataset(args.dataset)
    split = leave_one_out(dataset, policy=PositivePolicy(4.0))
    train = split.train_dataset
    cases = [([x.item_id for x in split.history_before(t)], t.item_id) for t in split.test]
    rows = []
    chosen = [r.strip() for r in args.retrievers.split(",") if r.strip()]
    unknown = sorted(set(chosen) - set(RETRIEVERS))
    if unknown:
        parser.error(f"unknown retriever(s) {unknown}; choose from {', '.join(RETRIEVERS)}")
    for name in chosen:
        fits = []
        opts: dict = {"progress": False}
        if name == "sasrec" and args.fit_sasrec:
            opts["cache_dir"] = tempfile.mkdtemp(prefix="bench-sasrec-")
        repeats = 1 if name in ("sasrec", "fusion", "dense") else args.repeats
        retriever = None
        peaks = []
        for _ in range(repeats):
            retriever = None
            reset_peak_rss()
            before = rss_mib("VmRSS")
            started = time.perf_counter()
            retriever = build_retriever(name, train, **opts)
            fits.append(time.perf_counter() - started)
            peak = rss_mib("VmHWM")
            peaks.append(None if peak is None or before is None else peak - before)
        assert retriever is not None
        passes, batched, hits, agree = [], [], 0, 0
        histories = [history for history, _ in cases]
        for _ in range(args.repeats):  # one at a time and all at once, alternating within each repeat
            started = time.perf_counter()
            one_by_one = [retriever.retrieve(history, 50) for history in histories]
            passes.append(time.perf_counter() - started)
            started = time.perf_counter()
            together = retrieve_many(retriever, histories, 50)
            batched.append(time.perf_counter() - started)
            hits = sum(any(c.item_id == target for c in found) for found, (_, target) in zip(one_by_one, cases))
            agree = sum([c.item_id for c in a] == [c.item_id for c in b] for a, b in zip(one_by_one, together))
        row = {
            "retriever": name,
            "fit_s": statistics.median(fits),
            "fit_note": "cached fit (load)" if name in ("sasrec", "fusion") and not args.fit_sasrec else "",
            "fit_peak_mib": None if None in peaks else max(peaks),
            "retrieve_all_users_s": statistics.median(passes),
            "retrieve_many_s": statistics.median(batched),
            "batched_same_lists": agree,
            "users": len(cases),
            "hr@50": hits / len(cases),
        }
        rows.append(row)
        print(
            f"{name:<11} fit {row['fit_s']:7.2f} s {row['fit_note']:<18} peak +{row['fit_peak_mib'] or 0:.0f} MiB "
            f"retrieve {len(cases)} users "
            f"{row['retrieve_all_users_s']:6.2f} s, batched {row['retrieve_many_s']:6.2f} s "
            f"({agree} identical lists)  HR@50 {row['hr@50']:.3f}",
            flush=True,
        )
    kg = kg_selection(train, cases, retriever)  # candidates: the last retriever measured
    print(f"kg: build {kg['build_s']:.1f} s, fact selection {kg['median_ms_per_user']:.1f} ms per user (median of "
          f"{kg['users']}, 20 candidates, {kg['facts_per_user']:.1f} facts)", flush=True)  # fmt: skip
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "dataset": args.dataset,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "omp_threads": os.environ.get("OMP_NUM_THREADS"),
        "repeats": args.repeats,
        "load_average": os.getloadavg(),
    }
    stem = "bench_first_stage" + ("" if args.dataset == "ml-100k" else "_" + args.dataset.replace("-", ""))
    (out / f"{stem}.json").write_text(json.dumps({"meta": meta, "rows": rows, "kg": kg}, indent=2) + "\n")
    lines = [
        f"# First-stage benchmark ({args.dataset}, leave-one-out train split)",
        "",
        f"`OMP_NUM_THREADS={meta['omp_threads']} python eval/bench_first_stage.py"
        + (" --fit-sasrec" if args.fit_sasrec else "")
        + ("" if args.dataset == "ml-100k" else f" --dataset {args.dataset}")
        + f"` on {meta['machine']} (shared, load average {meta['load_average'][0]:.1f} at the end; medians of "
        f"{args.repeats} where repeated).",
        TARGETS[args.dataset],
        "",
        "| retriever | fit (s) | note | fit peak memory (MiB) | retrieve all users, one at a time (s) | "
        "all at once, `retrieve_many` (s) | speed-up | same top 50 | users | full-catalogue HR@50 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        peak = "" if r["fit_peak_mib"] is None else f"{r['fit_peak_mib']:.0f}"
        lines.append(
            f"| {r['retriever']} | {r['fit_s']:.2f} | {r['fit_note']} | {peak} | {r['retrieve_all_users_s']:.2f} | "
            f"{r['retrieve_many_s']:.2f} | {r['retrieve_all_users_s'] / r['retrieve_many_s']:.1f}x | "
            f"{r['batched_same_lists']} | {r['users']} | {r['hr@50']:.3f} |"
        )
    lines += [
        "",
        f"KG fact selection (the graph with CF evidence, as prompts use it): build {kg['build_s']:.1f} s "
        f"({kg['triples']:,} triples); selecting facts for a user's 20 candidates ({chosen[-1]}'s top 20) takes "
        f"{kg['median_ms_per_user']:.1f} ms per user (median of {kg['users']} users; {kg['facts_per_user']:.1f} facts "
        "per user).",
    ]
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
