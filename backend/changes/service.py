"""The change feed: per user, each task's and category's last change, numbered so that a
reader never skips one that commits late, so that a client syncs "what changed since I
last looked" (decision 30).

Each entity keeps one row, its latest change (an upsert moves it to the end of the feed),
so a page holds each entity at most once; a deletion stays as a row of its own for
`CHANGES_RETENTION_DAYS`. A reader reads only below `settled_below()`, the number under
which every change has committed and none will commit later:

- PostgreSQL numbers a write's changes after its transaction id, which concurrent
  writers take without waiting for each other, and settles the numbers below the oldest
  transaction still running (its snapshot's `xmin`): a writer that took a lower id
  and commits later holds back the reader, which therefore never passes it.
- SQLite has one writer at a time: a write takes the next numbers of its user's counter
  (`users.change_seq`), and every number of the counter has committed.
"""

import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from pydantic import TypeAdapter
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    String,
    and_,
    bindparam,
    cast,
    delete,
    exists,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.db import read_rows
from backend.errors import SyncExpired
from backend.fields import ChangeEntity, ChangeOp
from backend.models import (
    Category,
    CategoryPublic,
    Change,
    ChangesPage,
    ReminderPublic,
    ScheduledReminder,
    Task,
    TaskPublic,
    User,
    Webhook,
)
from backend.owned import OWNER, owned_by
from backend.pagination import CursorSigner, bad_cursor

FEED_SCOPE = "changes"
PRUNE_MARGIN_SECONDS = 3600
"""Deletions are pruned this long after a token of their age stops being accepted: a
deletion is stamped when its write starts, a token when its read ends."""
NUMBERS_PER_TRANSACTION = 2**20
"""PostgreSQL: a write's changes are numbered `xid * NUMBERS_PER_TRANSACTION + 1, 2, ...`
(a category's deletion numbers one change for each of its tasks); a 64-bit number leaves
room for 2^43 transaction ids."""

_CHANGES = Change.__table__  # type: ignore[attr-defined]
_USERS = User.__table__  # type: ignore[attr-defined]
_WEBHOOKS = Webhook.__table__  # type: ignore[attr-defined]
_TASKS = TaskPublic.model_fields
_CATEGORIES = CategoryPublic.model_fields
_REMINDERS = ReminderPublic.model_fields
_FIELDS = {"task": _TASKS, "category": _CATEGORIES, "reminder": _REMINDERS}


class settled_below(FunctionElement[int]):  # noqa: N801 (an SQL function, named like one)
    """The change number below which every change of the user has committed and none will
    commit later: a reader reads below it (the module's docstring)."""

    type = BigInteger()
    inherit_cache = True


@compiles(settled_below, "postgresql")
def _settled_on_postgresql(element: settled_below, compiler: SQLCompiler, **kw: Any) -> str:
    xmin = "pg_snapshot_xmin(pg_current_snapshot())"
    return f"(CAST(CAST({xmin} AS text) AS bigint) * {NUMBERS_PER_TRANSACTION})"


@compiles(settled_below, "sqlite")
def _settled_on_sqlite(element: settled_below, compiler: SQLCompiler, **kw: Any) -> str:
    head = select(_USERS.c.change_seq + 1).where(owned_by(_USERS.c.id)).scalar_subquery()
    return compiler.process(head, **kw)


_LISTENED = exists().where(owned_by(_WEBHOOKS.c.user_id), _WEBHOOKS.c.enabled)
"""Whether the user has an enabled webhook, which then hears of the write's changes."""


def _upsert(insert: Any, seq: ColumnElement[int]) -> Any:
    """Store a change numbered `seq`, replacing its entity's last, and answer whether a
    webhook listens (built once per dialect)."""
    statement = insert(_CHANGES).values(seq=seq)
    replaced = {name: statement.excluded[name] for name in ("seq", "op", "version", "changed_at")}
    return statement.on_conflict_do_update(
        index_elements=["user_id", "entity", "entity_id"], set_=replaced
    ).returning(_LISTENED)


TRANSACTION_NUMBER = (
    cast(cast(func.pg_current_xact_id(), String), BigInteger) * NUMBERS_PER_TRANSACTION
)
"""PostgreSQL: the number a write's own numbers follow (its transaction id's block)."""
_UPSERTS = {
    "postgresql": _upsert(postgresql.insert, TRANSACTION_NUMBER + bindparam("n")),
    "sqlite": _upsert(sqlite.insert, bindparam("before") + bindparam("n")),
}
"""A write's changes are numbered `n` = 1, 2, ... after its transaction id (PostgreSQL) or
after the numbers taken `before` from the user's counter (SQLite)."""
_NUMBER = (
    update(_USERS)
    .where(owned_by(_USERS.c.id))
    .values(change_seq=_USERS.c.change_seq + bindparam("count"))
    .returning(_USERS.c.change_seq - bindparam("count"))
)
"""SQLite: take the next `count` numbers of the user's counter; the last number before."""


def append_changes(
    connection: Connection,
    user_id: str,
    changes: dict[tuple[ChangeEntity, UUID], tuple[ChangeOp, int]],
    at: datetime,
    *,
    taken: int = 0,
) -> bool:
    """Number `changes` ((entity, id): (op, version)) and store them, in one statement, from
    inside a write's transaction (`UnitOfWork`); whether one of the user's webhooks is
    enabled, so that a write of a user without any makes no round trip for them.

    `taken`: the numbers earlier writes of the same transaction took (a batch's share
    one transaction id on PostgreSQL; SQLite's counter already moved past them)."""
    if not changes:
        return False
    dialect = connection.dialect.name
    before, offset = 0, taken  # PostgreSQL: after the transaction's earlier writes
    if dialect == "sqlite":  # after the user's counter, which moved past them already
        before = connection.execute(_NUMBER, {OWNER: user_id, "count": len(changes)}).scalar_one()
        offset = 0
    rows = [
        {
            "user_id": user_id,
            OWNER: user_id,
            "entity": entity,
            "entity_id": entity_id,
            "n": offset + n,
            "before": before,
            "op": op,
            "version": version,
            "changed_at": at,
        }
        for n, ((entity, entity_id), (op, version)) in enumerate(changes.items(), start=1)
    ]
    return any(listened for (listened,) in connection.execute(_UPSERTS[dialect], rows))


def _feed() -> Any:
    tasks, categories = Task.__table__, Category.__table__  # type: ignore[attr-defined]
    reminders = ScheduledReminder.__table__  # type: ignore[attr-defined]
    c = _CHANGES.c
    joined = (
        _CHANGES.outerjoin(
            tasks,
            and_(
                tasks.c.user_id == c.user_id, tasks.c.id == c.entity_id, c.entity == literal("task")
            ),
        )
        .outerjoin(
            categories,
            and_(
                categories.c.user_id == c.user_id,
                categories.c.id == c.entity_id,
                c.entity == literal("category"),
            ),
        )
        .outerjoin(
            reminders,
            and_(
                reminders.c.user_id == c.user_id,
                reminders.c.id == c.entity_id,
                c.entity == literal("reminder"),
            ),
        )
    )
    columns = [
        c.entity,
        c.entity_id,
        c.seq,
        c.op,
        c.version,
        *(tasks.c[name].label(f"task.{name}") for name in _TASKS),
        *(categories.c[name].label(f"category.{name}") for name in _CATEGORIES),
        *(reminders.c[name].label(f"reminder.{name}") for name in _REMINDERS),
    ]
    return (
        select(*columns)
        .select_from(joined)
        .where(
            owned_by(c.user_id),
            c.seq > bindparam("after"),
            c.seq < settled_below(),
            or_(
                and_(c.op == "upsert", or_(c.entity != "reminder", reminders.c.id.is_not(None))),
                c.seq > bindparam("deletes_after"),
            ),
        )
        .order_by(c.seq)
        .limit(bindparam("limit"))
    )


_FEED = _feed()
"""The user's settled changes after `after` in order, each with its entity's current
state; deletions only after `deletes_after` (a sync that starts over needs none from
before it started)."""
_HEAD = select(settled_below() - 1)
"""The last number a sync that starts over may skip deletions up to."""


@dataclass(frozen=True, slots=True)
class Position:
    """Where a reader of the feed stands: every change up to `after` read, deletions only
    after `deletes_after` wanted, and every deletion seen as of `seen_at` (Unix time)."""

    after: int
    deletes_after: int
    seen_at: int

    def token(self, signer: CursorSigner, user_id: str) -> str:
        deletes_after = self.deletes_after if self.deletes_after > self.after else 0
        return signer.encode(user_id, FEED_SCOPE, [self.after, deletes_after, self.seen_at])


async def start_position(session: AsyncSession, *, user_id: str, everything: bool) -> Position:
    """A reader's first position: before every live entity (`everything`, a sync that
    starts over), or at the head of the feed, for what changes from now on."""
    _, head = await read_rows(session, _HEAD, {OWNER: user_id})
    last = head[0][0] or 0  # None: a user yet to write (SQLite)
    return Position(0 if everything else last, last, int(time.time()))


def read_position(signer: CursorSigner, user_id: str, token: str, retention: timedelta) -> Position:
    """The position a token stands for: 422 if it is not the user's, 410 if too old."""
    values = signer.decode(user_id, FEED_SCOPE, token, field="since")
    if len(values) != 3 or not all(type(value) is int for value in values):
        raise bad_cursor("since")
    position = Position(*values)
    if time.time() - position.seen_at > retention.total_seconds():
        raise SyncExpired
    return position


async def read_changes(
    session: AsyncSession, *, user_id: str, since: Position, limit: int
) -> tuple[list[tuple[Position, dict[str, Any]]], bool]:
    """At most `limit` changes after `since`, each with the position right after it, and
    whether more follow.

    A position carries the time from which its holder has seen every deletion: the end of
    the read that reached the end of the feed, or, while more follow, the time of the
    position the reading started from: a reader that stops half way must not hold a
    token younger than what it missed."""
    params = {OWNER: user_id, "after": since.after, "deletes_after": since.deletes_after}
    names, rows = await read_rows(session, _FEED, params | {"limit": limit + 1})
    records = [dict(zip(names, row, strict=True)) for row in rows]
    has_more = len(records) > limit
    seen_at = since.seen_at if has_more else int(time.time())
    return [
        (Position(record["seq"], since.deletes_after, seen_at), _change(record))
        for record in records[:limit]
    ], has_more


async def list_changes(
    session: AsyncSession,
    *,
    user_id: str,
    since: str | None,
    limit: int,
    signer: CursorSigner,
    retention: timedelta,
) -> ChangesPage:
    """The changes after `since` (every live entity, without it), at most `limit`."""
    if since is None:
        position = await start_position(session, user_id=user_id, everything=True)
    else:
        position = read_position(signer, user_id, since, retention)
    changes, has_more = await read_changes(session, user_id=user_id, since=position, limit=limit)
    last = changes[-1][0] if changes else replace(position, seen_at=int(time.time()))
    return _PAGE.validate_python(
        {
            "changes": [change for _, change in changes],
            "next_since": last.token(signer, user_id),
            "has_more": has_more,
        }
    )


_PAGE = TypeAdapter(ChangesPage)
"""A page validated whole from plain dicts, in one call into pydantic-core."""


def _change(record: dict[str, Any]) -> dict[str, Any]:
    entity, op = record["entity"], record["op"]
    data = None
    if op == "upsert":
        data = {name: record[f"{entity}.{name}"] for name in _FIELDS[entity]}
        if data["id"] is None:  # a reminder whose task was deleted, with it
            op, data = "delete", None
    return {
        "entity": entity,
        "id": record["entity_id"],
        "op": op,
        "version": record["version"],
        "data": data,
    }


_PRUNE = delete(_CHANGES).where(
    _CHANGES.c.op == "delete", _CHANGES.c.changed_at < bindparam("before")
)


async def prune_changes(connection: AsyncConnection, *, retention: timedelta, now: datetime) -> int:
    """Forget every user's deletions older than any token still accepted; how many
    (`todo-api prune`, on a connection that row-level security does not hold)."""
    before = now - retention - timedelta(seconds=PRUNE_MARGIN_SECONDS)
    return (await connection.execute(_PRUNE, {"before": before})).rowcount
