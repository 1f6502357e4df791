"""The change feed: per user, each task's and category's last change, numbered in commit
order, so that a client syncs "what changed since I last looked" (decision 30).

A write numbers its changes under the lock of its user's row (`users.change_seq`), taken
just before its `COMMIT` (`UnitOfWork`): a second writer of the same user waits for the
first to commit before it takes the next number, so numbers commit in order and a reader
can never see a number while an earlier one is still to come. Each entity keeps one row,
its latest change (an upsert moves it to the end of the feed), so a page holds each
entity at most once; a deletion stays as a row of its own for `CHANGES_RETENTION_DAYS`.
"""

import time
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from pydantic import TypeAdapter
from sqlalchemy import Connection, and_, bindparam, delete, literal, or_, select, text, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.db import read_rows
from backend.errors import SyncExpired
from backend.fields import ChangeEntity, ChangeOp
from backend.models import (
    Category,
    CategoryPublic,
    Change,
    ChangesPage,
    Task,
    TaskPublic,
    User,
)
from backend.owned import OWNER, owned_by
from backend.pagination import CursorSigner, bad_cursor

FEED_SCOPE = "changes"
PRUNE_MARGIN_SECONDS = 3600
"""Deletions are pruned this long after a token of their age stops being accepted: a
deletion is stamped when its write starts, a token when its read ends."""

_CHANGES = Change.__table__  # type: ignore[attr-defined]
_USERS = User.__table__  # type: ignore[attr-defined]
_TASKS = TaskPublic.model_fields
_CATEGORIES = CategoryPublic.model_fields


_INSERT = sqlite.insert(_CHANGES)
_UPSERT = _INSERT.on_conflict_do_update(
    index_elements=["user_id", "entity", "entity_id"],
    set_={name: _INSERT.excluded[name] for name in ("seq", "op", "version", "changed_at")},
)
"""SQLite: store numbered changes, each replacing its entity's last."""
_NUMBER = (
    update(_USERS)
    .where(owned_by(_USERS.c.id))
    .values(change_seq=_USERS.c.change_seq + bindparam("count"))
    .returning(_USERS.c.change_seq)
)


def append_changes(
    connection: Connection,
    user_id: str,
    changes: dict[tuple[ChangeEntity, UUID], tuple[ChangeOp, int]],
    at: datetime,
) -> None:
    """Number `changes` ((entity, id): (op, version)) after the user's last and store them,
    from inside a write's transaction, last before its `COMMIT` (`UnitOfWork`)."""
    if not changes:
        return
    if connection.dialect.name == "postgresql":
        entities, ids = zip(*changes, strict=True)
        ops, versions = zip(*changes.values(), strict=True)
        arrays = {"entities": entities, "ids": ids, "ops": ops, "versions": versions}
        params = {OWNER: user_id, "count": len(changes), "at": at}
        connection.execute(_NUMBER_AND_STORE, params | {k: list(v) for k, v in arrays.items()})
        return
    last = connection.execute(_NUMBER, {OWNER: user_id, "count": len(changes)}).scalar_one()
    first = last - len(changes) + 1
    rows = [
        {
            "user_id": user_id,
            "entity": entity,
            "entity_id": entity_id,
            "seq": first + number,
            "op": op,
            "version": version,
            "changed_at": at,
        }
        for number, ((entity, entity_id), (op, version)) in enumerate(changes.items())
    ]
    connection.execute(_UPSERT, rows)


_NUMBER_AND_STORE = text(  # `owner_id` is `OWNER`, as in every owned statement
    """
    WITH head AS (
        UPDATE users SET change_seq = change_seq + :count
        WHERE id = :owner_id RETURNING change_seq
    )
    INSERT INTO changes (user_id, entity, entity_id, seq, op, version, changed_at)
    SELECT :owner_id, e.entity, e.entity_id, head.change_seq - :count + e.n, e.op, e.version, :at
    FROM head, unnest(
        CAST(:entities AS varchar[]), CAST(:ids AS uuid[]),
        CAST(:ops AS varchar[]), CAST(:versions AS integer[])
    ) WITH ORDINALITY AS e (entity, entity_id, op, version, n)
    ON CONFLICT (user_id, entity, entity_id) DO UPDATE SET
        seq = excluded.seq, op = excluded.op, version = excluded.version,
        changed_at = excluded.changed_at
    """
)
"""PostgreSQL: `_NUMBER` and `_UPSERT` in one statement, one round trip less a write
(optimisation 28): the user's row is updated in a data-modifying `WITH`, which SQLite
does not have, and the changes arrive as arrays."""


def _feed() -> Any:
    tasks, categories = Task.__table__, Category.__table__  # type: ignore[attr-defined]
    c = _CHANGES.c
    joined = _CHANGES.outerjoin(
        tasks,
        and_(tasks.c.user_id == c.user_id, tasks.c.id == c.entity_id, c.entity == literal("task")),
    ).outerjoin(
        categories,
        and_(
            categories.c.user_id == c.user_id,
            categories.c.id == c.entity_id,
            c.entity == literal("category"),
        ),
    )
    columns = [
        c.entity,
        c.entity_id,
        c.seq,
        c.op,
        c.version,
        *(tasks.c[name].label(f"task.{name}") for name in _TASKS),
        *(categories.c[name].label(f"category.{name}") for name in _CATEGORIES),
    ]
    return (
        select(*columns)
        .select_from(joined)
        .where(
            owned_by(c.user_id),
            c.seq > bindparam("after"),
            or_(c.op == "upsert", c.seq > bindparam("deletes_after")),
        )
        .order_by(c.seq)
        .limit(bindparam("limit"))
    )


_FEED = _feed()
"""The user's changes after `after` in commit order, each with its entity's current
state; deletions only after `deletes_after` (a sync that starts over needs none from
before it started)."""
_HEAD = select(_USERS.c.change_seq).where(owned_by(_USERS.c.id))


async def list_changes(
    session: AsyncSession,
    *,
    user_id: str,
    since: str | None,
    limit: int,
    signer: CursorSigner,
    retention: timedelta,
) -> ChangesPage:
    """The changes after `since` (every live entity, without it), at most `limit`.

    A token carries the time from which its holder has seen every deletion: the end of the
    read that reached the end of the feed, or, while pages follow (`has_more`), the time
    of the token the paging started from (of the head read, for a sync that starts over):
    a client that stops half way must not hold a token younger than what it missed."""
    if since is None:
        seen_at = int(time.time())
        _, head = await read_rows(session, _HEAD, {OWNER: user_id})
        after, deletes_after = 0, head[0][0] if head else 0
    else:
        after, deletes_after, seen_at = _read_token(signer, user_id, since, retention)
    params = {OWNER: user_id, "after": after, "deletes_after": deletes_after, "limit": limit + 1}
    names, rows = await read_rows(session, _FEED, params)
    records = [dict(zip(names, row, strict=True)) for row in rows]
    has_more = len(records) > limit
    records = records[:limit]
    if records:
        after = records[-1]["seq"]
    return _PAGE.validate_python(
        {
            "changes": [_change(record) for record in records],
            "next_since": signer.encode(
                user_id,
                FEED_SCOPE,
                [
                    after,
                    deletes_after if deletes_after > after else 0,
                    seen_at if has_more else int(time.time()),
                ],
            ),
            "has_more": has_more,
        }
    )


_PAGE = TypeAdapter(ChangesPage)
"""A page validated whole from plain dicts, in one call into pydantic-core."""


def _change(record: dict[str, Any]) -> dict[str, Any]:
    entity = record["entity"]
    data = None
    if record["op"] == "upsert":
        fields = _TASKS if entity == "task" else _CATEGORIES
        data = {name: record[f"{entity}.{name}"] for name in fields}
    return {
        "entity": entity,
        "id": record["entity_id"],
        "op": record["op"],
        "version": record["version"],
        "data": data,
    }


def _read_token(
    signer: CursorSigner, user_id: str, token: str, retention: timedelta
) -> tuple[int, int, int]:
    values = signer.decode(user_id, FEED_SCOPE, token, field="since")
    if len(values) != 3 or not all(type(value) is int for value in values):
        raise bad_cursor("since")
    after, deletes_after, seen_at = values
    if time.time() - seen_at > retention.total_seconds():
        raise SyncExpired
    return after, deletes_after, seen_at


_PRUNE = delete(_CHANGES).where(
    _CHANGES.c.op == "delete", _CHANGES.c.changed_at < bindparam("before")
)


async def prune_changes(connection: AsyncConnection, *, retention: timedelta, now: datetime) -> int:
    """Forget every user's deletions older than any token still accepted; how many
    (`todo-api prune`, on a connection that row-level security does not hold)."""
    before = now - retention - timedelta(seconds=PRUNE_MARGIN_SECONDS)
    return (await connection.execute(_PRUNE, {"before": before})).rowcount
