"""Test helper: run an app under uvicorn (`DrainingServer`) on a free loopback port, in a thread."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, seconds: float) -> None:
    """Until ``/readyz`` answers 200 (AssertionError after `seconds`)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} not ready within {seconds} s")


@contextmanager
def live_server(app: Any, port: int, drain_timeout_s: float = 10) -> Iterator[tuple[str, Any, threading.Thread]]:
    """(url, server, thread) of `app` served until the block ends (or the test stops it)."""
    import uvicorn

    from llmrec.serve.server import DrainingServer

    server = DrainingServer(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"),
                            state=app.state.llmrec, drain_timeout_s=drain_timeout_s)  # fmt: skip
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, 30)
        yield url, server, thread
    finally:
        server.should_exit = True
        thread.join(15)
