"""Webhook deliveries: the outbox a write fills in its own transaction, and the worker's
claims and results (decision 33).

A write's events become one row per subscribed webhook, inserted by one statement
beside the change feed's (`UnitOfWork`), so that a delivery exists exactly when its
change committed. The row holds the body as it will be signed, and its place in the
endpoint's line (`seq`, numbered as the feed is). The worker claims what is due with a
lease (`FOR UPDATE SKIP LOCKED` on PostgreSQL: several workers never claim one row
twice), takes only the head of each endpoint's line (a webhook's events arrive in the
feed's order), sends it outside any transaction, and records the result guarded by the
attempt it claimed, so that a worker whose lease ran out writes nothing.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, TypeAdapter
from sqlalchemy import (
    Connection,
    String,
    Uuid,
    and_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import Select
from sqlmodel.ext.asyncio.session import AsyncSession
from uuid6 import uuid7

from backend.changes.service import TRANSACTION_NUMBER, settled_below
from backend.db import UTCDateTime
from backend.fields import WEBHOOK_EVENTS
from backend.models import CategoryPublic, TaskPublic, Webhook, WebhookDelivery
from backend.owned import OWNER, owned_by
from backend.pagination import Keyset, PageRequest, Record, fetch_page

PING = "webhook.ping"

_HOOKS = Webhook.__table__  # type: ignore[attr-defined]
_DELIVERIES = WebhookDelivery.__table__  # type: ignore[attr-defined]
_h, _d = _HOOKS.c, _DELIVERIES.c


class Message(BaseModel):
    """A delivery's body (Standard Webhooks): the event's type, when it happened, and the
    entity as GET shows it, or the id of a deleted one."""

    type: str
    timestamp: AwareDatetime
    data: TaskPublic | CategoryPublic | dict[str, Any]


@dataclass(frozen=True, slots=True)
class Event:
    """What a write tells the webhooks subscribed to `type`."""

    type: str
    data: TaskPublic | CategoryPublic | dict[str, Any]


def _next_in_line(dialect: str) -> Any:
    """The next number of a webhook's line: after the write's transaction id, as the feed
    numbers (PostgreSQL), or after the line's last (SQLite, one writer at a time)."""
    if dialect == "postgresql":
        return TRANSACTION_NUMBER + bindparam("n")
    last = select(func.coalesce(func.max(_d.seq), 0)).where(
        _d.user_id == _h.user_id, _d.webhook_id == _h.id
    )
    return last.scalar_subquery() + bindparam("n")


def _enqueue(dialect: str, *conditions: Any) -> Any:
    """A delivery of the bound message to each of the caller's webhooks that matches."""
    values = select(
        _h.user_id,
        _h.id,
        bindparam("id", type_=Uuid()),
        _next_in_line(dialect),
        bindparam("type", type_=String()),
        bindparam("body", type_=String()),
        bindparam("at", type_=UTCDateTime()),
        literal("pending"),
        literal(0),
        bindparam("at", type_=UTCDateTime()),
    ).where(owned_by(_h.user_id), *conditions)
    columns = ["user_id", "webhook_id", "id", "seq", "type", "body", "created_at"]
    columns += ["status", "attempts", "next_attempt_at"]
    return insert(_DELIVERIES).from_select(columns, values)


_SUBSCRIBED = (_h.enabled, _h.event_mask.op("&")(bindparam("bit")) != 0)
_ENQUEUE = {dialect: _enqueue(dialect, *_SUBSCRIBED) for dialect in ("postgresql", "sqlite")}
_PING = {dialect: _enqueue(dialect, _h.id == bindparam("webhook")) for dialect in _ENQUEUE}


def enqueue(connection: Connection, user_id: str, events: list[Event], at: datetime) -> None:
    """A delivery of each event to each webhook of `user_id` subscribed to it, in one
    statement, from inside a write's transaction (`UnitOfWork`)."""
    if not events:
        return
    rows = [
        {
            OWNER: user_id,
            "bit": WEBHOOK_EVENTS[event.type],
            "n": n,
            "id": uuid7(),
            "type": event.type,
            "body": Message(type=event.type, timestamp=at, data=event.data).model_dump_json(),
            "at": at,
        }
        for n, event in enumerate(events, start=1)
    ]
    connection.execute(_ENQUEUE[connection.dialect.name], rows)


def ping_params(user_id: str, webhook_id: UUID, at: datetime) -> tuple[dict[str, Any], UUID]:
    """The parameters of a ping of one webhook (`ping_statement`), and its delivery's id."""
    message_id = uuid7()
    body = Message(type=PING, timestamp=at, data={"webhook_id": str(webhook_id)})
    params = {
        OWNER: user_id,
        "webhook": webhook_id,
        "n": 1,
        "id": message_id,
        "type": PING,
        "body": body.model_dump_json(),
        "at": at,
    }
    return params, message_id


def ping_statement(dialect: str) -> Any:
    return _PING[dialect]


# The caller's view ---------------------------------------------------------------------

NEWEST_FIRST = Keyset(
    name="-created_at",
    column=WebhookDelivery.created_at,  # type: ignore[arg-type]
    tiebreak=WebhookDelivery.id,  # type: ignore[arg-type]
    adapter=TypeAdapter(AwareDatetime),
    descending=True,
)
_LISTED: Select[Any] = select(WebhookDelivery).where(
    owned_by(WebhookDelivery.user_id),
    _d.webhook_id == bindparam("webhook"),
)


async def list_deliveries(
    session: AsyncSession, *, user_id: str, webhook_id: UUID, page: PageRequest[Any]
) -> tuple[list[Record], str | None]:
    return await fetch_page(
        session,
        _LISTED,
        keyset=NEWEST_FIRST,
        page=page,
        owner=user_id,
        scope=f"deliveries:{webhook_id}",
        params={"webhook": webhook_id},
    )


_ONE = (
    owned_by(_d.user_id),
    _d.webhook_id == bindparam("webhook"),
    _d.id == bindparam("delivery"),
)
GET_DELIVERY = select(_DELIVERIES).where(*_ONE)
GET_DELIVERY_LOCKED = GET_DELIVERY.with_for_update()
REDELIVER = (
    update(_DELIVERIES)
    .where(*_ONE)
    .values(status="pending", attempts=0, next_attempt_at=bindparam("at"))
)
"""A delivery due now, its schedule started over, with the same id (one in flight keeps its
lease, and a result recorded under the old attempt count is dropped: it goes again)."""


# The worker's view (a connection row-level security does not hold) ----------------------


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
            ~exists().where(
                earlier.c.user_id == _d.user_id,
                earlier.c.webhook_id == _d.webhook_id,
                earlier.c.status == "pending",
                earlier.c.seq < _d.seq,
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
that took a lower number and commits later must not be passed in its line."""


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
        _d.user_id == bindparam("owner"),
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
    .where(_h.user_id == bindparam("owner"), _h.id == bindparam("webhook"), _h.enabled)
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
    keys = {"owner": claimed.user_id, "webhook": claimed.webhook_id}
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
