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
from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import AwareDatetime, BaseModel
from sqlalchemy import (
    Connection,
    String,
    Uuid,
    bindparam,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.sql import Select
from sqlmodel.ext.asyncio.session import AsyncSession
from uuid6 import uuid7

from backend.changes.service import TRANSACTION_NUMBER
from backend.db import UTCDateTime
from backend.fields import WEBHOOK_EVENTS
from backend.models import CategoryPublic, ReminderPublic, TaskPublic, Webhook, WebhookDelivery
from backend.owned import OWNER, owned_by
from backend.pagination import PageRequest, Record, fetch_page, newest_first

PING = "webhook.ping"

_HOOKS = Webhook.__table__  # type: ignore[attr-defined]
_DELIVERIES = WebhookDelivery.__table__  # type: ignore[attr-defined]
_h, _d = _HOOKS.c, _DELIVERIES.c


class Message(BaseModel):
    """A delivery's body (Standard Webhooks): the event's type, when it happened, and the
    entity as GET shows it, or the id of a deleted one."""

    type: str
    timestamp: AwareDatetime
    data: TaskPublic | CategoryPublic | ReminderPublic | dict[str, Any]


@dataclass(frozen=True, slots=True)
class Event:
    """What a write tells the webhooks subscribed to `type`."""

    type: str
    data: TaskPublic | CategoryPublic | ReminderPublic | dict[str, Any]


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


def enqueue(
    connection: Connection, user_id: str, events: list[Event], at: datetime, *, taken: int = 0
) -> None:
    """A delivery of each event to each webhook of `user_id` subscribed to it, in one
    statement, from inside a write's transaction (`UnitOfWork`); numbered after the
    `taken` numbers of earlier writes of the transaction, as the feed is."""
    if not events:
        return
    rows = [
        {
            OWNER: user_id,
            "bit": WEBHOOK_EVENTS[event.type],
            "n": taken + n,
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

NEWEST_FIRST = newest_first(WebhookDelivery.__table__)  # type: ignore[attr-defined]
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
