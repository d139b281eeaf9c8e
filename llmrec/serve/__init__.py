"""`llmrec serve`: the reranker as an HTTP service (FastAPI): one model worker batches requests into the same
`Reranker` path the Python API, the CLI and the evaluation harness use.

Example:
    >>> from llmrec.serve import ServeConfig, create_app
    >>> app = create_app(ServeConfig(dataset="ml-100k"))  # doctest: +SKIP  (uvicorn.run(app) serves it)
"""

from __future__ import annotations

from llmrec.serve.app import create_app
from llmrec.serve.config import ServeConfig
from llmrec.serve.service import RankJob, RankService, RequestError
from llmrec.serve.worker import ModelWorker, QueueFullError

__all__ = ["ModelWorker", "QueueFullError", "RankJob", "RankService", "RequestError", "ServeConfig", "create_app"]
