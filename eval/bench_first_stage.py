"""First-stage benchmark: fit time and retrieval time of every retriever on ml-100k, measured side by side.

For each retriever (fit on the leave-one-out train split): fit time (median of --repeats fits; SASRec once, or
its cached fit when one exists: pass --fit-sasrec to time a fresh fit), then the time to retrieve the top 50 for
all 942 test users one at a time (median of --repeats passes), with the full-catalogue HR@50 as a sanity check.
Targets (issue: first stage): EASE and ALS fit < 10 s, SASRec < 10 minutes; retrieval for all users < 5 s.

Usage:
    OMP_NUM_THREADS=1 python eval/bench_first_stage.py                 # ~1 minute with a cached SASRec
    OMP_NUM_THREADS=1 python eval/bench_first_stage.py --fit-sasrec    # + a fresh SASRec fit (~2-4 minutes)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--fit-sasrec", action="store_true", help="time a fresh SASRec fit (not the cached one)")
    parser.add_argument("--out", default="eval/results", help="folder for bench_first_stage.{md,json}")
    args = parser.parse_args()

    from llmrec.data import PositivePolicy, leave_one_out, load_dataset
    from llmrec.retrieval import build_retriever

    dataset = load_dataset("ml-100k")
    split = leave_one_out(dataset, policy=PositivePolicy(4.0))
    train = split.train_dataset
    cases = [([x.item_id for x in split.history_before(t)], t.item_id) for t in split.test]
    rows = []
    for name in ("popularity", "cooc", "ease", "als", "dense", "sasrec", "fusion"):
        fits = []
        opts: dict = {}
        if name == "dense":
            opts = {"progress": False}
        if name == "sasrec":
            opts = {"progress": False}
            if args.fit_sasrec:
                opts["cache_dir"] = tempfile.mkdtemp(prefix="bench-sasrec-")
        if name == "fusion":
            opts = {"member_opts": {"dense": {"progress": False}, "sasrec": {"progress": False}}}
        repeats = 1 if name in ("sasrec", "fusion", "dense") else args.repeats
        retriever = None
        for _ in range(repeats):
            started = time.perf_counter()
            retriever = build_retriever(name, train, **opts)
            fits.append(time.perf_counter() - started)
        assert retriever is not None
        passes, hits = [], 0
        for _ in range(args.repeats):
            started = time.perf_counter()
            hits = 0
            for history, target in cases:
                found = retriever.retrieve(history, 50)
                hits += any(c.item_id == target for c in found)
            passes.append(time.perf_counter() - started)
        row = {
            "retriever": name,
            "fit_s": statistics.median(fits),
            "fit_note": "cached fit (load)" if name in ("sasrec", "fusion") and not args.fit_sasrec else "",
            "retrieve_all_users_s": statistics.median(passes),
            "users": len(cases),
            "hr@50": hits / len(cases),
        }
        rows.append(row)
        print(
            f"{name:<11} fit {row['fit_s']:7.2f} s {row['fit_note']:<18} retrieve {len(cases)} users "
            f"{row['retrieve_all_users_s']:6.2f} s  HR@50 {row['hr@50']:.3f}",
            flush=True,
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "omp_threads": os.environ.get("OMP_NUM_THREADS"),
        "repeats": args.repeats,
    }
    (out / "bench_first_stage.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    lines = [
        "# First-stage benchmark (ml-100k, leave-one-out train split)",
        "",
        f"`OMP_NUM_THREADS={meta['omp_threads']} python eval/bench_first_stage.py"
        + (" --fit-sasrec" if args.fit_sasrec else "")
        + f"` on {meta['machine']} (shared; medians of {args.repeats} where repeated).",
        "Targets: EASE and ALS fit < 10 s, SASRec < 10 min; top-50 retrieval for all test users < 5 s.",
        "",
        "| retriever | fit (s) | note | retrieve all users (s) | users | full-catalogue HR@50 |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['retriever']} | {r['fit_s']:.2f} | {r['fit_note']} | {r['retrieve_all_users_s']:.2f} | "
            f"{r['users']} | {r['hr@50']:.3f} |"
        )
    (out / "bench_first_stage.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
