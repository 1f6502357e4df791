"""Webhooks: a user's endpoints, their secrets (shown once, rotated with a day of overlap)
and what the caller sees of their deliveries (the outbox is `deliveries.service`)."""

import base64
import secrets
from collections.abc import Awaitable, Callable, Collection
from datetime import timedelta
from functools import reduce
from ipaddress import ip_address
from typing import Any, TypeVar
from uuid import UUID

from pydantic import HttpUrl
from sqlalchemy import func
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession
from uuid6 import uuid7

from backend.conditions import UNCONDITIONAL, Precondition, change_current_row
from backend.db import read_rows
from backend.deliveries import service as deliveries
from backend.errors import Conflict, InvalidInput, NotFound
from backend.fields import WEBHOOK_EVENTS
from backend.models import (
    DeliveryPublic,
    PageQuery,
    Webhook,
    WebhookCreate,
    WebhookCreated,
    WebhookPublic,
)
from backend.owned import OWNER, OwnedTable, owned_by
from backend.pagination import PageRequest, Record, fetch_page, newest_first
from backend.unit_of_work import UnitOfWork

SECRET_PREFIX = "whsec_"  # noqa: S105 (the format, not a secret)
SECRET_BYTES = 32
T = TypeVar("T")
MAX_WEBHOOKS_PER_USER = 10
URL_MAX_LENGTH = 2083
ROTATION_OVERLAP = timedelta(hours=24)
"""After a rotation, deliveries carry a signature by the old secret too, this long."""

_ROWS = OwnedTable(Webhook)
_COUNT = select(func.count()).where(owned_by(Webhook.user_id))
_ROTATE = _ROWS.update.values(previous_secret=_ROWS.table.c.secret)
"""The secret replaced, the one it replaces kept (SQL sets from the row as it was)."""
_LISTED = select(Webhook).where(owned_by(Webhook.user_id))
NEWEST_FIRST = newest_first(Webhook.__table__)  # type: ignore[attr-defined]


def new_secret() -> str:
    """A Standard Webhooks secret: `whsec_` and 32 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def event_mask(events: Collection[str]) -> int:
    return reduce(lambda mask, name: mask | WEBHOOK_EVENTS[name], events, 0)


def check_url(url: HttpUrl, allowed_hosts: Collection[str]) -> str:
    """The URL to store: `https`, and not an address inside the network, unless its host
    is allowed (`WEBHOOK_ALLOWED_HOSTS`). Where a name leads is checked at each delivery."""
    if len(str(url)) > URL_MAX_LENGTH:  # as normalised (an IDN host grows as punycode)
        raise InvalidInput(("body", "url"), "webhook_url_too_long")
    host = url.host or ""
    if host in allowed_hosts:
        return str(url)
    if url.scheme != "https":
        raise InvalidInput(("body", "url"), "webhook_url_not_https")
    try:
        address = ip_address(host.strip("[]"))
    except ValueError:
        return str(url)
    if not address.is_global:
        raise InvalidInput(("body", "url"), "webhook_url_not_public")
    return str(url)


async def list_webhooks(
    session: AsyncSession, *, user_id: str, page: PageRequest[PageQuery]
) -> tuple[list[Record], str | None]:
    return await fetch_page(
        session, _LISTED, keyset=NEWEST_FIRST, page=page, owner=user_id, scope="webhooks"
    )


async def get_webhook(
    session: AsyncSession, *, user_id: str, webhook_id: UUID, for_update: bool = False
) -> WebhookPublic:
    row = await _ROWS.get(session, owner=user_id, row_id=webhook_id, for_update=for_update)
    if row is None:
        raise NotFound
    return WebhookPublic.model_validate(row)


async def create_webhook(
    session: AsyncSession,
    *,
    user_id: str,
    webhook_in: WebhookCreate,
    allowed_hosts: Collection[str],
) -> WebhookCreated:
    """The new webhook with its secret, shown this once."""
    url = check_url(webhook_in.url, allowed_hosts)
    if (await session.exec(_COUNT, params={OWNER: user_id})).one() >= MAX_WEBHOOKS_PER_USER:
        raise Conflict(f"At most {MAX_WEBHOOKS_PER_USER} webhooks per user.")
    work = UnitOfWork(user_id)
    events = sorted(set(webhook_in.events))
    row = {
        "user_id": user_id,
        "id": uuid7(),
        "url": url,
        "events": events,
        "event_mask": event_mask(events),
        "enabled": webhook_in.enabled,
        "disabled_reason": None,
        "secret": new_secret(),
        "previous_secret": None,
        "previous_secret_until": None,
        "created_at": work.at,
        "updated_at": work.at,
        "version": 1,
    }
    work.execute(_ROWS.insert, row, guarded=False)
    await work.commit(session)
    return WebhookCreated.model_validate(row)


async def update_webhook(
    session: AsyncSession,
    *,
    user_id: str,
    webhook_id: UUID,
    changes: dict[str, Any],
    allowed_hosts: Collection[str],
    precondition: Precondition = UNCONDITIONAL,
) -> WebhookPublic:
    """Apply `changes` (field: new value); enabling clears the reason it was disabled."""
    if "url" in changes:
        changes["url"] = check_url(changes["url"], allowed_hosts)
    if "events" in changes:
        changes["events"] = sorted(set(changes["events"]))

    async def change(webhook: WebhookPublic) -> WebhookPublic:
        updates = {
            name: value for name, value in changes.items() if getattr(webhook, name) != value
        }
        if not updates:
            return webhook
        work = UnitOfWork(user_id)
        if updates.get("enabled"):
            updates["disabled_reason"] = None
        updates |= {"updated_at": work.at, "version": webhook.version + 1}
        values = updates | (
            {"event_mask": event_mask(updates["events"])} if "events" in updates else {}
        )
        params = _ROWS.params(user_id, webhook_id, read_version=webhook.version, values=values)
        work.execute(_ROWS.update, params, guarded=True)
        await work.commit(session)
        return webhook.model_copy(update=updates)

    return await _change(session, user_id, webhook_id, change, precondition)


async def rotate_webhook_secret(
    session: AsyncSession, *, user_id: str, webhook_id: UUID
) -> WebhookCreated:
    """A new secret, shown this once; the old one still signs for `ROTATION_OVERLAP`."""

    async def change(webhook: WebhookPublic) -> WebhookCreated:
        work = UnitOfWork(user_id)
        secret = new_secret()
        updates = {"updated_at": work.at, "version": webhook.version + 1}
        values = updates | {
            "secret": secret,
            "previous_secret_until": work.at + ROTATION_OVERLAP,
        }
        params = _ROWS.params(user_id, webhook_id, read_version=webhook.version, values=values)
        work.execute(_ROTATE, params, guarded=True)
        await work.commit(session)
        return WebhookCreated(**webhook.model_copy(update=updates).model_dump(), secret=secret)

    return await _change(session, user_id, webhook_id, change, UNCONDITIONAL)


async def delete_webhook(
    session: AsyncSession,
    *,
    user_id: str,
    webhook_id: UUID,
    precondition: Precondition = UNCONDITIONAL,
) -> None:
    """Delete the webhook and its deliveries, delivered or not."""

    async def change(webhook: WebhookPublic) -> None:
        work = UnitOfWork(user_id)
        params = _ROWS.params(user_id, webhook_id, read_version=webhook.version)
        work.execute(_ROWS.delete, params, guarded=True)
        await work.commit(session)

    await _change(session, user_id, webhook_id, change, precondition)


async def _change(
    session: AsyncSession,
    user_id: str,
    webhook_id: UUID,
    change: Callable[[WebhookPublic], Awaitable[T]],
    precondition: Precondition,
) -> T:
    return await change_current_row(
        session,
        read=lambda locked: get_webhook(
            session, user_id=user_id, webhook_id=webhook_id, for_update=locked
        ),
        change=change,
        precondition=precondition,
    )


# Deliveries ------------------------------------------------------------------------------


async def list_deliveries(
    session: AsyncSession, *, user_id: str, webhook_id: UUID, page: PageRequest[PageQuery]
) -> tuple[list[Record], str | None]:
    """The webhook's deliveries, newest first; 404 if the webhook is not the caller's."""
    await get_webhook(session, user_id=user_id, webhook_id=webhook_id)
    return await deliveries.list_deliveries(
        session, user_id=user_id, webhook_id=webhook_id, page=page
    )


async def ping_webhook(session: AsyncSession, *, user_id: str, webhook_id: UUID) -> DeliveryPublic:
    """A `webhook.ping` delivery, in the webhook's line like any event."""
    await get_webhook(session, user_id=user_id, webhook_id=webhook_id, for_update=True)
    work = UnitOfWork(user_id)
    params, message_id = deliveries.ping_params(user_id, webhook_id, work.at)
    dialect = (await session.connection()).dialect.name
    work.execute(deliveries.ping_statement(dialect), params, guarded=True)
    await work.commit(session)
    return await _delivery(session, user_id, webhook_id, message_id)


async def redeliver_delivery(
    session: AsyncSession, *, user_id: str, webhook_id: UUID, delivery_id: UUID
) -> DeliveryPublic:
    """A delivery sent again now with the same `webhook-id`, its retries started over (in
    its webhook's line, and not while the webhook is disabled)."""
    delivery = await _delivery(session, user_id, webhook_id, delivery_id, for_update=True)
    work = UnitOfWork(user_id)
    params = {OWNER: user_id, "webhook": webhook_id, "delivery": delivery_id, "at": work.at}
    work.execute(deliveries.REDELIVER, params, guarded=False)
    await work.commit(session)
    return delivery.model_copy(
        update={"status": "pending", "attempts": 0, "next_attempt_at": work.at}
    )


async def _delivery(
    session: AsyncSession,
    user_id: str,
    webhook_id: UUID,
    delivery_id: UUID,
    *,
    for_update: bool = False,
) -> DeliveryPublic:
    statement = deliveries.GET_DELIVERY_LOCKED if for_update else deliveries.GET_DELIVERY
    params = {OWNER: user_id, "webhook": webhook_id, "delivery": delivery_id}
    names, rows = await read_rows(session, statement, params)
    if not rows:
        raise NotFound
    return DeliveryPublic.model_validate(dict(zip(names, rows[0], strict=True)))
