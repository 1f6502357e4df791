"""Request ids, one structured log line per request, and Prometheus metrics at `/metrics`."""

import hmac
import json
import logging
import os
import re
import sys
import time
import uuid
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy.pool import QueuePool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.config import Settings
from backend.errors import NotAuthenticated

access_logger = logging.getLogger("todo_api.access")
disable_created_metrics()  # type: ignore[no-untyped-call]  # no `*_created` series: they double the series for no use here

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
"""A client's `X-Request-ID` is kept when it matches; otherwise a new id replaces it."""
ACCESS_FIELDS = ("request_id", "method", "route", "status", "duration_ms")
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNROUTED = "unrouted"
"""The route label of requests answered before routing: no such path, a 429 per address."""
ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the access fields when
    present, and the request id of the request being served. Never a traceback."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in ACCESS_FIELDS:
            if (value := getattr(record, name, None)) is not None:
                entry[name] = value
        if "request_id" not in entry and (request_id := request_id_var.get()) is not None:
            entry["request_id"] = request_id
        if record.exc_info and record.exc_info[0] is not None:
            entry["error"] = record.exc_info[0].__name__
        return ENCODER.encode(entry)


class TextFormatter(logging.Formatter):
    """`LOG_FORMAT=text`: one line a record, an error by its type, as the JSON lines:
    never a traceback, whose text may hold a statement and its values."""

    def format(self, record: logging.LogRecord) -> str:
        error = record.exc_info[0] if record.exc_info else None
        kept = record.exc_info, record.exc_text, record.stack_info
        record.exc_info = record.exc_text = record.stack_info = None
        try:
            line = super().format(record)
        finally:  # other handlers may format the record too
            record.exc_info, record.exc_text, record.stack_info = kept
        return line if error is None else f"{line} (error: {error.__name__})"


def lean_log_records() -> None:
    """Log records without what no format here shows: the calling frame (`findCaller`
    walks the stack for it), the thread, the process and its multiprocessing name, and
    (Python 3.12+) the asyncio task. These are the switches of the logging HOWTO's
    "Optimization" section; process-wide, so set by each server process (`serve_app`)."""
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    if sys.version_info >= (3, 12):
        logging.logAsyncioTasks = False


def log_format(settings: Settings) -> str:
    """`LOG_FORMAT`, or text where standard error is a terminal and JSON elsewhere."""
    return settings.log_format or ("text" if sys.stderr.isatty() else "json")


def logging_config(settings: Settings) -> dict[str, Any]:
    """A `logging.config.dictConfig` for the server and uvicorn (each worker applies it)."""
    text = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "json": {"()": f"{__name__}.JsonFormatter"},
            "text": {"()": f"{__name__}.TextFormatter", "format": text},
        },
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": log_format(settings),
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["stderr"], "level": settings.log_level},
        "loggers": {
            "uvicorn": {"handlers": [], "propagate": True},
            "uvicorn.error": {"handlers": [], "propagate": True},
            "uvicorn.access": {"handlers": [], "propagate": False},
        },
    }


class PoolCollector(Collector):
    """The database pool of `app.state.engine`, read when Prometheus scrapes."""

    def __init__(self, state: Any) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        engine = getattr(self.state, "engine", None)
        pool = engine.pool if engine is not None else None
        if not isinstance(pool, QueuePool):
            return
        for name, documentation, value in (
            ("db_pool_size", "Connections the pool keeps.", pool.size()),
            ("db_pool_checked_out", "Connections in use by requests.", pool.checkedout()),
            ("db_pool_idle", "Open connections waiting in the pool.", pool.checkedin()),
            ("db_pool_overflow", "Connections open beyond the pool size.", max(0, pool.overflow())),
        ):
            yield GaugeMetricFamily(name, documentation, value=value)


class Metrics:
    """This app's instruments, in a registry of its own (so that apps in one process, as in
    tests, do not collide). Label children are cached: `labels()` costs microseconds."""

    def __init__(self, state: Any) -> None:
        self.registry = CollectorRegistry()
        labels = ("method", "route", "status")
        self.requests = Counter(
            "http_requests", "Requests answered.", labels, registry=self.registry
        )
        self.duration = Histogram(
            "http_request_duration_seconds",
            "Time from the request's arrival to the end of its response.",
            labels,
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "http_requests_in_flight",
            "Requests being served.",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.pool = PoolCollector(state)
        self.registry.register(self.pool)
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            values = (method, route, str(status))
            children = (self.requests.labels(*values), self.duration.labels(*values))
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def exposition(self) -> bytes:
        """The text format; with `PROMETHEUS_MULTIPROC_DIR`, summed over every worker."""
        if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        registry.register(self.pool)
        return generate_latest(registry)


class Observe:
    """The outermost middleware: a request id on every response (the client's when sane),
    one access log line, the request counter, latency histogram and in-flight gauge."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _request_id(scope)
        context = request_id_var.set(request_id)
        header = (b"x-request-id", request_id.encode())
        status = 500

        async def send_observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        in_flight = self.metrics.in_flight
        in_flight.inc()
        try:
            await self.app(scope, receive, send_observed)
        finally:
            in_flight.dec()
            seconds = time.perf_counter() - started
            route = _route_template(scope)
            method = scope["method"] if scope["method"] in METHODS else "other"
            self.metrics.observe(method, route, status, seconds)
            duration_ms = round(seconds * 1000, 2)
            access_logger.info(
                "%s %s %s %sms",
                method,
                route,
                status,
                duration_ms,
                extra={
                    "request_id": request_id,
                    "method": method,
                    "route": route,
                    "status": status,
                    "duration_ms": duration_ms,
                },
            )
            request_id_var.reset(context)


def _route_template(scope: Scope) -> str:
    """The matched route's full template, `/api/{user_id}/tasks/{task_id}`, never the path.

    FastAPI does not copy included routes (the route Starlette matched, `scope["route"]`,
    knows its template within its router, `/tasks`): the full one is the OpenAPI
    document's path of the route's name, its operation id. A route outside the document
    (`/metrics`, the `/mcp` mount) sits on the app itself, so its own path is the full one.
    """
    route = scope.get("route")
    if route is None:
        return UNROUTED
    state = scope["app"].state
    templates: dict[str, str] | None = getattr(state, "route_templates", None)
    if templates is None:
        paths = scope["app"].openapi()["paths"]
        templates = {
            op["operationId"]: path for path, item in paths.items() for op in item.values()
        }
        state.route_templates = templates
    return templates.get(getattr(route, "name", ""), getattr(route, "path", UNROUTED))


def _request_id(scope: Scope) -> str:
    name: bytes
    value: bytes
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            candidate = value.decode("latin-1")
            if REQUEST_ID.fullmatch(candidate):
                return candidate
            break
    return uuid.uuid4().hex


metrics_router = APIRouter()


@metrics_router.get("/metrics", include_in_schema=False)
async def read_metrics(request: Request) -> Response:
    """Prometheus text format; behind `METRICS_TOKEN` when one is set."""
    token: str | None = request.app.state.metrics_token
    if token is not None:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), token.encode()):
            raise NotAuthenticated
    metrics: Metrics = request.app.state.metrics
    return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
