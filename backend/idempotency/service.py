"""Idempotency keys: the answer of a write, stored in the write's own transaction, and
found again for a retry."""

from datetime import datetime, timedelta

from sqlalchemy import Connection, bindparam, delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.db import read_rows
from backend.models import IdempotencyRecord
from backend.owned import OWNER, owned_by

LIFETIME = timedelta(hours=24)

_TABLE = IdempotencyRecord.__table__  # type: ignore[attr-defined]
_FIND = select(_TABLE).where(
    owned_by(_TABLE.c.user_id),
    _TABLE.c.key == bindparam("key"),
    _TABLE.c.expires_at > bindparam("now"),
)
_FORGET_EXPIRED = delete(_TABLE).where(
    owned_by(_TABLE.c.user_id),
    _TABLE.c.key == bindparam("key"),
    _TABLE.c.expires_at <= bindparam("now"),
)
_INSERT = insert(_TABLE)


async def find_answer(
    session: AsyncSession, *, user_id: str, key: str, now: datetime
) -> IdempotencyRecord | None:
    """The answer stored for `key`, if a write with it committed and has not expired."""
    names, rows = await read_rows(session, _FIND, {OWNER: user_id, "key": key, "now": now})
    return (
        IdempotencyRecord.model_validate(dict(zip(names, rows[0], strict=True))) if rows else None
    )


def store_answer(connection: Connection, answer: IdempotencyRecord) -> None:
    """Store a write's answer in the write's transaction, before its `COMMIT`: both land or
    neither does. A concurrent request with the same key that committed first makes this
    `INSERT` fail on the key (an `IntegrityError`), and its transaction, write included,
    rolls back."""
    now = answer.created_at
    params = {OWNER: answer.user_id, "key": answer.key, "now": now}
    connection.execute(_FORGET_EXPIRED, params)
    connection.execute(_INSERT, answer.model_dump())


_PRUNE = delete(IdempotencyRecord).where(col(IdempotencyRecord.expires_at) <= bindparam("now"))


async def prune_keys(connection: AsyncConnection, *, now: datetime) -> int:
    """Forget every user's expired keys; how many (`todo-api prune`)."""
    return (await connection.execute(_PRUNE, {"now": now})).rowcount
