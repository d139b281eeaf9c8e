"""SIGTERM drains: requests in flight finish, new ones get 503, the server stops within the drain timeout."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from live_server import free_port, live_server, wait_ready

from llmrec.serve import create_app


def test_a_drain_finishes_the_request_in_flight_and_refuses_new_ones(service, slowed_by):
    port = free_port()
    app = create_app(replace(service.config, port=port, drain_timeout_s=10), slowed_by(1.0))
    with live_server(app, port) as (url, server, thread):
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
    port = free_port()
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
        wait_ready(url, 120)
        resp = httpx.post(url + "/v1/rank", json={"history": ["1", "2"], "k": 2}, timeout=30)
        assert resp.status_code == 200 and len(resp.json()["items"]) == 2
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0, out
    assert "draining" in out


def test_a_client_that_goes_away_before_its_batch_starts_costs_nothing(service, slowed_by):
    port = free_port()
    slowed = slowed_by(1.5)
    app = create_app(replace(service.config, port=port, max_batch=1, batch_window_ms=0), slowed)
    with live_server(app, port) as (url, _, _):
        busy = threading.Thread(target=lambda: httpx.post(url + "/v1/rank", json={"history": ["1"]}, timeout=30))
        busy.start()
        time.sleep(0.3)  # the first request holds the model worker
        with pytest.raises(httpx.ReadTimeout):  # this client gives up while its request still waits in the queue
            httpx.post(url + "/v1/rank", json={"history": ["2"]}, timeout=0.5)
        busy.join(30)
        time.sleep(2.5)  # had it been run, its (slowed) batch would be over by now
        assert [job.history for job in slowed.ranked] == [("1",)]  # the abandoned request never ran
        assert 'llmrec_dropped_total{reason="client_gone"} 1.0' in httpx.get(url + "/metrics").text


def test_llmrec_serve_stops_with_a_clear_error_when_it_cannot_load(tmp_path, capsys):
    from llmrec.cli import main

    data = Path(__file__).parents[1] / "data" / "kg_tiny"
    status = main(["serve", "--dataset", str(data), "--adapter", str(tmp_path / "no-such-adapter"),
                   "--port", str(free_port())])  # fmt: skip
    assert status == 2
    assert "no-such-adapter" in capsys.readouterr().err
