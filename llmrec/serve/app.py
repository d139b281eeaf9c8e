"""The HTTP service: FastAPI routes over `RankService` and the `ModelWorker`.

Routes: ``POST /v1/rank`` (a user's ranked items with scores, facts and per-stage timings), ``POST /v1/rerank``
(the rerank shape of Cohere/Jina/vLLM: the history is the query, candidate items the documents), ``GET /v1/info``,
``GET /healthz`` (alive), ``GET /readyz`` (models loaded, not draining), ``GET /metrics`` (Prometheus) and ``GET /``
(a one-page inspector). Every refusal is a 4xx whose body names the field: ``{"error": "k: ...", "field": "k",
"errors": [...]}``.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
import threading
import uuid
from contextlib import asynccontextmanager
from importlib import resources
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr
from starlette.exceptions import HTTPException as StarletteHTTPException

from llmrec.errors import LlmrecError
from llmrec.serve.config import ServeConfig
from llmrec.serve.metrics import ServeMetrics
from llmrec.serve.service import RankJob, RankService, RequestError
from llmrec.serve.worker import Job, ModelWorker, QueueFullError, WorkerStoppedError

if TYPE_CHECKING:
    from collections.abc import Callable

    from llmrec.ranking import RankedList

log = logging.getLogger(__name__)

ItemId = StrictStr | StrictInt  # ids are strings; JSON numbers are taken as their decimal text


class RankBody(BaseModel):
    """``POST /v1/rank``: whose history (a known user, or the item ids themselves), which candidates, how many."""

    model_config = ConfigDict(extra="forbid")

    user_id: ItemId | None = Field(None, description="a user of the served dataset (their whole history)")
    history: list[ItemId] | None = Field(None, description="item ids, oldest first (instead of user_id)")
    k: StrictInt = Field(10, ge=1, description="how many items to return")
    candidates: list[ItemId] | None = Field(None, description="rank these items (default: retrieve candidates)")
    adapter: StrictStr | None = Field(None, description="one of the served adapters (default: the first)")
    explain: bool = Field(False, description="add the facts, the history, the first stage's list and the prompts")


class RerankBody(BaseModel):
    """``POST /v1/rerank``: the common rerank request, for recommendation."""

    model_config = ConfigDict(extra="forbid")

    query: list[ItemId] | ItemId = Field(description="the history as item ids (oldest first), or a user id")
    documents: list[ItemId] = Field(description="candidate item ids")
    top_n: StrictInt | None = Field(None, ge=1)
    model: StrictStr | None = Field(None, description="a served adapter (default: the first)")
    return_documents: bool = False


def create_app(
    config: ServeConfig, service: RankService | None = None, *, on_load_error: Callable[[str], None] | None = None
) -> FastAPI:
    """The app; with no `service`, `RankService(config)` loads in the background at startup (``/readyz`` says
    when it is ready; ``/healthz`` answers meanwhile). A failed load is reported by ``/readyz`` and every request,
    and passed to `on_load_error` (`llmrec serve` stops with the error)."""
    metrics = ServeMetrics()
    state: dict[str, Any] = {"service": service, "worker": None, "error": None, "draining": False, "in_flight": 0}
    token = config.bearer_token

    def start_worker(svc: RankService) -> None:
        def on_batch(key: Any, jobs: list[Job], seconds: float) -> None:
            metrics.batch_size.observe(len(jobs))

        worker = ModelWorker(
            lambda key, jobs: svc.rank_group(key, jobs),
            window_s=config.batch_window_ms / 1000,
            max_batch=config.max_batch,
            queue_size=config.queue_size,
            on_batch=on_batch,
        )
        state["worker"] = worker.start()
        state["service"] = svc

    def load() -> None:
        try:
            start_worker(RankService(config))
        except Exception as exc:  # noqa: BLE001 - reported by /readyz and every request
            log.debug("loading the service failed", exc_info=True)
            state["error"] = str(exc) if isinstance(exc, LlmrecError) else f"{type(exc).__name__}: {exc}"
            if on_load_error is not None:
                on_load_error(state["error"])

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        if service is not None:
            start_worker(service)
        else:
            threading.Thread(target=load, name="llmrec-load", daemon=True).start()
        yield
        worker = state["worker"]
        if worker is not None:
            await asyncio.to_thread(worker.stop, config.drain_timeout_s)

    app = FastAPI(title="llmrec", description="LLM reranking for recommendation", lifespan=lifespan)
    app.state.llmrec = state
    app.state.metrics = metrics

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = []
        for err in exc.errors():
            loc = [str(p) for p in err.get("loc", ()) if p != "body"]
            if err.get("type") == "json_invalid":  # loc holds the character position
                where = f" at character {loc[0]}" if loc else ""
                errors.append({"field": "body", "message": f"is not valid JSON{where}: {err.get('msg')}"})
            else:
                errors.append({"field": ".".join(loc) or "body", "message": err.get("msg", "invalid")})
        first = errors[0] if errors else {"field": "body", "message": "invalid request"}
        return JSONResponse(
            {"error": f"{first['field']}: {first['message']}", "field": first["field"], "errors": errors},
            status_code=422,
        )

    # -- routes ------------------------------------------------------------------------------------------------

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        if state["error"]:
            return JSONResponse({"status": "failed", "error": state["error"]}, status_code=503)
        if state["service"] is None or state["worker"] is None:
            return JSONResponse({"status": "loading"}, status_code=503)
        return JSONResponse({"status": "ready", "adapters": list(state["service"].rerankers)})

    @app.get("/metrics")
    async def prometheus() -> Response:
        worker = state["worker"]
        metrics.queue_depth.set(worker.depth if worker is not None else 0)
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/v1/info")
    async def info() -> dict[str, Any]:
        svc = _ready(state)
        users = svc.dataset.user_ids
        return {
            "dataset": svc.dataset.name,
            "users": len(users),
            "items": len(svc.dataset.items),
            "sample_users": users[:50],
            "adapters": {
                name: {"mode": r.mode, "llm_skipped": r.llm_skipped, "fusion": r.fusion.to_dict() if r.fusion else None}
                for name, r in svc.rerankers.items()
            },
            "batching": {"window_ms": config.batch_window_ms, "max_batch": config.max_batch,
                         "queue_size": config.queue_size},
        }  # fmt: skip

    @app.post("/v1/rank")
    async def rank(body: RankBody, request: Request) -> JSONResponse:
        svc = _ready(state)
        _check_sizes(config, history=body.history, candidates=body.candidates, k=body.k)
        job = svc.check(
            user_id=None if body.user_id is None else str(body.user_id),
            history=None if body.history is None else [str(i) for i in body.history],
            candidates=None if body.candidates is None else [str(i) for i in body.candidates],
            k=body.k,
            adapter=body.adapter,
        )
        ranked, done = await _run(state, metrics, config, job, request)
        return JSONResponse(_rank_response(svc, job, ranked, done, body.explain))

    @app.post("/v1/rerank")
    async def rerank(body: RerankBody, request: Request) -> JSONResponse:
        svc = _ready(state)
        is_user = not isinstance(body.query, list)
        query_list = body.query if isinstance(body.query, list) else None
        _check_sizes(config, history=query_list, candidates=body.documents, k=body.top_n, names=("query", "documents", "top_n"))
        documents = [str(d) for d in body.documents]
        job = svc.check(
            user_id=str(body.query) if is_user else None,
            history=None if query_list is None else [str(i) for i in query_list],
            candidates=documents,
            k=body.top_n or len(documents),
            adapter=body.model,
            history_field="query",
            candidates_field="documents",
            user_field="query",
        )
        ranked, done = await _run(state, metrics, config, job, request)
        top = ranked.top(job.k)
        index = {d: n for n, d in enumerate(documents)}
        results = []
        for item_id, score in zip(top.item_ids, top.scores):
            row: dict[str, Any] = {"index": index[item_id], "relevance_score": _num(score)}
            if body.return_documents:
                row["document"] = {"text": svc.dataset.item(item_id).display_name}
            results.append(row)
        return JSONResponse({
            "id": str(uuid.uuid4()),
            "model": job.adapter,
            "results": results,
            "usage": {"prompt_tokens": ranked.prompt_tokens, "total_tokens": ranked.prompt_tokens},
            "meta": {"llm_skipped": ranked.llm_skipped, "timings": _timings(ranked, done)},
        })  # fmt: skip

    @app.get("/", response_class=HTMLResponse)
    async def inspector() -> HTMLResponse:
        page = resources.files("llmrec.serve").joinpath("inspector.html").read_text(encoding="utf-8")
        return HTMLResponse(page)

    @app.exception_handler(RequestError)
    async def refused(request: Request, exc: RequestError) -> JSONResponse:
        return _error(exc.status, exc.field, exc.message, getattr(exc, "headers", None))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        field = "body" if exc.status_code == 413 else "path" if exc.status_code in (404, 405) else "request"
        return _error(exc.status_code, field, str(exc.detail))

    app.add_middleware(_Guard, state=state, metrics=metrics, token=token, limit=config.max_body_bytes)
    return app


class _Guard:
    """Before any route: refuses while draining (503), without the API key (401) and bodies over `limit` bytes
    (413, also while a body without Content-Length streams in); counts requests in flight and answers by status.

    A plain ASGI middleware (not `BaseHTTPMiddleware`), so that a route sees its client's disconnect."""

    def __init__(self, app: Any, *, state: dict[str, Any], metrics: ServeMetrics, token: str | None, limit: int) -> None:
        self.app, self.state, self.metrics, self.token, self.limit = app, state, metrics, token, limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        path = scope["path"]
        endpoint = path if path in _ENDPOINTS else "other"
        refusal = None
        length = request.headers.get("content-length")
        if self.state["draining"] and path not in ("/healthz", "/metrics"):
            refusal = _error(503, "server", "the server is shutting down", {"Retry-After": "5"})
        elif self.token is not None and path != "/healthz" and not _authorized(request, self.token):
            refusal = _error(401, "authorization", "missing or wrong API key (Authorization: Bearer KEY)",
                             {"WWW-Authenticate": "Bearer"})  # fmt: skip
        elif length is not None and (not length.isdigit() or int(length) > self.limit):
            refusal = _error(413, "body", f"larger than {self.limit} bytes")
        if refusal is not None:
            self.metrics.requests.labels(endpoint, str(refusal.status_code)).inc()
            await refusal(scope, receive, send)
            return
        seen = 0
        status = 500

        async def bounded() -> Any:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise StarletteHTTPException(413, f"larger than {self.limit} bytes")
            return message

        async def sending(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        self.state["in_flight"] += 1
        self.metrics.in_flight.inc()
        try:
            await self.app(scope, bounded, sending)
        finally:
            self.state["in_flight"] -= 1
            self.metrics.in_flight.dec()
            self.metrics.requests.labels(endpoint, str(status)).inc()


_ENDPOINTS = ("/v1/rank", "/v1/rerank", "/v1/info", "/healthz", "/readyz", "/metrics", "/")


def _error(status: int, field: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        {"error": f"{field}: {message}", "field": field, "errors": [{"field": field, "message": message}]},
        status_code=status,
        headers=headers,
    )


def _authorized(request: Request, token: str) -> bool:
    given = request.headers.get("authorization", "")
    scheme, _, value = given.partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode()):
        return True
    # the inspector page is opened by a browser, which cannot send the header: ?key= on "/" only
    key = request.query_params.get("key")
    return request.url.path == "/" and key is not None and hmac.compare_digest(key.encode(), token.encode())


def _ready(state: dict[str, Any]) -> RankService:
    if state["error"]:
        raise RequestError("server", f"the service failed to load: {state['error']}", status=503)
    if state["service"] is None or state["worker"] is None:
        raise RequestError("server", "still loading the models; see /readyz", status=503)
    return state["service"]  # type: ignore[no-any-return]


def _check_sizes(config: ServeConfig, *, history: Any, candidates: Any, k: int | None,
                 names: tuple[str, str, str] = ("history", "candidates", "k")) -> None:  # fmt: skip
    if history is not None and len(history) > config.max_history:
        raise RequestError(names[0], f"holds {len(history)} items, more than this server's max_history {config.max_history}")
    if candidates is not None and len(candidates) > config.max_candidates:
        raise RequestError(
            names[1], f"holds {len(candidates)} items, more than this server's max_candidates {config.max_candidates}"
        )
    if k is not None and k > config.max_k:
        raise RequestError(names[2], f"must be <= {config.max_k}, got {k}")


async def _run(
    state: dict[str, Any], metrics: ServeMetrics, config: ServeConfig, job: RankJob, request: Request
) -> tuple[RankedList, Job]:
    """Queue `job` on the model worker and wait for it: 429 when the queue is full, 504 past the timeout, and
    nothing run when the client goes away before its batch starts."""
    worker: ModelWorker = state["worker"]
    try:
        queued = worker.submit(job.batch_key, job)
    except QueueFullError as exc:
        metrics.dropped.labels("queue_full").inc()
        retry = max(1, math.ceil(worker.depth / max(1, config.max_batch)))
        raise _Refusal(429, "server", f"{exc}; retry later", {"Retry-After": str(retry)}) from None
    except WorkerStoppedError as exc:
        raise _Refusal(503, "server", str(exc), {"Retry-After": "5"}) from None
    future = asyncio.wrap_future(queued.future)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        done, _ = await asyncio.wait({future, watcher}, timeout=config.request_timeout_s,
                                     return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
        if future not in done:
            future.cancel()  # dropped if its batch has not started; a running batch finishes, unread
            if watcher in done:
                metrics.dropped.labels("client_gone").inc()
                raise _Refusal(499, "client", "closed the connection before the answer")
            metrics.dropped.labels("timeout").inc()
            raise _Refusal(504, "server", f"no answer within request_timeout_s={config.request_timeout_s}")
    finally:
        watcher.cancel()
    try:
        ranked: RankedList = future.result()
    except RequestError:
        raise
    except LlmrecError as exc:
        raise RequestError("request", str(exc)) from None
    metrics.observe_stages(_timings(ranked, queued))
    metrics.tokens.labels("prompt").inc(ranked.prompt_tokens)
    metrics.tokens.labels("encoded").inc(ranked.encoded_tokens)
    return ranked, queued


async def _disconnected(request: Request) -> None:
    while not await request.is_disconnected():
        await asyncio.sleep(0.05)


class _Refusal(RequestError):
    def __init__(self, status: int, field: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(field, message, status)
        self.headers = headers


def _timings(ranked: RankedList, job: Job) -> dict[str, float]:
    """Seconds: ``queue`` (waiting for the model worker), ``batch`` (the batch it shared, wall time), ``total``
    (the two: what the request waited for), and its own share of the batch's work: ``retrieve``, ``prompt``,
    ``score`` (`RankedList.timings`)."""
    timings = {k: round(float(v), 6) for k, v in ranked.timings.items() if k != "total"}
    timings["queue"] = round(job.queued_s, 6)
    timings["batch"] = round(job.batch_s, 6)
    timings["total"] = round(job.queued_s + job.batch_s, 6)
    timings["batch_size"] = job.batch_size
    return timings


def _num(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _rank_response(svc: RankService, job: RankJob, ranked: RankedList, done: Job, explain: bool) -> dict[str, Any]:
    ds = svc.dataset
    top = ranked.top(job.k)
    items = []
    for item_id, score, rank in zip(top.item_ids, top.scores, top.ranks):
        row: dict[str, Any] = {
            "item_id": item_id,
            "title": ds.item(item_id).display_name,
            "rank": rank,
            "score": _num(score),
            "first_stage_score": _num(ranked.first_stage_scores[item_id]) if item_id in ranked.first_stage_scores else None,
            "llm_score": _num(ranked.llm_scores[item_id]) if item_id in ranked.llm_scores else None,
        }  # fmt: skip
        if explain:
            row["facts"] = list(ranked.facts.get(item_id, ()))
        items.append(row)
    out: dict[str, Any] = {
        "adapter": job.adapter,
        "mode": ranked.mode,
        "items": items,
        "llm_skipped": ranked.llm_skipped,
        "candidate_source": ranked.candidate_source,
        "timings": _timings(ranked, done),
        "tokens": {"prompt": ranked.prompt_tokens, "encoded": ranked.encoded_tokens},
        "forward_passes": ranked.forward_passes,
    }
    if explain:
        first = sorted(ranked.first_stage_scores.items(), key=lambda kv: -kv[1])[: job.k]
        out["first_stage"] = [{"item_id": i, "title": ds.item(i).display_name, "score": _num(s)} for i, s in first]
        out["history"] = [{"item_id": i, "title": ds.item(i).display_name} for i in job.history[-50:]]
        out["prompts"] = list(ranked.prompts)
    return out
