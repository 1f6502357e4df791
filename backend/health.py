"""The public health routes: liveness, and readiness bounded however the database hangs."""

import asyncio
import logging

from fastapi import APIRouter, Request
from sqlalchemy import literal, select
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.db import wait_or_abandon
from backend.errors import DatabaseUnavailable
from backend.openapi import PROBLEM_RESPONSES

logger = logging.getLogger("todo_api")

HEALTH_PATHS = frozenset({"/healthz", "/readyz"})
"""Answered without the request deadline or a rate budget: they must answer while the
database does not, and orchestrators call them often."""
READY_TIMEOUT_SECONDS = 1.0
_PING = select(literal(1))


class ReadinessProbe:
    """Asks the database `SELECT 1` on a pooled connection, one question at a time, and
    waits at most `timeout` for the answer.

    The question runs in a task of its own, given up on without waiting for the driver to
    give up (`db.wait_or_abandon`). A probe that finds a question still out waits on that
    one rather than piling another connection onto a database that does not answer, and
    one that finds it given up on answers at once. A connection that did not answer in
    time is discarded, not pooled again.
    """

    def __init__(self, engine: AsyncEngine, timeout: float = READY_TIMEOUT_SECONDS) -> None:
        self._engine = engine
        self._timeout = timeout
        self._question: asyncio.Task[None] | None = None

    async def ready(self) -> bool:
        if self._question is None or self._question.done():
            self._question = asyncio.create_task(self._ask())
        question = self._question
        if question.cancelling():
            return False  # an earlier probe gave up on it: the database is not answering
        if not await wait_or_abandon(question, self._timeout):
            logger.warning("not ready: the database did not answer within %ss", self._timeout)
            return False
        if question.cancelled() or (error := question.exception()) is not None:
            logger.warning(
                "not ready: %s", "cancelled" if question.cancelled() else type(error).__name__
            )
            return False
        return True

    async def _ask(self) -> None:
        async with self._engine.connect() as connection:
            try:
                await connection.execute(_PING)
            except BaseException:
                await connection.invalidate()
                raise

    async def close(self) -> None:
        """Let a question still out wind down before the engine is disposed."""
        if self._question is not None and not self._question.done():
            self._question.cancel()
            await asyncio.wait({self._question})


router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: the process answers; the database is not asked."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: PROBLEM_RESPONSES[503]})
async def readyz(request: Request) -> dict[str, str]:
    """Readiness: the database answers a trivial query within a second; 503 otherwise,
    also within a second, however the database hangs."""
    probe: ReadinessProbe = request.app.state.readiness
    if not await probe.ready():
        raise DatabaseUnavailable
    return {"status": "ok"}
