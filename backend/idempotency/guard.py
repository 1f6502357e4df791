"""`Idempotency-Key` on writes: a dependency claims the key after authentication, a
middleware records the response before it is sent, a retry gets that response again."""

import hashlib
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.db import scope_to
from backend.deps import caller, get_session
from backend.idempotency import service

SCOPE_KEY = "todo_api.idempotency"
REPLAYED_HEADER = "Idempotent-Replayed"
KEPT_HEADERS = ("content-type", "location", "etag")


@dataclass(frozen=True, slots=True)
class Claim:
    user_id: str
    key: str


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
    request.scope[SCOPE_KEY] = Claim(user_id, idempotency_key)


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
                await _settle(scope, claim, held)
        for message in held:
            await send(message)


def _has_key(scope: Scope) -> bool:
    return any(name == b"idempotency-key" for name, _ in scope["headers"])


async def _settle(scope: Scope, claim: Claim, held: list[Message]) -> None:
    start = next((m for m in held if m["type"] == "http.response.start"), None)
    sessionmaker = scope["app"].state.sessionmaker
    async with sessionmaker() as session:
        await scope_to(session, user_id=claim.user_id)
        if start is None or not 200 <= start["status"] < 300:
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
