"""`Idempotency-Key` on writes: the answer commits with the write, so a retry after a
failure at any point either gets the first answer or writes exactly once.

The dependency (`Idempotent`) replays the stored answer of a key whose write committed,
and otherwise tells the request's unit of work not to commit (`unit_of_work.DEFERRED`).
The middleware (`CommitWithAnswer`) holds the route's answer and, if it is a success,
stores it and commits it with the write in one transaction, then sends it. A request
with the same key that committed first makes that store fail on the key: the write rolls
back and the first answer is replayed. Nothing is claimed ahead of the write, so nothing
is left claimed by a request that died: before its `COMMIT` it wrote nothing and stored
nothing; after it, the answer is there.
"""

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.responses import Response
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.db import utcnow
from backend.deps import caller, get_session
from backend.errors import DATABASE_ERRORS, Conflict, InvalidInput, database_error
from backend.idempotency import service
from backend.middleware import request_session
from backend.models import IdempotencyRecord
from backend.unit_of_work import DEFERRED

REPLAYED_HEADER = "Idempotent-Replayed"
KEPT_HEADERS = ("content-type", "location", "etag")

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Key:
    """A request's `Idempotency-Key`, its owner and what the request was."""

    user_id: str
    key: str
    fingerprint: str


class Replay(Exception):
    """Answer with what is stored for the key, instead of running the route."""

    def __init__(self, response: Response) -> None:
        self.response = response


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
    """Replay the answer stored for the key, or defer the request's commit to
    `CommitWithAnswer`. The session and the caller are read from the request, as the guard
    left them, not declared: FastAPI solves a declared dependency again wherever it
    appears (optimisation 2 in specs/performance.md)."""
    if idempotency_key is None:
        return
    session = await get_session(request)
    key = Key((await caller(request)).subject, idempotency_key, await _fingerprint(request))
    record = await service.find_answer(session, user_id=key.user_id, key=key.key, now=utcnow())
    if record is not None:
        raise Replay(_stored_answer(record, key))
    session.info[DEFERRED] = key


async def _fingerprint(request: Request) -> str:
    parts = [request.method.encode(), request.url.path.encode(), await request.body()]
    if (if_match := request.headers.get("if-match")) is not None:
        # The precondition is part of the request: a retry carries the same one.
        parts.append(if_match.encode("latin-1"))
    return hashlib.sha256(b"\0".join(parts)).hexdigest()


def _stored_answer(record: IdempotencyRecord, key: Key) -> Response:
    """The stored answer, marked as replayed; a 422 if the key's first request differs."""
    if record.fingerprint != key.fingerprint:
        return InvalidInput(("header", "Idempotency-Key"), "idempotency_key_reused").response()
    return Response(
        content=record.body or "",
        status_code=record.status_code or 200,
        headers={**(record.headers or {}), REPLAYED_HEADER: "true"},
    )


Idempotent = Depends(idempotent)


class CommitWithAnswer:
    """Hold the answer of a request with an `Idempotency-Key`; if it is a success, store it
    with the write and commit both, then send it (or the answer of the request with the
    same key that committed first). Inside `SessionPerRequest`, which ends the session."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _has_key(scope):
            await self.app(scope, receive, send)
            return
        held: list[Message] = []

        async def hold(message: Message) -> None:
            held.append(message)

        await self.app(scope, receive, hold)
        session = request_session(scope).opened
        key: Key | None = session.info.get(DEFERRED) if session is not None else None
        if session is not None and key is not None:
            instead = await _commit_with_answer(session, key, held)
            if instead is not None:
                await instead(scope, receive, send)
                return
        for message in held:
            await send(message)


def _has_key(scope: Scope) -> bool:
    return any(name == b"idempotency-key" for name, _ in scope["headers"])


async def _commit_with_answer(
    session: AsyncSession, key: Key, held: list[Message]
) -> Response | None:
    """Store a success with its write and commit both; None to send the held answer, or
    the answer to send instead.

    A request with the same key that was in flight at the same time may have committed
    first: this one's answer then fails to store on the key, or this one failed because of
    that write (a taken name, a moved version). Either way its own write rolls back and it
    answers the first's answer. A failure with no such answer is not stored, and a retry
    runs again."""
    start = next((m for m in held if m["type"] == "http.response.start"), None)
    succeeded = start is not None and 200 <= start["status"] < 300
    now = utcnow()
    try:
        if start is not None and succeeded:
            answer = _answer(key, start, held, now)
            try:
                await session.run_sync(_store_and_commit, answer)
                return None
            except IntegrityError:  # the same key committed first
                pass
        await session.rollback()
        first = await service.find_answer(session, user_id=key.user_id, key=key.key, now=now)
    except DATABASE_ERRORS as exc:
        await session.rollback()
        return database_error(exc).response()  # logs the error's type only
    if first is not None:
        return _stored_answer(first, key)
    if succeeded:  # its answer failed on a key that is not there any more
        return Conflict("Another request with this Idempotency-Key; try again.").response()
    return None


def _answer(key: Key, start: Message, held: list[Message], now: datetime) -> IdempotencyRecord:
    return IdempotencyRecord(
        user_id=key.user_id,
        key=key.key,
        fingerprint=key.fingerprint,
        status_code=start["status"],
        headers={
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in start["headers"]
            if name.decode("latin-1").lower() in KEPT_HEADERS
        },
        body=b"".join(
            m.get("body", b"") for m in held if m["type"] == "http.response.body"
        ).decode(),
        created_at=now,
        expires_at=now + service.LIFETIME,
    )


def _store_and_commit(sync_session: Session, answer: IdempotencyRecord) -> None:
    service.store_answer(sync_session.connection(), answer)
    sync_session.commit()
