"""History: the immutable audit log of every change to a task."""

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import AwareDatetime, TypeAdapter
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import SelectOfScalar

from backend.errors import NotFound
from backend.models import HistoryAction, Task, TaskHistory
from backend.pagination import Keyset, PageRequest, fetch_page

NEWEST_FIRST = Keyset(
    name="-occurred_at",
    column=TaskHistory.occurred_at,  # type: ignore[arg-type]
    tiebreak=TaskHistory.id,  # type: ignore[arg-type]
    adapter=TypeAdapter(AwareDatetime),
    descending=True,
)


def _owned(user_id: str) -> SelectOfScalar[TaskHistory]:
    return select(TaskHistory).where(TaskHistory.user_id == user_id)


def record_change(
    session: AsyncSession,
    task: Task,
    action: HistoryAction,
    changes: dict[str, Any],
    *,
    at: datetime,
) -> None:
    """Add the entry for a change to `task`; the caller's commit lands both together."""
    session.add(
        TaskHistory(
            user_id=task.user_id,
            task_id=task.id,
            action=action,
            changes=changes,
            title=task.title,
            occurred_at=at,
        )
    )


async def list_history(
    session: AsyncSession,
    *,
    user_id: str,
    page: PageRequest,
    task_id: UUID | None = None,
    action: HistoryAction | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> tuple[Sequence[TaskHistory], str | None]:
    statement = _owned(user_id)
    if task_id is not None:
        statement = statement.where(TaskHistory.task_id == task_id)
    if action is not None:
        statement = statement.where(TaskHistory.action == action)
    if since is not None:
        statement = statement.where(TaskHistory.occurred_at >= since)
    if until is not None:
        statement = statement.where(TaskHistory.occurred_at < until)
    return await fetch_page(
        session, statement, keyset=NEWEST_FIRST, page=page, owner=user_id, scope="history"
    )


async def list_task_history(
    session: AsyncSession, *, user_id: str, task_id: UUID, page: PageRequest
) -> tuple[Sequence[TaskHistory], str | None]:
    """A task's history, also after its deletion; 404 for a task that never was the caller's."""
    known = select(TaskHistory.id).where(
        TaskHistory.user_id == user_id, TaskHistory.task_id == task_id
    )
    if (await session.exec(known.limit(1))).first() is None:
        raise NotFound
    return await list_history(session, user_id=user_id, page=page, task_id=task_id)


async def get_history_entry(session: AsyncSession, *, user_id: str, entry_id: UUID) -> TaskHistory:
    entry = (await session.exec(_owned(user_id).where(TaskHistory.id == entry_id))).first()
    if entry is None:
        raise NotFound
    return entry
