"""Reranking cost per user: the default first stage's top 50 reranked by a pointwise adapter, fused with it.

Target (issue: make the LLM worth running): reranking 50 candidates costs at most 3 s per user on the 2-core CPU.
For each user (ml-100k, leave-one-out on liked items, users whose test target the default first stage retrieves,
in the study's seeded order), the same 50 candidates are reranked side by side, interleaved per user, by each
variant: the residual adapter (three facts per candidate) in float32 (the CPU default), bfloat16, and bfloat16 with
the adapter merged into the weights (``dtype: bfloat16``, ``merge_adapter``; bfloat16 is native on CPUs with
AVX512-BF16 or AMX; half-precision models score through a float32 output head), the same with the LLM scoring only
the 20 best of the first-stage members' fusion (``llm_depth``: LlamaRec's depth; the other 30 follow in the
members' order), and the retrieved-trained adapter (two facts per candidate: fewer tokens) in float32 and bfloat16
merged.
Reported per variant: median seconds per user (whole `Reranker.rank` call: prompts, scoring, score fusion), the
median per-user ratio to the first variant, tokens run through the model, NDCG@10 of the target (LLM alone and
fused by the adapter's card), and the rank correlation of the LLM scores with the same adapter in float32 (over
the candidates both scored).

Usage:
    python eval/bench_rerank50.py --users 10 --threads 2     # ~7 minutes on 2 quiet cores
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

CONFIG = Path(__file__).with_name("ml100k-retrieved.yaml")  # the study's users, candidates and first stage
TARGET_S = 3.0


class Variant(NamedTuple):
    label: str
    adapter: str
    dtype: str
    merge: bool = False
    depth: int | None = None  # RerankerConfig.llm_depth


VARIANTS = (
    Variant("residual float32", "smollm2-ml100k-pointwise-residual", "float32"),
    Variant("residual bfloat16", "smollm2-ml100k-pointwise-residual", "bfloat16"),
    Variant("residual bfloat16 merged", "smollm2-ml100k-pointwise-residual", "bfloat16", merge=True),
    Variant("residual float32, LLM on top 20", "smollm2-ml100k-pointwise-residual", "float32", depth=20),
    Variant("residual bfloat16 merged, LLM on top 20", "smollm2-ml100k-pointwise-residual", "bfloat16", merge=True,
            depth=20),
    Variant("retrieved float32", "smollm2-ml100k-pointwise-retrieved", "float32"),
    Variant("retrieved bfloat16 merged", "smollm2-ml100k-pointwise-retrieved", "bfloat16", merge=True),
)


def ndcg_at_10(ranked: tuple[str, ...], target: str) -> float:
    from llmrec.metrics import ndcg_at

    return ndcg_at(ranked.index(target) + 1 if target in ranked else None, 10)


def spearman(a: list[float], b: list[float]) -> float:
    ra = np.argsort(np.argsort(a)).astype(float)
    rb = np.argsort(np.argsort(b)).astype(float)
    return float(np.corrcoef(ra, rb)[0, 1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=10)
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
        v.label: Reranker(train, RerankerConfig(model=ModelConfig("smollm2", dtype=v.dtype), adapter=v.adapter,
                                                mode="pointwise", merge_adapter=v.merge, llm_depth=v.depth))  # fmt: skip
        for v in VARIANTS
    }
    # the rank correlation of each variant's LLM scores is taken against the same adapter's float32 variant
    reference = {v.label: next(r.label for r in VARIANTS if r.adapter == v.adapter and r.dtype == "float32")
                 for v in VARIANTS}  # fmt: skip
    order = user_order(split, config)
    cases = [c for c in build_cases(split, config, order[: 3 * args.users], RetrieverPool(train)) if c.target_present]
    for reranker in rerankers.values():  # warm-up, untimed: builds the fusion's first-stage retrievers
        reranker.rank(list(cases[0].history), list(cases[0].candidates))
    rows = []
    for case in cases[: args.users]:
        history, candidates, target = list(case.history), list(case.candidates), case.target
        row: dict = {"user": case.user_id, "candidates": len(candidates)}
        outs = {}
        for label, reranker in rerankers.items():
            started = time.perf_counter()
            outs[label] = out = reranker.rank(history, candidates)
            llm = out.llm_scores
            row[label] = {
                "s": time.perf_counter() - started,
                "ndcg_fused": ndcg_at_10(out.item_ids, target),
                "ndcg_llm": ndcg_at_10(tuple(sorted(llm, key=lambda i: -llm[i])), target),
                "encoded_tokens": out.encoded_tokens,
            }
        for label in rerankers:
            both = [c for c in candidates if c in outs[label].llm_scores]
            row[label]["spearman"] = spearman(*[[outs[v].llm_scores[c] for c in both]
                                                for v in (label, reference[label])])  # fmt: skip
        rows.append(row)
        print(f"user {case.user_id}: " + ", ".join(f"{v} {row[v]['s']:.2f} s" for v in rerankers), flush=True)
    first = VARIANTS[0].label
    summary = {
        "users": len(rows),
        "threads": args.threads,
        "cpu": platform.processor() or platform.machine(),
        "load_average": os.getloadavg(),
        "variants": {
            v.label: {
                **v._asdict(),
                "median_s": statistics.median(r[v.label]["s"] for r in rows),
                "median_ratio_to_first": statistics.median(r[first]["s"] / r[v.label]["s"] for r in rows),
                "median_encoded_tokens": statistics.median(r[v.label]["encoded_tokens"] for r in rows),
                "mean_ndcg10_llm": float(np.mean([r[v.label]["ndcg_llm"] for r in rows])),
                "mean_ndcg10_fused": float(np.mean([r[v.label]["ndcg_fused"] for r in rows])),
                "median_spearman_vs_float32": statistics.median(r[v.label]["spearman"] for r in rows),
            }
            for v in VARIANTS
        },
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_rerank50.json").write_text(json.dumps({"summary": summary, "rows": rows}, indent=2) + "\n")
    (out / "bench_rerank50.md").write_text(render(summary, rows, args))
    print(render(summary, rows, args))


def render(s: dict, rows: list[dict], args: argparse.Namespace) -> str:
    variants = s["variants"]
    first = next(iter(variants))
    lines = [
        "# Reranking 50 candidates per user (pointwise adapters, score fusion)",
        "",
        f"`python eval/bench_rerank50.py --users {args.users} --threads {args.threads}`: ml-100k, the default first "
        f"stage's top 50 for {s['users']} users whose target it retrieved (the study's seeded order), reranked by "
        "each variant side by side per user (pointwise yes/no, one shared prefix per user, fused with the first "
        f"stage by the adapter's card), whole `Reranker.rank` calls. {s['threads']} torch threads; load average at "
        f"the end {s['load_average'][0]:.1f}. Target: at most {TARGET_S:g} s per user.",
        "",
        "| variant | adapter | dtype | merged | LLM scores | median s/user | target | speed-up vs "
        f"`{first}` (median per user) | tokens/user | NDCG@10 LLM alone | NDCG@10 fused | Spearman vs float32 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, v in variants.items():
        lines.append(
            f"| {label} | `{v['adapter']}` | {v['dtype']} | {'yes' if v['merge'] else 'no'} | "
            f"{'all' if v.get('depth') is None else 'top ' + str(v['depth'])} | {v['median_s']:.2f} | "
            f"{'met' if v['median_s'] <= TARGET_S else 'missed'} | {v['median_ratio_to_first']:.2f}x | "
            f"{v['median_encoded_tokens']:.0f} | {v['mean_ndcg10_llm']:.3f} | {v['mean_ndcg10_fused']:.3f} | "
            f"{v['median_spearman_vs_float32']:.3f} |"
        )
    lines += [
        "",
        "NDCG@10 here is over a handful of users whose target was retrieved: a sanity check that the fast variants "
        "rank like the slow ones, not a quality measurement (the study reports are). \"LLM alone\" of a `top 20` "
        "variant ranks the 20 candidates it scored.",
        "",
        "| user | " + " | ".join(f"{label} s" for label in variants) + " |",
        "|---|" + "---|" * len(variants),
    ]
    for r in rows:
        lines.append(f"| {r['user']} | " + " | ".join(f"{r[label]['s']:.2f}" for label in variants) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
