"""Prometheus metrics of the service, on a registry of its own (one per app, so tests can run several)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

#: Per-stage latency buckets (seconds): milliseconds of the first stage up to the LLM's seconds on a CPU.
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

#: The stages a request's time is split into (`RankedList.timings` plus the wait for the model worker).
STAGES = ("queue", "batch", "retrieve", "prompt", "score", "total")


class ServeMetrics:
    """Requests by endpoint and status, per-stage latency, batch sizes, queue depth, LLM tokens."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "llmrec_requests", "Requests answered, by endpoint and HTTP status", ["endpoint", "status"],
            registry=self.registry,
        )  # fmt: skip
        self.stage_seconds = Histogram(
            "llmrec_stage_seconds", "Seconds per request and stage: queue, batch (the shared batch's wall time), the request's share "
            "of it (retrieve, prompt, score), total (queue + batch)",
            ["stage"], buckets=_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.batch_size = Histogram(
            "llmrec_batch_size", "Requests per model batch", buckets=(1, 2, 4, 8, 16, 32, 64), registry=self.registry
        )
        self.queue_depth = Gauge("llmrec_queue_depth", "Requests waiting for the model worker", registry=self.registry)
        self.in_flight = Gauge("llmrec_in_flight", "Requests being handled", registry=self.registry)
        self.tokens = Counter(
            "llmrec_llm_tokens", "LLM tokens: prompt (as rendered) and encoded (run through the model)", ["kind"],
            registry=self.registry,
        )  # fmt: skip
        self.dropped = Counter(
            "llmrec_dropped", "Requests dropped before their batch ran, by reason", ["reason"], registry=self.registry
        )

    def observe_stages(self, timings: dict[str, float]) -> None:
        for stage in STAGES:
            if stage in timings:
                self.stage_seconds.labels(stage).observe(timings[stage])

    def render(self) -> bytes:
        return generate_latest(self.registry)
