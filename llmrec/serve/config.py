"""`ServeConfig`: what `llmrec serve` loads and how it admits, batches and bounds requests (a YAML file).

Example (``serve.yaml``; every key optional)::

    dataset: ml-100k                 # a known name, a folder of RecBole atomic files
    adapters: [smollm2-ml100k-pointwise-residual, smollm2-ml100k-listwise-kg]   # the first is the default
    reranker: {n_candidates: 20}     # other RerankerConfig fields, shared by every adapter
    batch_window_ms: 10              # wait this long for more requests to share forward passes
    max_batch: 8                     # users per batch
    queue_size: 64                   # requests waiting beyond this get 429
    request_timeout_s: 30            # a request not answered by then gets 504 (its work is dropped)
    api_key_env: LLMREC_API_KEY      # bearer token read from this environment variable (or api_key: ...)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmrec.config import build, check_fields, read_config_file, require
from llmrec.errors import ConfigError


@dataclass(frozen=True)
class ServeConfig:
    """The service's settings; unknown keys and bad values raise `ConfigError` naming the key.

    Args:
        dataset: the catalogue and interactions served (name or folder); user ids of requests are its users.
        adapters: adapters requests may name (shipped names or folders), all on one base model; the first serves
            requests that name none. Empty: the default adapter of `reranker`'s mode.
        reranker: `RerankerConfig` fields shared by every adapter (not ``adapter``).
        host, port: where to listen (127.0.0.1 by default: put a proxy in front to expose it).
        batch_window_ms: how long the model worker waits for more requests after the first of a batch.
        max_batch: the most requests scored in one batch (per adapter).
        queue_size: the most requests waiting for the model worker; more get 429 with ``Retry-After``.
        request_timeout_s: a request not answered in this time gets 504; if its batch has not started, its work
            is dropped.
        drain_timeout_s: on SIGTERM, how long in-flight requests may take to finish (new ones get 503).
        api_key, api_key_env: a bearer token required on every endpoint but ``/healthz`` (`api_key_env` names an
            environment variable holding it). Neither: no authentication.
        max_body_bytes: larger request bodies get 413.
        max_history, max_candidates, max_k: list and ``k`` bounds of a request (422 beyond them).
    """

    dataset: str = "ml-100k"
    adapters: tuple[str, ...] = ()
    reranker: dict[str, Any] = field(default_factory=dict)
    host: str = "127.0.0.1"
    port: int = 8000
    batch_window_ms: float = 10.0
    max_batch: int = 8
    queue_size: int = 64
    request_timeout_s: float = 30.0
    drain_timeout_s: float = 30.0
    api_key: str | None = None
    api_key_env: str | None = None
    max_body_bytes: int = 1_000_000
    max_history: int = 1000
    max_candidates: int = 200
    max_k: int = 200

    def __post_init__(self) -> None:
        check_fields(self)
        for key in ("max_batch", "queue_size", "max_body_bytes", "max_history", "max_candidates", "max_k"):
            require(getattr(self, key) >= 1, key, "must be >= 1")
        require(0 <= self.port <= 65535, "port", "must be in 0..65535")
        require(self.batch_window_ms >= 0, "batch_window_ms", "must be >= 0")
        require(self.request_timeout_s > 0, "request_timeout_s", "must be > 0")
        require(self.drain_timeout_s >= 0, "drain_timeout_s", "must be >= 0")
        require("adapter" not in self.reranker, "reranker.adapter", "is set by `adapters` (the first is the default)")
        if self.api_key is not None and self.api_key_env is not None:
            raise ConfigError("give api_key or api_key_env, not both")
        if self.api_key_env is not None and not os.environ.get(self.api_key_env):
            raise ConfigError(f"api_key_env: the environment variable {self.api_key_env} is not set or empty")

    @property
    def bearer_token(self) -> str | None:
        """The API key requests must present (None: no authentication)."""
        if self.api_key_env is not None:
            return os.environ[self.api_key_env]
        return self.api_key or None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ServeConfig:
        return build(cls, data)

    @classmethod
    def load(cls, path: str | Path) -> ServeConfig:
        """Read a YAML (or .json) file; a missing file, one that does not parse or a bad key raises `ConfigError`
        naming it."""
        data = read_config_file(path, "serve config")
        try:
            return cls.from_dict(data)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
