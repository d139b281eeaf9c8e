"""The model worker: micro-batches by key, a bounded queue, cancelled jobs dropped before any work."""

from __future__ import annotations

import threading
import time

import pytest

from llmrec.serve.worker import ModelWorker, QueueFullError, WorkerStoppedError


class Recorder:
    """A batch function that records the batches it ran (and can be held to let a queue build up)."""

    def __init__(self) -> None:
        self.batches: list[tuple[object, list[int]]] = []
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, key, payloads):
        self.gate.wait(5)
        self.batches.append((key, list(payloads)))
        return [p * 10 if p >= 0 else ValueError(f"bad payload {p}") for p in payloads]


def test_jobs_arriving_within_the_window_share_a_batch_grouped_by_key():
    run = Recorder()
    run.gate.clear()  # hold the first batch so the others queue up behind it
    worker = ModelWorker(run, window_s=0.05, max_batch=3, queue_size=16).start()
    try:
        first = worker.submit("a", 0)
        time.sleep(0.2)  # the worker holds job 0 in its batch (window over, gate closed)
        jobs = [worker.submit(key, n) for n, key in enumerate(["a", "b", "a", "a", "b", "a"], start=1)]
        run.gate.set()
        results = [j.future.result(5) for j in [first, *jobs]]
    finally:
        worker.stop(5)
    assert results == [n * 10 for n in range(7)]
    assert run.batches[0] == ("a", [0])
    rest = run.batches[1:]
    assert all(len(p) <= 3 for _, p in rest)  # max_batch
    assert sorted(n for _, p in rest for n in p) == list(range(1, 7))  # every job ran exactly once
    assert all({1: "a", 2: "b", 3: "a", 4: "a", 5: "b", 6: "a"}[n] == key for key, p in rest for n in p)
    assert len(rest) < 6  # shared batches, not one job at a time
    assert [j.batch_size for j in jobs if j.payload in rest[0][1]] == [len(rest[0][1])] * len(rest[0][1])


def test_a_job_cancelled_before_its_batch_starts_costs_nothing():
    run = Recorder()
    run.gate.clear()
    worker = ModelWorker(run, window_s=0.0, max_batch=1, queue_size=4).start()
    try:
        busy = worker.submit("a", 1)
        time.sleep(0.1)
        dropped = worker.submit("a", 2)
        assert dropped.future.cancel()  # the client went away, or its timeout passed
        kept = worker.submit("a", 3)
        run.gate.set()
        assert (busy.future.result(5), kept.future.result(5)) == (10, 30)
    finally:
        worker.stop(5)
    assert [p for _, p in run.batches] == [[1], [3]]


def test_a_full_queue_refuses_at_once_and_errors_reach_their_own_job():
    run = Recorder()
    run.gate.clear()
    worker = ModelWorker(run, window_s=0.0, max_batch=1, queue_size=2).start()
    try:
        running = worker.submit("a", 1)
        time.sleep(0.1)
        waiting = [worker.submit("a", -1), worker.submit("a", 2)]
        with pytest.raises(QueueFullError, match="holds 2 requests"):
            worker.submit("a", 3)
        assert worker.depth == 2
        run.gate.set()
        assert running.future.result(5) == 10
        with pytest.raises(ValueError, match="bad payload -1"):
            waiting[0].future.result(5)
        assert waiting[1].future.result(5) == 20
    finally:
        worker.stop(5)
    with pytest.raises(WorkerStoppedError):
        worker.submit("a", 4)


def test_a_batch_function_that_raises_fails_every_job_of_its_batch_and_the_worker_goes_on():
    calls = []

    def run(key, payloads):
        calls.append(list(payloads))
        if len(calls) == 1:
            raise RuntimeError("model exploded")
        return payloads

    worker = ModelWorker(run, window_s=0.0, max_batch=4, queue_size=4).start()
    try:
        with pytest.raises(RuntimeError, match="exploded"):
            worker.submit("a", 1).future.result(5)
        assert worker.submit("a", 2).future.result(5) == 2
    finally:
        worker.stop(5)
