"""`Idempotency-Key` on writes: a dependency claims the key after authentication, a
middleware records the response before it is sent, a retry gets that response again."""

import asyncio
import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from fastapi.responses import Response
from sqlalchemy import event
from sqlalchemy.orm import Session
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.db import ScopedSession, finished_within, scope_to
from backend.deps import caller, get_session
from backend.errors import DATABASE_ERRORS, PROBLEM_JSON, Conflict, problem_body
from backend.idempotency import service

SCOPE_KEY = "todo_api.idempotency"
REPLAYED_HEADER = "Idempotent-Replayed"
KEPT_HEADERS = ("content-type", "location", "etag")
SETTLE_SECONDS = 5.0
"""How long settling a claim may take once its request was cancelled (the deadline)."""

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class Claim:
    """A claimed key; `committed` once the request's session began a `COMMIT` after the
    claim, from which moment its write may be in the database."""

    user_id: str
    key: str
    committed: bool = False


@event.listens_for(ScopedSession, "before_commit")
def _note_commit(session: Session) -> None:
    claim: Claim | None = session.info.get(SCOPE_KEY)
    if claim is not None:
        claim.committed = True


class Replay(Exception):
    """The stored answer to an earlier request with the same key."""

    def __init__(self, status_code: int, headers: dict[str, str], body: str) -> None:
        self.response = Response(
            content=body, status_code=status_code, headers={**headers, REPLAYED_HEADER: "true"}
        )


async def replay(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Replay)
    return exc.response


async def idempotent(
    request: Request,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=255,
            pattern=r"^[\x21-\x7e]+$",
            description="A unique key per intended write: a retry with the same key and "
            "body gets the first response again, for 24 hours.",
        ),
    ] = None,
) -> None:
    """Claim the request's key, or replay the answer of the request that claimed it. The
    session and the caller are read from the request, as the guard left them, not declared:
    FastAPI solves a declared dependency again wherever it appears (specs/performance.md)."""
    if idempotency_key is None:
        return
    session = await get_session(request)
    user_id = (await caller(request)).subject
    body = await request.body()
    parts = [request.method.encode(), request.url.path.encode(), body]
    if (if_match := request.headers.get("if-match")) is not None:
        # The precondition is part of the request: a retry carries the same one.
        parts.append(if_match.encode("latin-1"))
    fingerprint = hashlib.sha256(b"\0".join(parts)).hexdigest()
    record = await service.claim_key(
        session, user_id=user_id, key=idempotency_key, fingerprint=fingerprint
    )
    if record is not None:
        raise Replay(record.status_code or 200, record.headers or {}, record.body or "")
    claim = Claim(user_id, idempotency_key)
    request.scope[SCOPE_KEY] = session.info[SCOPE_KEY] = claim


Idempotent = Depends(idempotent)


class RecordIdempotentResponses:
    """Store the response of a claimed key before sending it; release a failed claim."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _has_key(scope):
            await self.app(scope, receive, send)
            return
        held: list[Message] = []

        async def hold(message: Message) -> None:
            held.append(message)

        try:
            await self.app(scope, receive, hold)
        finally:
            claim: Claim | None = scope.get(SCOPE_KEY)
            if claim is not None:
                await _settle_even_if_cancelled(scope, claim, held)
        for message in held:
            await send(message)


async def _settle_even_if_cancelled(scope: Scope, claim: Claim, held: list[Message]) -> None:
    """Settle the claim, also when the request deadline cancels the request meanwhile: a
    claim left unsettled would answer every retry 409 for a day."""
    settling = asyncio.ensure_future(_settle(scope, claim, held))
    try:
        await asyncio.shield(settling)
    except asyncio.CancelledError:
        if await finished_within(settling, SETTLE_SECONDS):
            _log_failure(settling)
        raise
    except DATABASE_ERRORS:
        _log_failure(settling)


def _log_failure(settling: "asyncio.Future[None]") -> None:
    """The database failed after the request: its answer still goes out, and the claim
    stays until it expires (a retry meanwhile is 409, never a second write). The type
    only: the error's text holds the statement and its values."""
    if (exc := settling.exception()) is not None:
        logger.warning("could not settle an Idempotency-Key claim: %s", type(exc).__name__)


def _has_key(scope: Scope) -> bool:
    return any(name == b"idempotency-key" for name, _ in scope["headers"])


async def _settle(scope: Scope, claim: Claim, held: list[Message]) -> None:
    """Record a success, to replay it. Release the claim of a request refused (4xx), or
    failed before anything was committed, so that a retry runs it. A request that failed
    or ended without an answer (the deadline) after its `COMMIT` began may have written:
    a retry must not write again, so it gets a 409 saying so (`UNKNOWN_OUTCOME`)."""
    start = next((m for m in held if m["type"] == "http.response.start"), None)
    status = 500 if start is None else start["status"]
    sessionmaker = scope["app"].state.sessionmaker
    async with sessionmaker() as session:
        await scope_to(session, user_id=claim.user_id)
        if status >= 500 and claim.committed:
            await service.record_response(
                session, user_id=claim.user_id, key=claim.key, **UNKNOWN_OUTCOME
            )
            return
        if start is None or not 200 <= status < 300:
            await service.release_key(session, user_id=claim.user_id, key=claim.key)
            return
        headers = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in start["headers"]
            if name.decode("latin-1").lower() in KEPT_HEADERS
        }
        body = b"".join(m.get("body", b"") for m in held if m["type"] == "http.response.body")
        await service.record_response(
            session,
            user_id=claim.user_id,
            key=claim.key,
            status_code=start["status"],
            headers=headers,
            body=body.decode(),
        )


UNKNOWN_OUTCOME: dict[str, Any] = {
    "status_code": Conflict.status,
    "headers": {"content-type": PROBLEM_JSON},
    "body": json.dumps(
        problem_body(
            Conflict.status,
            Conflict.code,
            "The first request with this Idempotency-Key ended without an answer after its "
            "write may have been stored; read the resource before writing it again.",
        )
    ),
}
