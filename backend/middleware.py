"""ASGI middleware: the request's session, the body limit, turns, the deadline and the
last-resort error catcher."""

import asyncio
import logging
from dataclasses import dataclass

from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.db import end_session
from backend.errors import (
    AppError,
    DatabaseUnavailable,
    DeadlineExceeded,
    PayloadTooLarge,
    problem,
)

logger = logging.getLogger("todo_api")

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
UNLIMITED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
"""Answered whatever the load and the database: they never wait their turn."""
SESSION = "todo_api.session"
"""Scope key: the request's `SessionSlot`."""


@dataclass(slots=True)
class SessionSlot:
    """Where the request's session is kept once `backend.deps.get_session` opens it."""

    session: AsyncSession | None = None


class SessionPerRequest:
    """End the request's session, if it opened one, once the answer is sent: a read that
    succeeded with `COMMIT` (`end_session`), anything else by closing (a rollback of whatever
    was not committed; writes commit in their services).

    A middleware rather than a `yield` dependency: FastAPI enters a generator dependency
    through a context manager, an exit stack and a cancel scope on every request, which
    cost a list request more than its filters (specs/performance.md). Here it is one
    `try`/`finally`, which also runs when the deadline cancels the request.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        slot = scope[SESSION] = SessionSlot()
        succeeded = False

        async def send_noting(message: Message) -> None:
            nonlocal succeeded
            if message["type"] == "http.response.start":
                succeeded = message["status"] < 400
            await send(message)

        try:
            await self.app(scope, receive, send_noting)
        finally:
            if (session := slot.session) is not None:
                read = succeeded and scope["method"] in READ_METHODS
                await end_session(session, commit=read)


class LimitBody:
    """Read the whole body before the app runs, refusing one over `max_bytes` with 413:
    a declared `Content-Length` before a byte is read, a chunked body as it streams in.

    The app, and `Admission` inside this, then never wait on a slow upload: a client
    trickling its body in holds no turn (nor a database connection) meanwhile.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        chunks: list[bytes] = []
        received = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # gone before its body arrived: nobody to answer
            chunks.append(message.get("body", b""))
            received += len(chunks[-1])
            if received > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            more = message.get("more_body", False)
        body: Message | None = {"type": "http.request", "body": b"".join(chunks)}

        async def receive_read() -> Message:
            nonlocal body
            if body is None:
                return await receive()  # after the body: the disconnect, when it comes
            message, body = body, None
            return message

        await self.app(scope, receive_read, send)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send) -> None:
        error = PayloadTooLarge()
        await problem(error.status, error.code, error.detail)(scope, receive, send)


class Admission:
    """Serve at most `limit` requests at once; the others wait their turn in order of
    arrival, at most `wait_seconds`, then 503 `db_unavailable`, as a pool timeout answers.

    With as many turns as the pool has connections, a request starts only when it can
    have one, and runs beside few others, where every request shared the cores with all
    the others and queued for the pool only after its token was checked: at 64 connections
    a worker served more requests, with a p99 of a third (specs/performance.md). Public
    health routes and `/metrics` never wait.
    """

    def __init__(self, app: ASGIApp, limit: int, wait_seconds: float) -> None:
        self.app = app
        self.turns = asyncio.Semaphore(limit)
        self.wait_seconds = wait_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNLIMITED_PATHS:
            await self.app(scope, receive, send)
            return
        try:
            async with asyncio.timeout(self.wait_seconds):
                await self.turns.acquire()
        except TimeoutError:
            error = DatabaseUnavailable()
            answer = problem(error.status, error.code, error.detail, headers=error.headers)
            await answer(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.turns.release()


class Deadline:
    """Answer 503 `timeout` when a request outlives `seconds`, whatever it waits on.

    A stopped or hung database enforces none of its own timeouts; this one holds anyway.
    At the deadline a timer cancels the request and, from a task of its own, answers at
    once: a driver may take seconds to give up a query on a silent server, and the client
    is not kept waiting for that. A timer costs next to nothing per request, unlike a task.
    Public health routes are left alone: they must answer while the database does not.
    """

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds
        self._answers: set[asyncio.Task[None]] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in {"/healthz", "/readyz"}:
            await self.app(scope, receive, send)
            return
        request = asyncio.current_task()
        assert request is not None
        started = expired = False
        answer: asyncio.Task[None] | None = None

        async def send_in_time(message: Message) -> None:
            nonlocal started
            if expired:
                return  # the deadline answered (or gave up on) this request
            started = started or message["type"] == "http.response.start"
            await send(message)

        def expire() -> None:
            nonlocal expired, answer
            expired = True
            logger.warning("request deadline of %ss passed", self.seconds)
            request.cancel()
            if not started:
                answer = asyncio.ensure_future(self._answer(scope, receive, send))
                self._answers.add(answer)
                answer.add_done_callback(self._answers.discard)

        timer = asyncio.get_running_loop().call_later(self.seconds, expire)
        try:
            await self.app(scope, receive, send_in_time)
        except asyncio.CancelledError:
            if not expired:
                raise
            request.uncancel()
        except Exception as exc:
            if not expired:
                raise
            logger.warning("request past its deadline ended with %s", type(exc).__name__)
        finally:
            timer.cancel()
        if answer is not None:
            # The request wound down before its 503 went out: the server must not see
            # this call end before the answer does.
            await answer

    @staticmethod
    async def _answer(scope: Scope, receive: Receive, send: Send) -> None:
        error = DeadlineExceeded()
        await problem(error.status, error.code, error.detail, headers=error.headers)(
            scope, receive, send
        )


class CatchUnexpected:
    """Answer any exception no handler took with a bare 500 problem, logged without a trace.

    Starlette's own last-resort handler re-raises to the server, which prints the traceback
    (and with it SQL text or values) to the log; this middleware stops the exception here.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_tracking(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_tracking)
        except Exception as exc:
            frame = exc.__traceback__
            while frame is not None and frame.tb_next is not None:
                frame = frame.tb_next
            where = f"{frame.tb_frame.f_code.co_filename}:{frame.tb_lineno}" if frame else "?"
            logger.error("unhandled %s at %s", type(exc).__name__, where)
            if not started:
                response = problem(500, AppError.code, AppError.detail)
                await response(scope, receive, send)
