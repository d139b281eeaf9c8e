"""SIGTERM drains: requests in flight finish, new ones get 503, the server stops within the drain timeout."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
import uvicorn

from llmrec.serve import create_app
from llmrec.serve.server import DrainingServer


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} not ready within {seconds} s")


def test_a_drain_finishes_the_request_in_flight_and_refuses_new_ones(service, slowed_by):
    port = _free_port()
    config = replace(service.config, port=port, drain_timeout_s=10)
    app = create_app(config, slowed_by(1.0))
    server = DrainingServer(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"),
        state=app.state.llmrec, drain_timeout_s=config.drain_timeout_s,
    )  # fmt: skip
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    _wait_ready(url, 30)
    answers: list[int] = []
    slow = threading.Thread(
        target=lambda: answers.append(httpx.post(url + "/v1/rank", json={"history": ["1"]}, timeout=30).status_code)
    )
    slow.start()
    time.sleep(0.3)  # the request is in its (slowed) batch
    server.handle_exit(signal.SIGTERM, None)
    refused = httpx.post(url + "/v1/rank", json={"history": ["2"]}, timeout=10)
    assert refused.status_code == 503 and refused.json()["field"] == "server"
    slow.join(30)
    thread.join(15)
    assert answers == [200]  # the request in flight finished
    assert not thread.is_alive()  # and the server stopped


@pytest.mark.slow
def test_llmrec_serve_exits_cleanly_on_sigterm(served, tmp_path):
    model_dir, folders = served
    port = _free_port()
    config = tmp_path / "serve.yaml"
    data = Path(__file__).parents[1] / "data" / "kg_tiny"
    config.write_text(
        f"dataset: {data}\nadapters: [{folders['ranker']}]\nport: {port}\n"
        f"reranker: {{model: {model_dir}, retriever: cooc, n_candidates: 4}}\ndrain_timeout_s: 5\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "llmrec", "serve", "--config", str(config)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_ready(url, 120)
        resp = httpx.post(url + "/v1/rank", json={"history": ["1", "2"], "k": 2}, timeout=30)
        assert resp.status_code == 200 and len(resp.json()["items"]) == 2
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0, out
    assert "draining" in out
