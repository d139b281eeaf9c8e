"""The model worker: one thread that owns the model and scores requests in micro-batches.

Requests are queued (bounded: a full queue refuses at once); the worker takes the first waiting request, waits up
to `window_s` for more (up to `max_batch`), groups them by key (the adapter, and whether candidates were given) and
runs each group through one call of `run_batch`, so their prompts share forward passes. A request whose future was
cancelled before its batch started (its client went away, or it timed out) is dropped without any work. The event
loop of the web server never waits on the model: it awaits the request's `concurrent.futures.Future`.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


class QueueFullError(RuntimeError):
    """The worker's queue is full: the request is refused (HTTP 429)."""


class WorkerStoppedError(RuntimeError):
    """The worker is stopping or stopped: no new requests (HTTP 503)."""


@dataclass
class Job:
    """One queued request: what to run, its batching key and its future (the result or the exception)."""

    key: Hashable
    payload: Any
    future: Future = field(default_factory=Future)
    enqueued: float = field(default_factory=time.perf_counter)
    #: Seconds the job waited in the queue before its batch started (set by the worker).
    queued_s: float = 0.0
    #: How many requests shared its batch, and the batch's wall seconds (set by the worker).
    batch_size: int = 0
    batch_s: float = 0.0


#: `run_batch(key, payloads)` returns one result or exception per payload, in order.
RunBatch = Callable[[Hashable, Sequence[Any]], Sequence[Any]]


class ModelWorker:
    """Runs `run_batch` on micro-batches of submitted jobs in one background thread.

    Args:
        run_batch: scores a batch of payloads that share a key; returns a result or an exception per payload (an
            exception raised by the call itself fails every job of the batch).
        window_s: after the first job of a batch, wait this long for more.
        max_batch: the most jobs in one batch.
        queue_size: the most jobs waiting; `submit` raises `QueueFullError` beyond it.
        on_batch: called after each batch with ``(key, jobs, seconds)`` (metrics).
    """

    def __init__(
        self,
        run_batch: RunBatch,
        *,
        window_s: float = 0.01,
        max_batch: int = 8,
        queue_size: int = 64,
        on_batch: Callable[[Hashable, list[Job], float], None] | None = None,
    ) -> None:
        self.run_batch = run_batch
        self.window_s = window_s
        self.max_batch = max_batch
        self.on_batch = on_batch
        self._queue: queue.Queue[Job] = queue.Queue(maxsize=queue_size)
        self._held: list[Job] = []  # taken from the queue but of another key than the batch being run
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="llmrec-model-worker", daemon=True)
        self._busy = threading.Event()

    # -- the server's side ---------------------------------------------------------------------------------------

    def start(self) -> ModelWorker:
        self._thread.start()
        return self

    def submit(self, key: Hashable, payload: Any) -> Job:
        """Queue a job; raises `QueueFullError` when the queue is full, `WorkerStoppedError` when stopping."""
        if self._stopping.is_set():
            raise WorkerStoppedError("the model worker is shutting down")
        job = Job(key, payload)
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise QueueFullError(f"the queue holds {self._queue.maxsize} requests already") from None
        return job

    @property
    def depth(self) -> int:
        """Jobs waiting (not yet in a batch)."""
        return self._queue.qsize() + len(self._held)

    @property
    def idle(self) -> bool:
        """Nothing waiting and no batch running."""
        return self.depth == 0 and not self._busy.is_set()

    def stop(self, timeout: float | None = None) -> None:
        """Stop taking jobs, finish the batch in progress, cancel what still waits, and join the thread."""
        self._stopping.set()
        self._thread.join(timeout)
        for job in self._drain_waiting():
            job.future.cancel()

    # -- the worker thread ---------------------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stopping.is_set():
            batch = self._next_batch()
            if not batch:
                continue
            self._busy.set()
            try:
                self._run(batch)
            finally:
                self._busy.clear()

    def _take(self, timeout: float) -> Job | None:
        if self._held:
            return self._held.pop(0)
        try:
            return self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()
        except queue.Empty:
            return None

    def _next_batch(self) -> list[Job]:
        """The first live job and up to `max_batch` - 1 more of its key that arrive within the window."""
        first = self._take(0.1)
        while first is not None and not _claim(first):
            first = self._take(0.0)
        if first is None:
            return []
        batch, other = [first], []
        deadline = time.perf_counter() + self.window_s
        while len(batch) < self.max_batch:
            job = self._take(max(0.0, deadline - time.perf_counter()))
            if job is None:
                break
            if job.key != first.key:
                other.append(job)
            elif _claim(job):
                batch.append(job)
        self._held = other + self._held
        return batch

    def _run(self, batch: list[Job]) -> None:
        started = time.perf_counter()
        for job in batch:
            job.queued_s = started - job.enqueued
            job.batch_size = len(batch)
        try:
            results = list(self.run_batch(batch[0].key, [job.payload for job in batch]))
            if len(results) != len(batch):
                raise RuntimeError(f"run_batch returned {len(results)} results for {len(batch)} jobs")
        except BaseException as exc:  # noqa: BLE001 - every job of the batch gets the error
            log.exception("batch of %d failed", len(batch))
            results = [exc] * len(batch)
        seconds = time.perf_counter() - started
        for job, result in zip(batch, results):
            job.batch_s = seconds
            if isinstance(result, BaseException):
                job.future.set_exception(result)
            else:
                job.future.set_result(result)
        if self.on_batch is not None:
            self.on_batch(batch[0].key, batch, seconds)

    def _drain_waiting(self) -> list[Job]:
        jobs, self._held = list(self._held), []
        while True:
            try:
                jobs.append(self._queue.get_nowait())
            except queue.Empty:
                return jobs


def _claim(job: Job) -> bool:
    """Mark the job running; False when it was cancelled (timed out, client gone): it is then dropped."""
    return job.future.set_running_or_notify_cancel()
