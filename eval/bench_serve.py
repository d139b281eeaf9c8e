"""`llmrec serve` under load, over loopback: micro-batching vs one request at a time, latency per stage, memory.

Targets (issue 31): micro-batching throughput with the LLM >= 1.3x one-at-a-time, measured side by side; 5,000
requests at concurrency 16: no 5xx, every request answered or refused with 429, p50/p95/p99 per stage; RSS after
10,000 requests within 5% of RSS after the first 1,000.

Each setting runs `llmrec serve` as its own process on ml-100k (the default pipeline: the zfusion first stage, the
pointwise residual adapter fused with it; and the listwise default adapter, whose card gives the LLM weight 0 so
it answers from the first stage), waits for ``/readyz``, and sends requests for ml-100k users (cycled in a seeded
order, each retrieving its 20 candidates) from `concurrency` client tasks:

1. ``llm-one``: the LLM adapter, ``max_batch: 1`` (one request at a time);
2. ``llm-batched``: the same requests, ``max_batch: 8``, ``batch_window_ms: 10`` (the default); both servers are up
   at once and each round of requests goes to one, then the other (the same machine load for both);
3. ``load``: then, on the batched server, `load_requests` requests through the first-stage-only adapter, with
   the server's RSS read from /proc after the first 1,000 and after the last.

Usage:
    OMP_NUM_THREADS=1 python eval/bench_serve.py --llm-requests 96 --load-requests 10000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

LLM_ADAPTER = "smollm2-ml100k-pointwise-residual"
FIRST_STAGE_ADAPTER = "smollm2-ml100k-listwise-kg"  # its card gives the LLM weight 0: the first stage answers
STAGES = ("queue", "batch", "retrieve", "prompt", "score", "total")
RESULTS = Path(__file__).parent / "results"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """`llmrec serve` in a subprocess with the given settings."""

    def __init__(self, **settings: Any) -> None:
        self.port = _free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="bench-serve-"))
        config = {"dataset": "ml-100k", "adapters": [LLM_ADAPTER, FIRST_STAGE_ADAPTER], "port": self.port,
                  "queue_size": 256, "request_timeout_s": 600, **settings}  # fmt: skip
        (self.folder / "serve.yaml").write_text(json.dumps(config))
        self.log = (self.folder / "server.log").open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "llmrec", "serve", "--config", str(self.folder / "serve.yaml")],
            stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_ready(self, seconds: float = 600) -> float:
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {(self.folder / 'server.log').read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError("server not ready")

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


async def _send(url: str, bodies: list[dict[str, Any]], concurrency: int, on_done: Any = None) -> dict[str, Any]:
    """Send `bodies` to /v1/rank from `concurrency` tasks; statuses, client latency, server stage timings."""
    statuses: dict[int, int] = {}
    latency: list[float] = []
    stages: dict[str, list[float]] = {s: [] for s in STAGES}
    batch_sizes: list[int] = []
    queue = list(reversed(bodies))
    done = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=900, limits=limits) as client:

        async def worker() -> None:
            nonlocal done
            while queue:
                body = queue.pop()
                t0 = time.perf_counter()
                resp = await client.post("/v1/rank", json=body)
                latency.append(time.perf_counter() - t0)
                statuses[resp.status_code] = statuses.get(resp.status_code, 0) + 1
                if resp.status_code == 200:
                    timings = resp.json()["timings"]
                    for s in STAGES:
                        stages[s].append(timings.get(s, 0.0))
                done += 1
                if on_done is not None:
                    on_done(done)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    return {"statuses": statuses, "latency": latency, "stages": stages, "wall_s": wall, "batch_sizes": batch_sizes,
            "requests": len(bodies), "throughput_rps": len(bodies) / wall}  # fmt: skip


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def _summary(run: dict[str, Any]) -> dict[str, Any]:
    return {
        "requests": run["requests"],
        "statuses": run["statuses"],
        "wall_s": round(run["wall_s"], 1),
        "throughput_rps": round(run["throughput_rps"], 3),
        "client_latency_s": {f"p{q}": round(_pct(run["latency"], q), 4) for q in (50, 95, 99)},
        "stages_s": {s: {f"p{q}": round(_pct(v, q), 4) for q in (50, 95, 99)} for s, v in run["stages"].items()},
    }


def _bodies(n: int, adapter: str, seed: int) -> list[dict[str, Any]]:
    from llmrec.data import load_dataset

    users = load_dataset("ml-100k").user_ids
    random.Random(seed).shuffle(users)
    return [{"user_id": users[i % len(users)], "k": 10, "adapter": adapter} for i in range(n)]


def _commit() -> str:
    root = Path(__file__).parents[1]
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True,
                           text=True).stdout.strip()  # fmt: skip
    return head + (" (with uncommitted changes)" if dirty else "")


def _batch_count(url: str) -> tuple[float, float]:
    text = httpx.get(url + "/metrics", timeout=10).text
    count = total = 0.0
    for line in text.splitlines():
        if line.startswith("llmrec_batch_size_count"):
            count = float(line.split()[-1])
        if line.startswith("llmrec_batch_size_sum"):
            total = float(line.split()[-1])
    return count, total


def _phase(server: Server, bodies: list[dict[str, Any]], concurrency: int, rss_at: tuple[int, ...] = (),
           raw: bool = False) -> dict[str, Any]:  # fmt: skip
    """Send `bodies`; the summary (or the raw run), the mean batch size (from /metrics) and the server's RSS after
    `rss_at` answers."""
    rss: dict[str, float] = {}

    def sample(done: int) -> None:
        if done in rss_at:
            rss[str(done)] = round(server.rss_mib(), 1)

    before = _batch_count(server.url)
    run = asyncio.run(_send(server.url, bodies, concurrency, on_done=sample))
    after = _batch_count(server.url)
    run["batches"], run["batched"] = after[0] - before[0], after[1] - before[1]
    if raw:
        return run
    mean_batch = round(run["batched"] / max(1.0, run["batches"]), 2)
    return {**_summary(run), "mean_batch": mean_batch, **({"rss_mib": rss} if rss_at else {})}


def _merged(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One summary of several raw runs (their requests, latencies and walls added up)."""
    merged: dict[str, Any] = {"statuses": {}, "latency": [], "stages": {s: [] for s in STAGES}, "wall_s": 0.0,
                              "requests": 0, "batch_sizes": []}  # fmt: skip
    batches = batched = 0.0
    for run in runs:
        for code, n in run["statuses"].items():
            merged["statuses"][code] = merged["statuses"].get(code, 0) + n
        merged["latency"] += run["latency"]
        for s in STAGES:
            merged["stages"][s] += run["stages"][s]
        merged["wall_s"] += run["wall_s"]
        merged["requests"] += run["requests"]
        batches, batched = batches + run["batches"], batched + run["batched"]
    merged["throughput_rps"] = merged["requests"] / merged["wall_s"]
    return {**_summary(merged), "mean_batch": round(batched / max(1.0, batches), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--llm-requests", type=int, default=96)
    parser.add_argument("--load-requests", type=int, default=10000, help="first-stage-only requests (RSS after "
                        "the first 1,000 and after all)")  # fmt: skip
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=4, help="LLM request rounds, alternating the two servers")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(RESULTS / "bench_serve"))
    args = parser.parse_args()
    report: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}",
        "commit": _commit(),
        "args": vars(args),
    }
    llm_bodies = _bodies(args.llm_requests, LLM_ADAPTER, args.seed)
    settings = {"llm-one": {"max_batch": 1, "batch_window_ms": 0}, "llm-batched": {"max_batch": 8, "batch_window_ms": 10}}
    servers = {label: Server(**opts) for label, opts in settings.items()}
    try:
        ready = {label: round(server.wait_ready(), 1) for label, server in servers.items()}
        for server in servers.values():  # warm-up, not counted
            asyncio.run(_send(server.url, llm_bodies[: args.concurrency], args.concurrency))
        # Side by side: the same round of requests to one server, then the other, round after round, so both see
        # the same machine load; the speed-up is the median of the rounds' throughput ratios.
        size = max(args.concurrency, len(llm_bodies) // args.rounds)
        rounds = [llm_bodies[i : i + size] for i in range(0, len(llm_bodies), size)]
        runs: dict[str, list[dict[str, Any]]] = {label: [] for label in servers}
        ratios = []
        for bodies in rounds:
            for label, server in servers.items():
                runs[label].append(_phase(server, bodies, args.concurrency, raw=True))
            ratios.append(runs["llm-batched"][-1]["throughput_rps"] / runs["llm-one"][-1]["throughput_rps"])
        for label in servers:
            report[label] = {**_merged(runs[label]), "ready_s": ready[label], "settings": settings[label]}
            print(label, json.dumps(report[label]), flush=True)
        report["round_speedups"] = [round(r, 3) for r in ratios]
        report["batching_speedup"] = round(statistics.median(ratios), 3)
        fast = _bodies(args.load_requests, FIRST_STAGE_ADAPTER, args.seed + 1)
        report["load"] = _phase(servers["llm-batched"], fast, args.concurrency, rss_at=(1000, args.load_requests))
        print("load", json.dumps(report["load"]), flush=True)
    finally:
        for server in servers.values():
            server.stop()
    rss = report["load"]["rss_mib"]
    if "1000" in rss and str(args.load_requests) in rss:
        report["rss_growth"] = round(rss[str(args.load_requests)] / rss["1000"] - 1, 4)
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".md").write_text(_markdown(report))
    print(_markdown(report))


def _markdown(r: dict[str, Any]) -> str:
    lines = [
        "# `llmrec serve` under load (ml-100k, loopback)",
        "",
        f"`python eval/bench_serve.py` with {json.dumps(r['args'])} at commit {r['commit']}; {r['machine']}. Each setting is its own "
        "`llmrec serve` process; clients send `POST /v1/rank {user_id, k: 10, adapter}` (20 retrieved candidates).",
        "",
        "| phase | requests | statuses | wall (s) | requests/s | mean batch | client p50 / p95 / p99 (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for label in ("llm-one", "llm-batched", "load"):
        p = r[label]
        c = p["client_latency_s"]
        lines.append(
            f"| {label} | {p['requests']} | {p['statuses']} | {p['wall_s']} | {p['throughput_rps']} | "
            f"{p.get('mean_batch', '')} | {c['p50']} / {c['p95']} / {c['p99']} |"
        )
    lines += ["", f"Micro-batching throughput with the LLM: **{r['batching_speedup']}x** one-at-a-time (median of the rounds "
              f"{r['round_speedups']}, each round sent to both servers in turn; target >= 1.3x).", ""]
    lines += ["Server-side seconds per stage (p50 / p95 / p99):", "", "| phase | " + " | ".join(STAGES) + " |",
              "|---|" + "---|" * len(STAGES)]  # fmt: skip
    for label in ("llm-one", "llm-batched", "load"):
        st = r[label]["stages_s"]
        lines.append(f"| {label} | " + " | ".join(f"{st[s]['p50']} / {st[s]['p95']} / {st[s]['p99']}" for s in STAGES) + " |")
    rss = r["load"]["rss_mib"]
    lines += ["", f"Memory (server RSS, MiB) after requests: {rss}; growth {r.get('rss_growth')} (target within 5%).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
