"""Idempotency keys: claim a key for a write, record its response, find it again."""

import asyncio
from datetime import datetime, timedelta

from sqlalchemy import bindparam, delete
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.db import utcnow
from backend.errors import Conflict, InvalidInput
from backend.models import IdempotencyRecord

LIFETIME = timedelta(hours=24)
WAIT_FOR_FIRST_SECONDS = 5.0
POLL_SECONDS = 0.05


async def claim_key(
    session: AsyncSession, *, user_id: str, key: str, fingerprint: str
) -> IdempotencyRecord | None:
    """Claim `key` for this request (None), or the finished record of an earlier one.

    A retry while the first request is in flight waits for it a little, then is 409; the
    same key with another request is 422.
    """
    now = utcnow()
    await session.exec(
        delete(IdempotencyRecord).where(
            col(IdempotencyRecord.user_id) == user_id, col(IdempotencyRecord.expires_at) <= now
        )
    )
    dialect = session.bind.dialect.name if session.bind else "sqlite"
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    claimed = await session.exec(
        insert(IdempotencyRecord)
        .values(
            user_id=user_id,
            key=key,
            fingerprint=fingerprint,
            created_at=now,
            expires_at=now + LIFETIME,
        )
        .on_conflict_do_nothing(index_elements=["user_id", "key"])
        .returning(col(IdempotencyRecord.key))
    )
    won = claimed.first() is not None
    await session.commit()
    if won:
        return None
    waited = 0.0
    while True:
        record = await _find(session, user_id=user_id, key=key)
        if record is None:  # released by a failed first attempt: claim it anew
            return await claim_key(session, user_id=user_id, key=key, fingerprint=fingerprint)
        if record.fingerprint != fingerprint:
            raise InvalidInput(
                ("header", "Idempotency-Key"),
                "This key was used for a different request.",
                "idempotency_key_reused",
            )
        if record.status_code is not None:
            return record
        if waited >= WAIT_FOR_FIRST_SECONDS:
            raise Conflict("A request with this Idempotency-Key is still in progress.")
        await asyncio.sleep(POLL_SECONDS)
        waited += POLL_SECONDS


async def record_response(
    session: AsyncSession,
    *,
    user_id: str,
    key: str,
    status_code: int,
    headers: dict[str, str],
    body: str,
) -> None:
    record = await _find(session, user_id=user_id, key=key)
    if record is None:
        return
    record.status_code, record.headers, record.body = status_code, headers, body
    session.add(record)
    await session.commit()


async def release_key(session: AsyncSession, *, user_id: str, key: str) -> None:
    """Forget a claim whose request failed, so that a retry runs it again."""
    await session.exec(
        delete(IdempotencyRecord).where(
            col(IdempotencyRecord.user_id) == user_id,
            col(IdempotencyRecord.key) == key,
            col(IdempotencyRecord.status_code).is_(None),
        )
    )
    await session.commit()


async def _find(session: AsyncSession, *, user_id: str, key: str) -> IdempotencyRecord | None:
    statement = select(IdempotencyRecord).where(
        IdempotencyRecord.user_id == user_id, IdempotencyRecord.key == key
    )
    session.expire_all()  # another request may have written it since
    return (await session.exec(statement)).first()


_PRUNE = delete(IdempotencyRecord).where(col(IdempotencyRecord.expires_at) <= bindparam("now"))


async def prune_keys(connection: AsyncConnection, *, now: datetime) -> int:
    """Forget every user's expired keys; how many (`todo-api prune`)."""
    return (await connection.execute(_PRUNE, {"now": now})).rowcount
