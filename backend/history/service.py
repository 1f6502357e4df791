"""History: the immutable audit log of every change to a task."""

import functools
from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import AwareDatetime, TypeAdapter
from sqlalchemy import ColumnElement, Connection, bindparam, insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import SelectOfScalar
from uuid6 import uuid7

from backend.errors import NotFound
from backend.fields import HistoryAction
from backend.models import HistoryFilters, HistoryPublic, PageQuery, TaskHistory
from backend.owned import OWNER, OwnedTable, owned_by
from backend.pagination import Keyset, PageRequest, Record, fetch_page

NEWEST_FIRST = Keyset(
    name="-occurred_at",
    column=TaskHistory.occurred_at,  # type: ignore[arg-type]
    tiebreak=TaskHistory.id,  # type: ignore[arg-type]
    adapter=TypeAdapter(AwareDatetime),
    descending=True,
)


def entry(
    user_id: str,
    task_id: UUID,
    title: str,
    action: HistoryAction,
    changes: dict[str, Any],
    at: datetime,
) -> dict[str, Any]:
    """One history row's values, for `insert_entries`."""
    return {
        "user_id": user_id,
        "id": uuid7(),
        "task_id": task_id,
        "action": action.value,
        "changes": changes,
        "title": title,
        "occurred_at": at,
    }


def insert_entries(connection: Connection, entries: list[dict[str, Any]]) -> None:
    """Insert history rows (`entry`), all in one statement, in a write's transaction
    (`UnitOfWork`). Plain values, not `TaskHistory` entities: building and flushing one cost
    a write more than the statement itself."""
    if entries:
        connection.execute(_INSERT, entries)


_INSERT = insert(TaskHistory.__table__)  # type: ignore[attr-defined]


_FILTERS: dict[str, ColumnElement[bool]] = {
    "task_id": col(TaskHistory.task_id) == bindparam("task_id"),
    "action": col(TaskHistory.action) == bindparam("action"),
    "since": col(TaskHistory.occurred_at) >= bindparam("since"),
    "until": col(TaskHistory.occurred_at) < bindparam("until"),
}


@functools.cache
def _listing(filters: frozenset[str]) -> SelectOfScalar[TaskHistory]:
    """The caller's history with one combination of filters, built once; values are bound."""
    listed = select(TaskHistory).where(owned_by(TaskHistory.user_id))
    return listed.where(*(_FILTERS[name] for name in sorted(filters)))


_FILTER_NAMES = set(HistoryFilters.model_fields)
"""What `filters` holds to filter by (a list's query model holds its page too)."""
_ROWS = OwnedTable(TaskHistory)


async def list_history(
    session: AsyncSession,
    *,
    user_id: str,
    page: PageRequest[PageQuery],
    filters: HistoryFilters,
) -> tuple[list[Record], str | None]:
    chosen = filters.model_dump(include=_FILTER_NAMES, exclude_none=True)
    return await fetch_page(
        session,
        _listing(frozenset(chosen)),
        keyset=NEWEST_FIRST,
        page=page,
        owner=user_id,
        scope="history",
        params=chosen,
    )


_KNOWN_TASK = (
    select(TaskHistory.id)
    .where(owned_by(TaskHistory.user_id), col(TaskHistory.task_id) == bindparam("task_id"))
    .limit(1)
)
"""Any of the caller's entries about a task: the task is, or was, theirs."""


async def list_task_history(
    session: AsyncSession, *, user_id: str, task_id: UUID, page: PageRequest[PageQuery]
) -> tuple[list[Record], str | None]:
    """A task's history, also after its deletion; 404 for a task that never was the caller's."""
    known = await session.exec(_KNOWN_TASK, params={OWNER: user_id, "task_id": task_id})
    if known.first() is None:
        raise NotFound
    return await list_history(
        session, user_id=user_id, page=page, filters=HistoryFilters(task_id=task_id)
    )


async def get_history_entry(
    session: AsyncSession, *, user_id: str, entry_id: UUID
) -> HistoryPublic:
    row = await _ROWS.get(session, owner=user_id, row_id=entry_id)
    if row is None:
        raise NotFound
    return HistoryPublic.model_validate(row)
