"""Ranking benchmark: SmolLM2 on 20 dense-retrieved candidates of real ml-100k users, all measured side by side.

Measures, in one run, interleaved per user so that machine load hits both sides of each ratio alike:
  1. listwise one-pass scoring vs generative ranking of the same 20 candidates (time ratio);
  2. pointwise with the shared-prefix KV cache vs re-encoding every full prompt (time ratio, max score gap);
  3. achieved GFLOP/s of the listwise forward pass vs a plain large fp32 matmul on this machine;
  4. memory of a 4-bit NF4 load vs a full-precision (fp32) load (each in its own process).

Usage:
    python eval/bench_ranking.py --users 3 --out eval/results/bench_ranking.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

MEM_PROBE = r"""
import json, os, sys
import torch
from llmrec.models import ModelConfig, load_model

def mem_mb():
    with open("/proc/self/status") as f:
        keys = ("VmRSS", "VmHWM", "RssAnon", "RssFile")
        return {l.split(":")[0]: int(l.split()[1]) / 1024 for l in f if l.startswith(keys)}
before = mem_mb()
lm = load_model(ModelConfig("smollm2", quantization=sys.argv[1]))
with torch.inference_mode():
    lm.model(input_ids=torch.tensor([[1, 2, 3, 4]]))  # touch every weight once
after = mem_mb()

def tensor_bytes(t):
    return t.numel() * t.element_size() if t is not None else 0

def linear_bytes(model):
    total = 0
    for name, module in model.named_modules():
        if not name.startswith("model.layers.") or not hasattr(module, "weight") or module.weight is None:
            continue
        if module.weight.dim() != 2 and getattr(module.weight, "quant_state", None) is None:
            continue
        total += tensor_bytes(module.weight)
        qs = getattr(module.weight, "quant_state", None)
        if qs is not None:
            total += tensor_bytes(qs.absmax)
            if getattr(qs, "state2", None) is not None:
                total += tensor_bytes(qs.state2.absmax) + tensor_bytes(getattr(qs.state2, "code", None))
    return total

print(json.dumps({
    "quantization": sys.argv[1],
    "anon_growth_mb": after["RssAnon"] - before["RssAnon"], "rss_after_mb": after["VmRSS"],
    "file_rss_mb": after["RssFile"], "peak_rss_mb": after["VmHWM"],
    "footprint_mb": lm.model.get_memory_footprint() / 2**20,
    "linear_weights_mb": linear_bytes(lm.model) / 2**20,
    "load_s": lm.load_seconds,
}))
"""


def matmul_gflops(n: int = 2048, repeats: int = 8) -> float:
    """Plain fp32 matmul throughput (GFLOP/s) with the same threads the model uses."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return repeats * 2 * n**3 / (time.perf_counter() - started) / 1e9


def forward_flops(model, tokens: int) -> tuple[float, float]:
    """(linear-layer FLOPs, attention-score FLOPs) of one causal forward over `tokens` tokens, logits for the last
    position only."""
    import torch

    cfg = model.config
    linear_params = sum(
        m.weight.numel()
        for n, m in model.named_modules()
        if n.startswith("model.layers.") and isinstance(m, torch.nn.Linear)
    )
    linear = (
        2.0 * linear_params * tokens + 2.0 * cfg.hidden_size * cfg.vocab_size
    )  # + lm_head at one position
    head_dim = getattr(cfg, "head_dim", cfg.hidden_size // cfg.num_attention_heads)
    # QK^T and AV over the causal half: 2 matmuls x 2 FLOP x T^2/2 x heads x head_dim, per layer
    attention = 2.0 * tokens**2 * cfg.num_attention_heads * head_dim * cfg.num_hidden_layers
    return linear, attention


def memory_probe(quantization: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    proc = subprocess.run(
        [sys.executable, "-c", MEM_PROBE, quantization], capture_output=True, text=True, env=env, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"memory probe ({quantization}) failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=3, help="ml-100k users to measure (default 3)")
    parser.add_argument("--candidates", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=10, help="pointwise suffixes per forward pass")
    parser.add_argument("--out", default=None, help="write the markdown table here too")
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()

    import torch

    from llmrec.data import load_dataset
    from llmrec.knowledge import KnowledgeGraph
    from llmrec.models import load_model
    from llmrec.prompts import PromptBuilder
    from llmrec.ranking import GenerativeScorer, ListwiseScorer, PointwiseScorer
    from llmrec.retrieval import build_retriever

    threads = torch.get_num_threads()
    ds = load_dataset("ml-100k")
    kg = KnowledgeGraph.from_dataset(ds)
    lm = load_model("smollm2")
    retriever = build_retriever("dense", ds, progress=False)
    listwise_b = PromptBuilder(ds, lm.tokenizer, "listwise_kg", knowledge=kg)
    generative_b = PromptBuilder(ds, lm.tokenizer, "generative", knowledge=kg)
    pointwise_b = PromptBuilder(ds, lm.tokenizer, "pointwise_kg", knowledge=kg)
    titles = {i: it.title for i, it in ds.items.items()}
    listwise = ListwiseScorer(lm)
    generative = GenerativeScorer(lm, titles=titles)
    cached = PointwiseScorer(lm, batch_size=args.batch_size)
    naive = PointwiseScorer(lm, batch_size=args.batch_size, use_prefix_cache=False)

    load_start = os.getloadavg()[0]
    users = [u for u in ds.user_ids if len(ds.history(u)) >= 50][: args.users]
    rows = []
    mm_before = matmul_gflops()
    for user in users:
        history = [x.item_id for x in ds.history(user)]
        cands = [c.item_id for c in retriever.retrieve(history, k=args.candidates)]
        lw_prompts = listwise_b.build(history, cands)
        gen_prompts = generative_b.build(history, cands)
        pw_prompts = pointwise_b.build(history, cands)
        listwise.score(lw_prompts)  # warm-up (allocator, kernels)
        mm = matmul_gflops()
        lw = listwise.score(lw_prompts)
        gen = generative.score(gen_prompts)
        lw2 = listwise.score(lw_prompts)
        pc = cached.score(pw_prompts)
        pn = naive.score(pw_prompts)
        mm2 = matmul_gflops()
        lw_s = min(lw.seconds, lw2.seconds)
        linear, attention = forward_flops(lm.model, lw.prompt_tokens)
        rows.append(
            {
                "user": user,
                "listwise_tokens": lw.prompt_tokens,
                "listwise_s": lw_s,
                "generative_s": gen.seconds,
                "generated_tokens": gen.details["generated_tokens"],
                "generative_parse_failure": gen.parse_failures,
                "generative_output": gen.raw_output,
                "pointwise_prefix_tokens": pc.details["prefix_tokens"],
                "pointwise_prompt_tokens": pn.prompt_tokens,
                "pointwise_cached_tokens": pc.encoded_tokens,
                "pointwise_cached_s": pc.seconds,
                "pointwise_naive_s": pn.seconds,
                "pointwise_max_abs_diff": max(abs(a - b) for a, b in zip(pc.scores, pn.scores)),
                "pointwise_score_range": max(pn.scores) - min(pn.scores),
                "same_pointwise_order": sorted(cands, key=dict(zip(pc.candidate_ids, pc.scores)).get)
                == sorted(cands, key=dict(zip(pn.candidate_ids, pn.scores)).get),
                "forward_gflop": (linear + attention) / 1e9,
                "forward_gflops": (linear + attention) / lw_s / 1e9,
                "forward_linear_gflops": linear / lw_s / 1e9,
                "matmul_gflops": max(mm, mm2),
            }
        )
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "generative_output"}), flush=True)
    mem = {} if args.skip_memory else {q: memory_probe(q) for q in ("none", "4bit")}
    table = render(rows, mem, threads, mm_before, (load_start, os.getloadavg()[0]))
    print(table)
    if args.out:
        from llmrec.io import atomic_write_text

        atomic_write_text(args.out, table)
    return 0


def render(rows: list[dict], mem: dict, threads: int, mm_before: float, load: tuple[float, float]) -> str:
    med = lambda key: statistics.median(r[key] for r in rows)  # noqa: E731
    ratio_gen = statistics.median(r["generative_s"] / r["listwise_s"] for r in rows)
    ratio_pw = statistics.median(r["pointwise_naive_s"] / r["pointwise_cached_s"] for r in rows)
    # the hardware limit: the best plain-matmul rate seen in the whole run (the least loaded moment)
    peak_mm = max([mm_before] + [r["matmul_gflops"] for r in rows])
    eff = statistics.median(r["forward_gflops"] for r in rows) / peak_mm
    eff_linear = statistics.median(r["forward_linear_gflops"] for r in rows) / peak_mm
    lines = [
        "# Ranking benchmark (SmolLM2-135M-Instruct, ml-100k, 20 dense-retrieved candidates)",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, torch threads {threads}, "
        f"fp32. Users: {', '.join(r['user'] for r in rows)} (first users with >= 50 ratings). Every ratio is measured "
        "side by side per user in one run (interleaved), the median over users is reported. Base model, no adapter. "
        f"The machine is shared: load average {load[0]:.1f} at the start, {load[1]:.1f} at the end (1 torch thread: "
        "with 2 threads on a loaded 2-core machine, thread barriers made element-wise ops up to 20x slower).",
        "Command: `OMP_NUM_THREADS=1 python eval/bench_ranking.py --users 3 --out eval/results/bench_ranking.md`",
        "",
        "| measure | value | target |",
        "|---|---|---|",
        f"| listwise one-pass scoring, seconds (prompt {med('listwise_tokens'):.0f} tokens) | {med('listwise_s'):.2f} | |",
        f"| generative ranking of the same candidates, seconds ({med('generated_tokens'):.0f} tokens generated) | "
        f"{med('generative_s'):.2f} | |",
        f"| **generative / listwise time ratio** | **{ratio_gen:.1f}x** | >= 15x |",
        f"| generative outputs that did not name all 20 candidates once | {sum(r['generative_parse_failure'] for r in rows)}"
        f" of {len(rows)} | |",
        f"| pointwise shared prefix, tokens | {med('pointwise_prefix_tokens'):.0f} | >= 300 |",
        f"| pointwise tokens encoded: cached vs naive | {med('pointwise_cached_tokens'):.0f} vs "
        f"{med('pointwise_prompt_tokens'):.0f} | |",
        f"| pointwise seconds: cached vs naive (20 candidates) | {med('pointwise_cached_s'):.2f} vs "
        f"{med('pointwise_naive_s'):.2f} | |",
        f"| **pointwise naive / cached time ratio** | **{ratio_pw:.1f}x** | >= 4x |",
        f"| pointwise max abs score difference cached vs naive (score range) | "
        f"{max(r['pointwise_max_abs_diff'] for r in rows):.2e} ({med('pointwise_score_range'):.2f}) | float rounding |",
        f"| pointwise candidate order identical cached vs naive | {all(r['same_pointwise_order'] for r in rows)} | True |",
        f"| listwise forward: GFLOP per pass | {med('forward_gflop'):.0f} | |",
        f"| listwise forward: achieved GFLOP/s (linear layers only) | {med('forward_gflops'):.1f} "
        f"({med('forward_linear_gflops'):.1f}) | |",
        f"| plain 2048x2048 fp32 matmul GFLOP/s, same threads: best of the run (median per user) | {peak_mm:.1f} "
        f"({med('matmul_gflops'):.1f}) | |",
        f"| **forward / matmul throughput** (linear only) | **{eff:.0%}** ({eff_linear:.0%}) | >= 60% |",
    ]
    if mem:
        full, q4 = mem["none"], mem["4bit"]
        lines += [
            f"| {name} load: linear weights / whole model tensors / private RSS growth / total RSS, MiB | "
            f"{m['linear_weights_mb']:.0f} / {m['footprint_mb']:.0f} / {m['anon_growth_mb']:.0f} / {m['rss_after_mb']:.0f} | |"
            for name, m in (("fp32", full), ("4-bit NF4", q4))
        ]
        lines += [
            f"| **4-bit / fp32 memory of the linear weights** (whole model tensors) | "
            f"**{q4['linear_weights_mb'] / full['linear_weights_mb']:.1%}** "
            f"({q4['footprint_mb'] / full['footprint_mb']:.1%}) | <= 40% |",
            "",
            "Memory is measured in a fresh process per load, after one forward pass. Embeddings (tied with the LM head, "
            "28M of the 135M parameters) stay unquantised, hence the whole-model ratio. RSS splits in two: fp32 weights "
            f"are served straight from the mapped safetensors file (file-backed RSS {full['file_rss_mb']:.0f} MiB), while "
            "4-bit weights are private memory (private RSS growth) and the fp32 checkpoint pages read once to quantise "
            f"stay mapped as clean, droppable page cache (file-backed RSS {q4['file_rss_mb']:.0f} MiB).",
        ]
    lines += [
        "",
        "Per user:",
        "",
        "| user | listwise s | generative s | ratio | pointwise cached s | naive s | ratio | fwd GFLOP/s | matmul GFLOP/s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['user']} | {r['listwise_s']:.2f} | {r['generative_s']:.2f} | {r['generative_s'] / r['listwise_s']:.1f}x | "
            f"{r['pointwise_cached_s']:.2f} | {r['pointwise_naive_s']:.2f} | "
            f"{r['pointwise_naive_s'] / r['pointwise_cached_s']:.1f}x | {r['forward_gflops']:.1f} | {r['matmul_gflops']:.1f} |"
        )
    lines += ["", "Generated rankings (base model, zero-shot):", ""]
    for r in rows:
        text = " ".join((r["generative_output"] or "").split())[:240].replace("`", "'")
        lines.append(f"- user {r['user']}: `{text}`")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    raise SystemExit(main())
