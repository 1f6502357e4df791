"""The application factory: settings in, a FastAPI app out."""

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import Depends, FastAPI
from fastapi.routing import APIRoute

from backend import auth, db, health
from backend.batches.routes import batch_target
from backend.batches.routes import router as batch_router
from backend.categories.routes import router as categories_router
from backend.changes.routes import router as changes_router
from backend.config import Settings, get_settings
from backend.deps import require_owner
from backend.envelope import Envelope
from backend.errors import install_error_handlers
from backend.events.broker import BROKER, Broker, end_streams_on_exit, listen
from backend.events.routes import require_stream_owner
from backend.events.routes import router as events_router
from backend.events.routes import stream_router as events_stream_router
from backend.history.routes import router as history_router
from backend.idempotency.guard import CommitWithAnswer, Replay, replay
from backend.mcp.server import mcp_sessions, mount_mcp
from backend.middleware import (
    CORS,
    CatchUnexpected,
    Deadline,
    LimitBody,
    RequestConcurrency,
    SessionPerRequest,
)
from backend.observability import Metrics, Observe, lean_log_records, metrics_router
from backend.openapi import PROBLEM_RESPONSES, TAGS, TodoAPI
from backend.pagination import CursorSigner
from backend.ratelimit import LimitRate, RateLimiter
from backend.stats.routes import router as stats_router
from backend.tags.routes import router as tags_router
from backend.tasks.routes import router as tasks_router
from backend.tokens.routes import router as tokens_router
from backend.users.routes import router as users_router
from backend.webhooks.routes import router as webhooks_router
from backend.worker import Worker

MAX_BODY_BYTES = 64 * 1024

CORS_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
CORS_REQUEST_HEADERS = [
    "Authorization",
    "Content-Type",
    "If-Match",
    "If-None-Match",
    "Idempotency-Key",
    "X-Request-ID",
    "Mcp-Protocol-Version",  # browser-based MCP clients (/mcp)
]
CORS_EXPOSED_HEADERS = [
    "Location",
    "ETag",
    "Retry-After",
    "RateLimit",
    "RateLimit-Policy",
    "X-Request-ID",
    "Idempotent-Replayed",
    "WWW-Authenticate",  # the 401 challenge, which MCP clients follow
]
CORS_MAX_AGE_SECONDS = 600
GC_YOUNG_THRESHOLD = 50_000
"""Net new container objects between two young collections (Python's default: 700)."""

logger = logging.getLogger("todo_api")


def serve_app() -> FastAPI:
    """The app as each server process runs it (`todo-api serve`, every worker): built, then
    all the imports and the build allocated moved out of the garbage collector's reach
    (`gc.freeze`). Otherwise each full collection walks those objects again, with the event
    loop stopped, which was a list page's p99 (optimisation 7 in specs/performance.md). Not
    for tests, which build many apps in one process:
    frozen cycles are never freed. And young collections wait for 50,000 new objects, not
    700: at Python's default, the objects of requests in flight survive two collections
    and reach the old generation, whose full collection then walks every open event
    stream's objects too (with 1,000 streams, 430,000 objects, 170-250 ms, every 1-3 s).
    Its log records skip the fields no format shows (`lean_log_records`)."""
    lean_log_records()
    app = create_app()
    gc.collect()  # nothing already garbage is frozen
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD)
    return app


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = db.create_engine(settings)
        app.state.engine = engine
        # SQLite: a commit wakes this process's streams; PostgreSQL: NOTIFY wakes every
        # worker's, this one's too, and a second wake-up would only cost reads.
        woken_at_commit = {BROKER: app.state.broker} if settings.is_sqlite else {}
        app.state.sessionmaker = db.create_sessionmaker(engine, settings, **woken_at_commit)
        app.state.readiness = health.ReadinessProbe(engine)
        app.state.turns = RequestConcurrency(
            settings.request_concurrency or settings.db_pool_size,
            wait_seconds=settings.db_pool_timeout_seconds,
        )
        restore_signals = end_streams_on_exit(app.state.broker)
        listener = None
        if not settings.is_sqlite:
            listener = asyncio.create_task(listen(app.state.broker, settings.driver_conninfo))
        worker, stop_worker = None, asyncio.Event()
        if settings.run_worker:  # `todo-api serve --with-worker`
            worker = Worker(settings, broker=app.state.broker)
            working = asyncio.create_task(worker.run(stop_worker))
        async with mcp_sessions(app):
            yield
        if worker is not None:
            stop_worker.set()
            await working
            await worker.close()
        restore_signals()
        if listener is not None:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
        if app.state.rate_limiter is not None:
            await app.state.rate_limiter.close()
        await app.state.readiness.close()
        await engine.dispose()

    app = TodoAPI(
        title="todo-api",
        version="1.0.0",
        summary="A multi-user task API with strict per-user isolation.",
        lifespan=lifespan,
        generate_unique_id_function=_operation_id,
        openapi_tags=TAGS,
    )
    app.state.settings = settings
    app.state.broker = Broker()
    app.state.verifier = auth.create_verifier(settings)
    app.state.cursor_signer = CursorSigner(settings.cursor_secret())
    app.state.changes_retention = timedelta(days=settings.changes_retention_days)
    app.state.known_users = {}
    app.state.rate_limiter = RateLimiter(settings) if settings.rate_limit_enabled else None
    app.state.metrics = Metrics(app.state)
    app.state.metrics_token = (
        settings.metrics_token.get_secret_value() if settings.metrics_token else None
    )
    install_error_handlers(app)
    app.add_exception_handler(Replay, replay)
    app.add_middleware(CommitWithAnswer)  # innermost: commits a write with its answer
    app.add_middleware(SessionPerRequest)  # then the session ends, before the rest
    app.add_middleware(LimitBody, max_bytes=MAX_BODY_BYTES)
    app.add_middleware(Deadline, seconds=settings.request_deadline_seconds)
    if app.state.rate_limiter is not None:
        app.add_middleware(LimitRate, limiter=app.state.rate_limiter)
    app.add_middleware(CatchUnexpected)
    # Outside every answer of the app's own, errors of the middleware above included.
    app.add_middleware(Envelope)
    if settings.cors_origins:
        # Outside all but Observe: every answer, errors from other middleware included,
        # carries the CORS headers a browser needs to let the frontend read it.
        app.add_middleware(
            CORS,
            allow_origins=settings.cors_origins,
            allow_credentials=settings.cors_allow_credentials,
            allow_methods=CORS_METHODS,
            allow_headers=CORS_REQUEST_HEADERS,
            expose_headers=CORS_EXPOSED_HEADERS,
            max_age=CORS_MAX_AGE_SECONDS,
        )
    # Outermost: an id and a log line on every answer of the app, preflights included.
    app.add_middleware(Observe, metrics=app.state.metrics)

    # Each domain router straight onto the app, behind the guard: FastAPI walks a nested
    # router's candidates on every request (optimisation 18 in specs/performance.md). Tasks
    # first: routes are tried
    # in order.
    for router in (
        tasks_router,
        categories_router,
        tags_router,
        history_router,
        changes_router,
        stats_router,
        users_router,
        tokens_router,
        events_router,
        webhooks_router,
        batch_router,
    ):
        app.include_router(
            router,
            prefix="/api/{user_id}",
            dependencies=[Depends(require_owner)],
            responses=PROBLEM_RESPONSES,
        )
    app.include_router(
        events_stream_router,
        prefix="/api/{user_id}",
        dependencies=[Depends(require_stream_owner)],
        responses=PROBLEM_RESPONSES,
    )
    app.include_router(health.router)
    mount_mcp(app, settings)
    app.include_router(metrics_router)
    app.state.batch_target = batch_target(app)  # after every route and error handler
    return app


def _operation_id(route: APIRoute) -> str:
    return route.name
