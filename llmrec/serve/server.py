"""`serve`: run the app under uvicorn with a drain on SIGTERM/SIGINT.

On the first signal new requests get 503 at once, requests in flight may finish for ``drain_timeout_s``, then the
server stops; a second signal stops it at once.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import uvicorn

from llmrec.errors import LlmrecError
from llmrec.serve.app import create_app
from llmrec.serve.config import ServeConfig

log = logging.getLogger(__name__)


class DrainingServer(uvicorn.Server):
    """uvicorn's server whose exit signal drains first (see the module docstring)."""

    def __init__(self, config: uvicorn.Config, *, state: dict[str, Any], drain_timeout_s: float) -> None:
        super().__init__(config)
        self.state = state
        self.drain_timeout_s = drain_timeout_s
        self._signalled = False

    def handle_exit(self, sig: int, frame: Any) -> None:
        if self._signalled:
            self.force_exit = True
            self.should_exit = True
            return
        self._signalled = True
        self.state["draining"] = True
        log.info("draining: %d request(s) in flight, up to %.0f s", self.state["in_flight"], self.drain_timeout_s)
        threading.Thread(target=self._drain, name="llmrec-drain", daemon=True).start()

    def _drain(self) -> None:
        deadline = time.monotonic() + self.drain_timeout_s
        while self.state["in_flight"] > 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.state["in_flight"]:
            log.warning("drain timeout: %d request(s) still in flight are cut off", self.state["in_flight"])
        self.should_exit = True


def serve(config: ServeConfig) -> None:
    """Serve `config` until a signal drains and stops it (the models load in the background: see ``/readyz``).

    Raises:
        ServeLoadError: the dataset, the first stage or the model could not be loaded (the server stops at once).
    """
    server: DrainingServer | None = None

    def stop(error: str) -> None:  # raised below, once uvicorn has stopped
        if server is not None:
            server.should_exit = True

    app = create_app(config, on_load_error=stop)
    server = DrainingServer(
        uvicorn.Config(app, host=config.host, port=config.port, log_level="info", timeout_graceful_shutdown=1),
        state=app.state.llmrec,
        drain_timeout_s=config.drain_timeout_s,
    )
    auth = "bearer token required" if config.bearer_token else "no API key: keep it on localhost"
    log.info("llmrec serve: http://%s:%d/ (%s); loading %s", config.host, config.port, auth, config.dataset)
    server.run()
    if app.state.llmrec["error"]:
        raise ServeLoadError(app.state.llmrec["error"])


class ServeLoadError(LlmrecError):
    """`llmrec serve` could not load its dataset, first stage or model."""
