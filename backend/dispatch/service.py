"""The worker's side of the outbox: claims, results, pruning, on a connection row-level
security does not hold (`db.for_maintenance`; decision 33).

The worker claims what is due with a lease (`FOR UPDATE SKIP LOCKED` on PostgreSQL:
several workers never claim one row twice), takes only the head of each endpoint's line
and only while none of its deliveries is in flight (a webhook's events arrive one at a
time, in the feed's order), sends it outside any transaction, and records the result
guarded by the attempt it claimed, so that a worker whose lease ran out writes nothing.
These writes are not a `UnitOfWork`: they change no user's data, feed or history, only
the outbox's own bookkeeping.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import and_, bindparam, delete, exists, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from backend.changes.service import settled_below
from backend.models import Webhook, WebhookDelivery
from backend.owned import OWNER, owned_by

_HOOKS = Webhook.__table__  # type: ignore[attr-defined]
_DELIVERIES = WebhookDelivery.__table__  # type: ignore[attr-defined]
_h, _d = _HOOKS.c, _DELIVERIES.c


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery a worker holds until its lease ends, with what sending it needs."""

    user_id: str
    webhook_id: UUID
    id: UUID
    body: str
    attempt: int
    url: str
    secrets: tuple[str, ...]


def _claim(settled: bool) -> Any:
    earlier = _DELIVERIES.alias("earlier")
    due = (
        select(_d.user_id, _d.webhook_id, _d.id)
        .join(_HOOKS, and_(_h.user_id == _d.user_id, _h.id == _d.webhook_id))
        .where(
            _d.status == "pending",
            _d.next_attempt_at <= bindparam("now"),
            or_(_d.leased_until.is_(None), _d.leased_until < bindparam("now")),
            _h.enabled,
            ~exists().where(  # an earlier one waits, or another one is in flight
                earlier.c.user_id == _d.user_id,
                earlier.c.webhook_id == _d.webhook_id,
                earlier.c.status == "pending",
                or_(earlier.c.seq < _d.seq, earlier.c.leased_until >= bindparam("now")),
            ),
            *([_d.seq < settled_below()] if settled else []),
        )
        .order_by(_d.next_attempt_at)
        .limit(bindparam("limit"))
        .with_for_update(of=_DELIVERIES, skip_locked=True)
    )
    return (
        update(_DELIVERIES)
        .where(tuple_(_d.user_id, _d.webhook_id, _d.id).in_(due))
        .values(
            leased_until=bindparam("until"),
            attempts=_d.attempts + 1,
            last_attempt_at=bindparam("now"),
        )
        .returning(_d.user_id, _d.webhook_id, _d.id, _d.body, _d.attempts)
    )


_CLAIMS = {"postgresql": _claim(settled=True), "sqlite": _claim(settled=False)}
"""PostgreSQL also waits for the lower numbers to settle, as a feed reader does: a write
that took a lower number and commits later must not be passed in its line. (Numbers
follow transaction ids, not commits: of two writes of one entity racing, the later
version may come first; a receiver keeps the higher `version`, as api.md says.)"""


_ENDPOINTS = select(
    _h.user_id, _h.id, _h.url, _h.secret, _h.previous_secret, _h.previous_secret_until
).where(tuple_(_h.user_id, _h.id).in_(bindparam("webhooks", expanding=True)))


async def claim(
    connection: AsyncConnection, *, now: datetime, lease: timedelta, limit: int
) -> list[Claimed]:
    """At most `limit` due deliveries, each the head of its webhook's line, held until
    `now + lease` (committed here: the lease outlives this transaction), each with where
    it goes and the secrets that sign it."""
    params = {"now": now, "until": now + lease, "limit": limit}
    rows = (await connection.execute(_CLAIMS[connection.dialect.name], params)).all()
    await connection.commit()
    if not rows:
        return []
    webhooks = sorted({(user_id, webhook_id) for user_id, webhook_id, *_ in rows})
    endpoints = {
        (user_id, webhook_id): (url, (secret, previous) if until and until > now else (secret,))
        for user_id, webhook_id, url, secret, previous, until in (
            await connection.execute(_ENDPOINTS, {"webhooks": webhooks})
        )
    }
    await connection.rollback()
    return [
        Claimed(user_id, webhook_id, id_, body, attempt, *endpoints[(user_id, webhook_id)])
        for user_id, webhook_id, id_, body, attempt in rows
        if (user_id, webhook_id) in endpoints  # else deleted meanwhile, with its deliveries
    ]


_RECORD = (
    update(_DELIVERIES)
    .where(
        owned_by(_d.user_id),
        _d.webhook_id == bindparam("webhook"),
        _d.id == bindparam("delivery"),
        _d.attempts == bindparam("attempt"),
        _d.status == "pending",
    )
    .values(
        status=bindparam("outcome"),
        next_attempt_at=bindparam("next_at"),
        leased_until=None,
        last_status=bindparam("code"),
        last_error=bindparam("error"),
        last_response=bindparam("response"),
    )
)
_DISABLE = (
    update(_HOOKS)
    .where(owned_by(_h.user_id), _h.id == bindparam("webhook"), _h.enabled)
    .values(
        enabled=False,
        disabled_reason=bindparam("reason"),
        updated_at=bindparam("at"),
        version=_h.version + 1,
    )
)


@dataclass(frozen=True, slots=True)
class Result:
    """How an attempt ended, and what follows: another attempt at `next_at`, or none."""

    status: str
    next_at: datetime | None
    code: int | None
    error: str | None
    response: str | None
    disable: str | None = None
    """Why the webhook stops (410 Gone, or every retry failed), if it does."""


async def record(
    connection: AsyncConnection, claimed: Claimed, result: Result, at: datetime
) -> bool:
    """Store an attempt's result, and disable the webhook where it says so; False if the
    lease had run out and another worker holds the delivery now (nothing is written)."""
    keys = {OWNER: claimed.user_id, "webhook": claimed.webhook_id}
    params = keys | {
        "delivery": claimed.id,
        "attempt": claimed.attempt,
        "outcome": result.status,
        "next_at": result.next_at,
        "code": result.code,
        "error": result.error,
        "response": result.response,
    }
    written = (await connection.execute(_RECORD, params)).rowcount == 1
    if written and result.disable is not None:
        await connection.execute(_DISABLE, keys | {"reason": result.disable, "at": at})
    await connection.commit()
    return written


_PRUNE = delete(_DELIVERIES).where(_d.status != "pending", _d.created_at < bindparam("before"))


async def prune_deliveries(connection: AsyncConnection, *, before: datetime) -> int:
    """Forget every user's finished deliveries made before `before`; how many."""
    return (await connection.execute(_PRUNE, {"before": before})).rowcount
