"""Event streams: each change of the caller's feed as a server-sent event, live.

A stream is FastAPI's own server-sent events (`EventSourceResponse`: the wire format, a
comment every 15 s, `Cache-Control: no-cache`, `X-Accel-Buffering: no`), fed from the
change feed: every change after the resume point first, then each new one as the broker
wakes the stream. An idle stream holds no database connection and no turn.
"""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Header, Query, Request, status
from fastapi.sse import EventSourceResponse, ServerSentEvent
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.auth import Claims, bearer_token
from backend.changes.service import (
    Position,
    read_changes,
    read_position,
    start_position,
)
from backend.db import end_session, scope_to
from backend.deps import OwnerGuard, OwnerId, SessionDep, authorize, limit_caller
from backend.errors import DatabaseUnavailable, InvalidToken, RateLimited, SyncExpired
from backend.events import service
from backend.events.broker import Broker
from backend.fields import SyncToken
from backend.middleware import request_session
from backend.models import ChangeEvent, ReminderPublic, TicketPublic
from backend.tokens.service import PAT_PREFIX, is_token_accepted, token_digest

router = APIRouter(tags=["events"])
stream_router = APIRouter(tags=["events"])

RETRY_MILLISECONDS = 3000
PAGE = 100
SETTLE_SECONDS = (0.25, 1.0)
"""After a wake-up that found nothing, look again this long after: the change may wait
for an older transaction to end before the feed shows it (decision 30)."""
POLL_SECONDS = 1.0
"""How often a stream reads the feed while wake-ups may be lost (the listener is down)."""


def lease_of(request: Request, claims: Claims) -> service.Lease:
    """How long what the request's token allows may last: a JWT until it expires, a
    personal access token until it is revoked."""
    token = bearer_token(request)
    digest = token_digest(token) if token.startswith(PAT_PREFIX) else None
    return service.Lease(until=claims.accepted_until, token_digest=digest)


@router.post("/events/ticket", status_code=status.HTTP_201_CREATED)
async def create_event_ticket(
    session: SessionDep, user_id: OwnerId, request: Request
) -> TicketPublic:
    """A ticket for `EventSource`, which cannot send an `Authorization` header: pass it as
    `?ticket=` to `/events` within 60 s. It opens one stream, once, for as long as the
    token that asked for it is accepted."""
    lease = lease_of(request, request.state.caller)
    return await service.create_ticket(session, user_id=user_id, lease=lease)


class StreamGuard(OwnerGuard):
    """The owner guard, which also takes a ticket (`?ticket=`) in place of a bearer token."""

    async def __call__(self, request: Request, user_id: str) -> None:
        ticket = request.query_params.get("ticket")
        if ticket is None or "authorization" in request.headers:
            await super().__call__(request, user_id)
            request.state.lease = lease_of(request, request.state.caller)
            return
        session = request_session(request.scope).open()
        await scope_to(session, user_id=user_id)
        lease = await service.use_ticket(session, user_id=user_id, ticket=ticket)
        if lease is None:
            raise InvalidToken("The ticket is used, expired or not for this user.")
        claims = Claims(subject=user_id, scopes=frozenset({"read"}), accepted_until=lease.until)
        await limit_caller(request, claims)
        await request_session(request.scope).take_turn()
        await authorize(session, claims=claims, needed="read", known=request.app.state.known_users)
        request.state.caller, request.state.lease = claims, lease


require_stream_owner = StreamGuard(
    "A JWT or a personal access token; or, from a browser, a ticket (`?ticket=`)."
)


@dataclass(frozen=True, slots=True)
class Start:
    position: Position | None
    """Where the stream starts; None: the token is older than the feed keeps (a reset)."""
    lease: service.Lease
    wake: asyncio.Event
    """Set whenever the user's feed may have grown (the stream's subscription)."""


async def open_stream(
    request: Request,
    session: SessionDep,
    user_id: OwnerId,
    since: Annotated[SyncToken, Query()] = None,
    last_event_id: Annotated[
        str | None,
        Header(alias="Last-Event-ID", description="The `id` of the last event received."),
    ] = None,
) -> AsyncIterator[Start]:
    """Check what can be checked before the stream starts (a 4xx can no longer be
    answered after), then give back the request's session and turn; and hold the
    stream's subscription for as long as the request lasts.

    The subscription is this dependency's, not the stream generator's: FastAPI ends a
    request's dependencies when the response ends, hung up or not, while a generator left
    suspended at a `yield` by a client that hung up is only closed when the garbage
    collector finds it, and until then would count against the caps."""
    broker: Broker = request.app.state.broker
    settings = request.app.state.settings
    if broker.streams_of(user_id) >= settings.events_max_streams_per_user:
        raise RateLimited(int(settings.events_check_seconds))
    if broker.streams >= settings.events_max_streams:
        raise DatabaseUnavailable
    token = last_event_id or since
    position: Position | None
    if token is None:
        position = await start_position(session, user_id=user_id, everything=False)
    else:
        signer, retention = request.app.state.cursor_signer, request.app.state.changes_retention
        try:
            position = read_position(signer, user_id, token, retention)
        except SyncExpired:
            position = None
    await request_session(request.scope).end(commit=True)
    with broker.subscribe(user_id) as wake:
        yield Start(position, request.state.lease, wake)


@stream_router.get("/events", response_class=EventSourceResponse)
async def stream_events(
    request: Request,
    user_id: OwnerId,
    start: Annotated[Start, Depends(open_stream, scope="request")],
    ticket: Annotated[
        str | None, Query(description="From `POST .../events/ticket`, for `EventSource`.")
    ] = None,
) -> AsyncIterator[ServerSentEvent]:
    """Each change of the caller's tasks and categories as an `event: change` whose `data`
    is `{"entity", "id", "op", "version"}` and whose `id` is the change feed's token after
    it; each reminder that fires as an `event: reminder` whose `data` is the reminder.
    Resume with `Last-Event-ID` (or `?since=`, a `/changes` token): every change after
    it comes first, then live ones, in order, none twice. A token older than the feed
    keeps gets one `event: reset` (start a sync over). The stream ends when its token
    stops being accepted."""
    if start.position is None:
        yield ServerSentEvent(
            event="reset", data={"code": "sync_expired"}, retry=RETRY_MILLISECONDS
        )
        return
    state = request.app.state
    position, again = start.position, list[float]()
    check_seconds = state.settings.events_check_seconds
    ends_at = time.monotonic() + state.settings.events_max_stream_seconds
    checked_at = time.monotonic()
    wake = start.wake  # the subscription is `open_stream`'s
    yield ServerSentEvent(comment="open", retry=RETRY_MILLISECONDS)
    while True:
        wake.clear()
        changes, more = await _read(state, user_id, position)
        for position, change in changes:
            token = position.token(state.cursor_signer, user_id)
            if change["entity"] != "reminder":
                yield ServerSentEvent(
                    id=token, event="change", data=ChangeEvent.model_validate(change)
                )
            elif change["data"] is not None:  # else its task is deleted: nothing to tell
                yield ServerSentEvent(
                    id=token, event="reminder", data=ReminderPublic.model_validate(change["data"])
                )
        if more:
            continue
        if changes:
            again = []
        # Wait for a reason to read again: a wake-up, a second look after one that
        # found nothing, or (listener down) the poll; meanwhile check that the client
        # is still there and the token still accepted.
        while True:
            left = ends_at - time.monotonic()
            if left <= 0 or state.broker.closing or await request.is_disconnected():
                return
            idle = check_seconds if state.broker.listening else POLL_SECONDS
            woken = await _wait(wake, min(again[0] if again else idle, left))
            if state.broker.closing:
                return
            if time.monotonic() - checked_at >= check_seconds:
                if not await _still_accepted(state, start.lease):
                    return
                checked_at = time.monotonic()
            if woken:
                again = list(SETTLE_SECONDS)
                break
            if again:
                again.pop(0)
                break
            if not state.broker.listening:
                break


async def _wait(wake: asyncio.Event, seconds: float) -> bool:
    try:
        async with asyncio.timeout(seconds):
            await wake.wait()
    except TimeoutError:
        return False
    return True


async def _read(
    state: Any, user_id: str, position: Position
) -> tuple[list[tuple[Position, dict[str, Any]]], bool]:
    """The changes after `position`, in a session of their own, ended at once."""
    async with _session(state) as session:
        await scope_to(session, user_id=user_id)
        return await read_changes(session, user_id=user_id, since=position, limit=PAGE)


async def _still_accepted(state: Any, lease: service.Lease) -> bool:
    if lease.until is not None and time.time() >= lease.until:
        return False
    if lease.token_digest is None:
        return True
    async with _session(state) as session:
        return await is_token_accepted(session, digest=lease.token_digest)


@contextlib.asynccontextmanager
async def _session(state: Any) -> AsyncIterator[AsyncSession]:
    """A session for one read of a stream, ended at once. The read runs to its end even
    when the stream is cancelled meanwhile (its client left): it takes milliseconds, and a
    query cancelled half way costs its connection (psycopg closes it)."""
    with anyio.CancelScope(shield=True):
        session, done = state.sessionmaker(), False
        try:
            yield session
            done = True
        finally:
            await end_session(session, commit=done)
