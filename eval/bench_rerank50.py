"""Reranking cost per user: the default first stage's top 50 reranked by the residual pointwise adapter.

Target (issue: make the LLM worth running): reranking 50 candidates costs at most 3 s per user on the 2-core CPU.
For each user (ml-100k, leave-one-out on liked items, users whose test target the default first stage retrieves,
in the study's seeded order), the same 50 candidates are reranked side by side, interleaved per user, by the
study's arm in float32 (the CPU default) and in bfloat16 (``dtype: bfloat16``; native on CPUs with AVX512-BF16 or
AMX). Reported: median seconds per user (whole `Reranker.rank` call: prompts, scoring, score fusion), the median
per-user ratio, and what bfloat16 costs in quality on these users: rank correlation of the LLM scores with float32
and NDCG@10 of the target, LLM alone and fused.

Usage:
    python eval/bench_rerank50.py --users 20            # ~10 minutes on 2 quiet cores
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

ADAPTER = "smollm2-ml100k-pointwise-residual"
CONFIG = Path(__file__).with_name("ml100k-retrieved.yaml")  # the study's users, candidates and first stage
DTYPES = ("float32", "bfloat16")


def ndcg_at_10(ranked: tuple[str, ...], target: str) -> float:
    from llmrec.metrics import ndcg_at

    return ndcg_at(ranked.index(target) + 1 if target in ranked else None, 10)


def spearman(a: list[float], b: list[float]) -> float:
    ra = np.argsort(np.argsort(a)).astype(float)
    rb = np.argsort(np.argsort(b)).astype(float)
    return float(np.corrcoef(ra, rb)[0, 1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads (default: all)")
    parser.add_argument("--out", default="eval/results", help="folder for bench_rerank50.{md,json}")
    args = parser.parse_args()

    import torch

    from llmrec.evaluation.config import load_config
    from llmrec.evaluation.protocols import build_cases, make_split, user_order
    from llmrec.evaluation.runner import RetrieverPool, load_experiment_dataset
    from llmrec.models import ModelConfig
    from llmrec.ranking import Reranker, RerankerConfig

    torch.set_num_threads(args.threads)
    config = load_config(CONFIG)
    split = make_split(load_experiment_dataset(config), config)
    train = split.train_dataset
    rerankers = {
        dtype: Reranker(train, RerankerConfig(model=ModelConfig("smollm2", dtype=dtype), adapter=ADAPTER,
                                              mode="pointwise"))  # fmt: skip
        for dtype in DTYPES
    }
    order = user_order(split, config)
    cases = [c for c in build_cases(split, config, order[: 3 * args.users], RetrieverPool(train)) if c.target_present]
    for reranker in rerankers.values():  # warm-up, untimed: builds the fusion's first-stage retrievers
        reranker.rank(list(cases[0].history), list(cases[0].candidates))
    rows = []
    for case in cases[: args.users]:
        history, candidates, target = list(case.history), list(case.candidates), case.target
        row: dict = {"user": case.user_id, "candidates": len(candidates)}
        outs = {}
        for dtype, reranker in rerankers.items():
            started = time.perf_counter()
            outs[dtype] = reranker.rank(history, candidates)
            row[f"{dtype}_s"] = time.perf_counter() - started
            row[f"{dtype}_ndcg_fused"] = ndcg_at_10(outs[dtype].item_ids, target)
            llm = outs[dtype].llm_scores
            row[f"{dtype}_ndcg_llm"] = ndcg_at_10(tuple(sorted(llm, key=lambda i: -llm[i])), target)
        row["spearman_llm"] = spearman(*[[outs[d].llm_scores[c] for c in candidates] for d in DTYPES])
        row["prompt_tokens"] = outs["float32"].prompt_tokens
        row["encoded_tokens"] = outs["float32"].encoded_tokens
        rows.append(row)
        print(f"user {case.user_id}: float32 {row['float32_s']:.2f} s, bfloat16 {row['bfloat16_s']:.2f} s, "
              f"spearman {row['spearman_llm']:.3f}", flush=True)  # fmt: skip
    summary = {
        "users": len(rows),
        "threads": args.threads,
        "cpu": platform.processor() or platform.machine(),
        "load_average": os.getloadavg(),
        "median_s": {d: statistics.median(r[f"{d}_s"] for r in rows) for d in DTYPES},
        "median_ratio_float32_over_bfloat16": statistics.median(r["float32_s"] / r["bfloat16_s"] for r in rows),
        "median_spearman_llm": statistics.median(r["spearman_llm"] for r in rows),
        "mean_ndcg10_llm": {d: float(np.mean([r[f"{d}_ndcg_llm"] for r in rows])) for d in DTYPES},
        "mean_ndcg10_fused": {d: float(np.mean([r[f"{d}_ndcg_fused"] for r in rows])) for d in DTYPES},
        "median_encoded_tokens": statistics.median(r["encoded_tokens"] for r in rows),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_rerank50.json").write_text(json.dumps({"summary": summary, "rows": rows}, indent=2) + "\n")
    (out / "bench_rerank50.md").write_text(render(summary, rows, args))
    print(render(summary, rows, args))


def render(s: dict, rows: list[dict], args: argparse.Namespace) -> str:
    hit = {d: s["median_s"][d] <= 3.0 for d in DTYPES}
    lines = [
        "# Reranking 50 candidates per user (residual pointwise adapter, score fusion)",
        "",
        f"`python eval/bench_rerank50.py --users {args.users} --threads {args.threads}`: ml-100k, the default first "
        f"stage's top 50 for {s['users']} users whose target it retrieved (the study's seeded order), reranked by "
        f"`{ADAPTER}` (pointwise yes/no, one shared prefix per user, fused with the first stage by its card), "
        "float32 and bfloat16 side by side per user, whole `Reranker.rank` calls. "
        f"{s['threads']} torch threads; load average at the end {s['load_average'][0]:.1f}.",
        "",
        "| measure | float32 | bfloat16 | target |",
        "|---|---|---|---|",
        f"| median seconds per user | {s['median_s']['float32']:.2f} | {s['median_s']['bfloat16']:.2f} | <= 3 s "
        f"(float32 {'met' if hit['float32'] else 'missed'}, bfloat16 {'met' if hit['bfloat16'] else 'missed'}) |",
        f"| mean NDCG@10 of the target, LLM alone | {s['mean_ndcg10_llm']['float32']:.3f} | "
        f"{s['mean_ndcg10_llm']['bfloat16']:.3f} | |",
        f"| mean NDCG@10 of the target, fused | {s['mean_ndcg10_fused']['float32']:.3f} | "
        f"{s['mean_ndcg10_fused']['bfloat16']:.3f} | |",
        "",
        f"Median per-user ratio float32 / bfloat16 time: **{s['median_ratio_float32_over_bfloat16']:.2f}x**. "
        f"Median Spearman correlation of the two LLM score lists: {s['median_spearman_llm']:.3f}. "
        f"Median tokens run through the model per user: {s['median_encoded_tokens']:.0f}.",
        "",
        "| user | float32 s | bfloat16 s | Spearman | NDCG@10 fused f32 / bf16 |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['user']} | {r['float32_s']:.2f} | {r['bfloat16_s']:.2f} | {r['spearman_llm']:.3f} | "
                     f"{r['float32_ndcg_fused']:.3f} / {r['bfloat16_ndcg_fused']:.3f} |")  # fmt: skip
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
