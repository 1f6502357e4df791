"""Event-stream tickets: single use, valid a minute, stored as digests."""

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import bindparam, delete, insert
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.db import utcnow
from backend.models import EventTicket, TicketPublic
from backend.owned import OWNER, owned_by
from backend.tokens.service import token_digest
from backend.unit_of_work import UnitOfWork

TICKET_PREFIX = "todo_evt_"
TICKET_LIFETIME = timedelta(seconds=60)

_TICKETS = EventTicket.__table__  # type: ignore[attr-defined]
_INSERT = insert(_TICKETS)
_USE = (
    delete(_TICKETS)
    .where(
        owned_by(_TICKETS.c.user_id),
        _TICKETS.c.digest == bindparam("digest"),
        _TICKETS.c.expires_at > bindparam("now"),
    )
    .returning(_TICKETS.c.stream_until, _TICKETS.c.token_digest)
)
_EXPIRED = delete(_TICKETS).where(_TICKETS.c.expires_at <= bindparam("now"))


@dataclass(frozen=True, slots=True)
class Lease:
    """How long a stream may stay open: until its token stops being accepted (`until`,
    Unix time), and while the personal access token of `token_digest` is not revoked."""

    until: float | None = None
    token_digest: str | None = None


async def create_ticket(session: AsyncSession, *, user_id: str, lease: Lease) -> TicketPublic:
    """A ticket that opens one stream of `user_id` within a minute, for as long as `lease`."""
    ticket = TICKET_PREFIX + secrets.token_urlsafe(32)
    work = UnitOfWork(user_id)
    expires_at = work.at + TICKET_LIFETIME
    until = None if lease.until is None else datetime.fromtimestamp(lease.until, UTC)
    row = {
        "user_id": user_id,
        "digest": token_digest(ticket),
        "expires_at": expires_at,
        "stream_until": until,
        "token_digest": lease.token_digest,
    }
    work.execute(_INSERT, row, guarded=False)
    await work.commit(session)
    return TicketPublic(ticket=ticket, expires_at=expires_at)


async def use_ticket(session: AsyncSession, *, user_id: str, ticket: str) -> Lease | None:
    """The lease of `user_id`'s ticket, which it spends; None if it is used, expired or
    not this user's."""
    params = {OWNER: user_id, "digest": token_digest(ticket), "now": utcnow()}
    row = (await session.exec(_USE, params=params)).first()
    await session.commit()
    if row is None:
        return None
    until, digest = row
    return Lease(until=None if until is None else until.timestamp(), token_digest=digest)


async def prune_tickets(connection: AsyncConnection, *, now: datetime) -> int:
    """Forget every user's expired tickets; how many (`todo-api prune`)."""
    return (await connection.execute(_EXPIRED, {"now": now})).rowcount
