"""ASGI middleware: the request's session and its turn, the body limit, the deadline and
the last-resort error catcher."""

import asyncio
import logging

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.asgi import route_path
from backend.db import end_session
from backend.errors import (
    AppError,
    CorsRefused,
    DatabaseUnavailable,
    DeadlineExceeded,
    PayloadTooLarge,
)
from backend.health import HEALTH_PATHS

logger = logging.getLogger("todo_api")

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
STREAM = "text/event-stream"


class RequestConcurrency:
    """At most `limit` requests at a time do their work; the others wait their turn in
    order of arrival (a fair semaphore), at most `wait_seconds`, then 503 `db_unavailable`,
    as a pool timeout answers.

    With as many turns as the pool has connections, a request starts its work only when
    it can have one, and runs beside few others: interleaving all of them on one core
    made each take longer and gave the latency a long tail (optimisation 6 in
    specs/performance.md). The owner guard takes the turn once the caller is known
    (`RequestSession.take_turn`), so a token waiting on the identity provider's keys, or
    refused, holds none.
    """

    def __init__(self, limit: int, *, wait_seconds: float) -> None:
        self._turns = asyncio.Semaphore(limit)
        self._wait_seconds = wait_seconds

    async def take(self) -> None:
        try:
            async with asyncio.timeout(self._wait_seconds):
                await self._turns.acquire()
        except TimeoutError:
            logger.warning("no turn free within %ss: answered db_unavailable", self._wait_seconds)
            raise DatabaseUnavailable from None

    def give_back(self) -> None:
        self._turns.release()


class RequestSession:
    """A request's database session, opened on first use (`open`), and its turn
    (`take_turn`); `SessionPerRequest` makes one for each request (`request.state.session`)
    and ends both (`end`), however the request ends."""

    __slots__ = ("_has_turn", "_session", "_sessionmaker", "_turns")

    def __init__(
        self, sessionmaker: async_sessionmaker[AsyncSession], turns: RequestConcurrency
    ) -> None:
        self._sessionmaker = sessionmaker
        self._turns = turns
        self._session: AsyncSession | None = None
        self._has_turn = False

    def open(self) -> AsyncSession:
        if self._session is None:
            self._session = self._sessionmaker()
        return self._session

    @property
    def opened(self) -> AsyncSession | None:
        return self._session

    async def take_turn(self) -> None:
        if self._has_turn:  # a batch's operations work in the batch's turn
            return
        await self._turns.take()
        self._has_turn = True  # no await between: whatever happens next, it is given back

    async def end(self, *, commit: bool) -> None:
        """End the session, if it was opened: with `COMMIT` first if `commit`, then
        closed (a rollback of whatever was not committed). Then give the turn back. Once:
        a stream ends both before it starts streaming (`events.routes`)."""
        session, self._session = self._session, None
        try:
            if session is not None:
                await end_session(session, commit=commit)
        finally:
            if self._has_turn:
                self._has_turn = False
                self._turns.give_back()


def request_session(scope: Scope) -> RequestSession:
    """The request's `RequestSession` (`request.state.session`)."""
    session: RequestSession = scope["state"]["session"]
    return session


class SessionPerRequest:
    """Give each request its `RequestSession`, and end it once the answer is sent: a read
    that succeeded with `COMMIT` (so that its statements stay prepared), anything else by
    closing (writes commit in their units of work, or with their answer).

    A middleware rather than a `yield` dependency: FastAPI enters a generator dependency
    through a context manager, an exit stack and a cancel scope on every request
    (optimisation 19 in specs/performance.md). Here it is one `try`/`finally`, which also
    runs when the deadline cancels the request.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope["app"].state
        session = RequestSession(state.sessionmaker, state.turns)
        scope.setdefault("state", {})["session"] = session
        succeeded = False

        async def send_noting(message: Message) -> None:
            nonlocal succeeded
            if message["type"] == "http.response.start":
                succeeded = message["status"] < 400
            await send(message)

        try:
            await self.app(scope, receive, send_noting)
        finally:
            await session.end(commit=succeeded and scope["method"] in READ_METHODS)


class LimitBody:
    """Refuse a body over `max_bytes` with 413 before it is buffered whole.

    A declared `Content-Length` is refused before a byte is read; a chunked body is
    counted as it streams in.
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
            await PayloadTooLarge().response()(scope, receive, send)
            return
        received = 0

        async def receive_limited() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                # An HTTPException passes through FastAPI's body parsing unchanged.
                raise HTTPException(PayloadTooLarge.status, PayloadTooLarge.detail)
            return message

        await self.app(scope, receive_limited, send)


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
        if scope["type"] != "http" or route_path(scope) in HEALTH_PATHS:
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
            if message["type"] == "http.response.start":
                started = True
                if Headers(raw=message["headers"]).get("content-type", "").startswith(STREAM):
                    timer.cancel()  # a stream has answered; it bounds its own life
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
        await DeadlineExceeded().response()(scope, receive, send)


class CORS(CORSMiddleware):
    """Starlette's CORS middleware, answering a refused preflight as a problem document:
    `cors_refused` (400), its detail Starlette's own words ("Disallowed CORS origin,
    headers"), with the preflight headers that say what is allowed."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code != CorsRefused.status:
            return response
        headers = {
            name: value
            for name, value in response.headers.items()
            if name.startswith("access-control-") or name == "vary"
        }
        return CorsRefused(bytes(response.body).decode()).response(headers)


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
                await AppError().response()(scope, receive, send)
