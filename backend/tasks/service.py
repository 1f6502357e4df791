"""Tasks: every read and write of a user's tasks, each write with its history entry."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import AwareDatetime, TypeAdapter
from pydantic_core import to_jsonable_python
from sqlalchemy import (
    ColumnElement,
    Delete,
    Insert,
    Select,
    TableClause,
    Update,
    bindparam,
    delete,
    insert,
    or_,
    update,
)
from sqlalchemy import select as select_rows
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from uuid6 import uuid7

from backend.conditions import UNCONDITIONAL, Precondition, write_once_current
from backend.db import LIKE_ESCAPE, like_escape, read_rows, utcnow
from backend.errors import InvalidInput, NotFound
from backend.fields import HistoryAction, Priority
from backend.history.service import entry, insert_entries, record_changes
from backend.models import (
    TASK_SEARCH,
    Category,
    PageQuery,
    Task,
    TaskCreate,
    TaskFilters,
    TaskPublic,
    TaskSort,
)
from backend.owned import OWNER, ROW_ID, owned_by
from backend.pagination import Keyset, PageRequest, Record, fetch_page

_SORT_COLUMNS: dict[str, tuple[TypeAdapter[Any], bool]] = {
    "created_at": (TypeAdapter(AwareDatetime), False),
    "updated_at": (TypeAdapter(AwareDatetime), False),
    "due_at": (TypeAdapter(AwareDatetime | None), True),
    "priority": (TypeAdapter(Priority), False),
    "title": (TypeAdapter(str), False),
}


class _Listings:
    """The caller's tasks in `source` as plain rows of what a list shows: every sort, and
    one statement per combination of filters, each built once; values are bound."""

    def __init__(self, source: TableClause) -> None:
        c = source.c
        self.sorts = {
            f"{sign}{name}": Keyset(
                name=f"{sign}{name}",
                column=c[name],
                tiebreak=c.id,
                adapter=adapter,
                descending=sign == "-",
                nullable=nullable,
            )
            for name, (adapter, nullable) in _SORT_COLUMNS.items()
            for sign in ("", "-")
        }
        self._listed = select_rows(*(c[name] for name in TaskPublic.model_fields)).where(
            owned_by(c.user_id)
        )
        self._filters: dict[str, ColumnElement[bool]] = {
            "completed": c.completed == bindparam("completed"),
            "category_id": c.category_id == bindparam("category_id"),
            "uncategorized": c.category_id.is_(None),
            "priority": c.priority == bindparam("priority"),
            "due_before": c.due_at < bindparam("due_before"),
            "due_after": c.due_at >= bindparam("due_after"),
            "q": or_(
                c.title.icontains(bindparam("q"), escape=LIKE_ESCAPE),
                c.description.icontains(bindparam("q"), escape=LIKE_ESCAPE),
            ),
        }
        self._statements: dict[frozenset[str], Select[Any]] = {}

    def statement(self, filters: frozenset[str]) -> Select[Any]:
        statement = self._statements.get(filters)
        if statement is None:
            chosen = (self._filters[name] for name in sorted(filters))
            statement = self._statements[filters] = self._listed.where(*chosen)
        return statement


_TABLE = Task.__table__  # type: ignore[attr-defined]
TASKS = _Listings(_TABLE)
SEARCHED = _Listings(TASK_SEARCH)
"""Searches read the search view, where PostgreSQL may use the trigram index under row
security (`backend.models.TASK_SEARCH`); every other list reads the table."""
SORTS = TASKS.sorts

_READ = TASKS.statement(frozenset()).where(_TABLE.c.id == bindparam(ROW_ID))
"""One of the caller's tasks by id: the columns a list shows, owned by the caller."""
_LOCKED = _READ.with_for_update()
_INSERT = insert(_TABLE)
_READ_VERSION = "read_version"
_AT_VERSION = (
    owned_by(_TABLE.c.user_id),
    _TABLE.c.id == bindparam(ROW_ID),
    _TABLE.c.version == bindparam(_READ_VERSION),
)
_UPDATE = update(_TABLE).where(*_AT_VERSION)
"""Its `SET` is the parameters named after columns: the task's new values."""
_DELETE = delete(_TABLE).where(*_AT_VERSION)


async def get_task(
    session: AsyncSession, *, user_id: str, task_id: UUID, for_update: bool = False
) -> TaskPublic:
    """The caller's task, read as a plain row (no `Task` entity: tasks are written by plain
    statements too); `for_update` locks it until the commit (PostgreSQL)."""
    names, rows = await read_rows(
        session, _LOCKED if for_update else _READ, {OWNER: user_id, ROW_ID: task_id}
    )
    if not rows:
        raise NotFound
    return TaskPublic.model_validate(dict(zip(names, rows[0], strict=True)))


async def list_tasks(
    session: AsyncSession,
    *,
    user_id: str,
    filters: TaskFilters,
    sort: TaskSort,
    page: PageRequest[PageQuery],
) -> tuple[list[Record], str | None]:
    chosen: dict[str, Any] = {
        name: value
        for name, value in (
            ("completed", filters.completed),
            ("priority", filters.priority),
            ("due_before", filters.due_before),
            ("due_after", filters.due_after),
            ("q", None if filters.q is None else like_escape(filters.q)),
        )
        if value is not None
    }
    if filters.category_id == "none":
        chosen["uncategorized"] = None
    elif filters.category_id is not None:
        chosen["category_id"] = filters.category_id
    listings = TASKS if filters.q is None else SEARCHED
    return await fetch_page(
        session,
        listings.statement(frozenset(chosen)),
        keyset=listings.sorts[sort],
        page=page,
        owner=user_id,
        scope="tasks",
        params=chosen,
    )


async def create_task(session: AsyncSession, *, user_id: str, task_in: TaskCreate) -> TaskPublic:
    """The new task, written with its `created` entry as plain INSERTs of values: a new row
    has nothing for the unit of work to track, and building a `Task` entity and flushing
    it cost a create more than its statements (specs/performance.md)."""
    await _check_category(session, user_id=user_id, category_id=task_in.category_id)
    now = utcnow()
    task = TaskPublic(
        id=uuid7(),
        **dict(task_in),
        completed=False,
        completed_at=None,
        created_at=now,
        updated_at=now,
        version=1,
    )
    created = entry(user_id, task.id, task.title, HistoryAction.created, snapshot(task), now)
    async with _category_refusal_as_422(session):
        await _commit(session, _INSERT, {"user_id": user_id, **dict(task)}, [created])
    return task


async def update_task(
    session: AsyncSession,
    *,
    user_id: str,
    task_id: UUID,
    changes: dict[str, Any],
    precondition: Precondition = UNCONDITIONAL,
) -> TaskPublic:
    """Apply `changes` (field: new value); a change that changes nothing writes nothing.

    The row is read locked (`FOR UPDATE` on PostgreSQL) and written back as a plain
    `UPDATE ... WHERE version = :read` of its new values, with its entry: no `Task` entity
    for the unit of work to track (specs/performance.md)."""

    async def write() -> TaskPublic:
        task = precondition.check(
            await get_task(session, user_id=user_id, task_id=task_id, for_update=True)
        )
        if changes.get("category_id") not in (None, task.category_id):
            await _check_category(session, user_id=user_id, category_id=changes["category_id"])
        now = utcnow()
        diff = {
            field: {"from": _json(getattr(task, field)), "to": _json(value)}
            for field, value in changes.items()
            if getattr(task, field) != value
        }
        if not diff:
            return task
        updates = {field: changes[field] for field in diff}
        if "completed" in diff:
            updates["completed_at"] = now if updates["completed"] else None
            action = HistoryAction.completed if updates["completed"] else HistoryAction.reopened
        else:
            action = HistoryAction.updated
        changed = task.model_copy(update=updates | {"updated_at": now, "version": task.version + 1})
        written = entry(user_id, task_id, changed.title, action, diff, now)
        row = changed.model_dump(exclude={"id", "created_at"})
        async with _category_refusal_as_422(session):
            await _commit(session, _UPDATE, _at_version(user_id, task, row), [written])
        return changed

    return await write_once_current(
        session,
        write,
        precondition=precondition,
        reread=lambda: get_task(session, user_id=user_id, task_id=task_id),
    )


def _at_version(
    user_id: str, read: TaskPublic, values: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The parameters of `_UPDATE` or `_DELETE` on the task `read`: they match its row only
    while it is still that version (the row lock makes a miss SQLite's case only)."""
    return {OWNER: user_id, ROW_ID: read.id, _READ_VERSION: read.version, **(values or {})}


async def _commit(
    session: AsyncSession,
    statement: Insert | Update | Delete,
    params: dict[str, Any],
    entries: list[dict[str, Any]],
) -> None:
    """A task's write (`statement` with `params`), its history entries and the `COMMIT`, in
    one call into the sync session: each `AsyncSession` call runs in a greenlet of its own,
    and each new greenlet costs system calls (`db.end_session`). An `UPDATE` or `DELETE`
    that touches no row, its task no longer at the version read (`_at_version`), raises
    `StaleDataError` for `write_once_current`, and nothing is committed. (An `INSERT`
    writes its row or raises; its row count reads -1 on psycopg, so only 0 means stale.)"""

    def commit(sync_session: Session) -> None:
        connection = sync_session.connection()
        if connection.execute(statement, params).rowcount == 0:
            raise StaleDataError("the task is no longer at the version it was read at")
        insert_entries(sync_session, entries)
        sync_session.commit()

    await session.run_sync(commit)


async def delete_task(
    session: AsyncSession,
    *,
    user_id: str,
    task_id: UUID,
    precondition: Precondition = UNCONDITIONAL,
) -> None:
    async def write() -> None:
        task = precondition.check(
            await get_task(session, user_id=user_id, task_id=task_id, for_update=True)
        )
        gone = entry(user_id, task_id, task.title, HistoryAction.deleted, snapshot(task), utcnow())
        await _commit(session, _DELETE, _at_version(user_id, task), [gone])

    await write_once_current(
        session,
        write,
        precondition=precondition,
        reread=lambda: get_task(session, user_id=user_id, task_id=task_id),
    )


async def uncategorize_tasks(
    session: AsyncSession, *, user_id: str, category_id: UUID, at: datetime
) -> None:
    """Detach a category's tasks, with an entry each; the caller commits."""
    detached = await session.exec(
        update(Task)
        .where(col(Task.user_id) == user_id, col(Task.category_id) == category_id)
        .values(category_id=None, updated_at=at, version=col(Task.version) + 1)
        .returning(col(Task.id), col(Task.title))
        .execution_options(synchronize_session=False)
    )
    change = {"category_id": {"from": str(category_id), "to": None}}
    await record_changes(
        session,
        [
            entry(user_id, task_id, title, HistoryAction.updated, change, at)
            for task_id, title in detached.all()
        ],
    )


def snapshot(task: Task | TaskPublic) -> dict[str, Any]:
    return TaskPublic.model_validate(task).model_dump(mode="json")


def _json(value: Any) -> Any:
    return to_jsonable_python(value)


_CATEGORY_EXISTS = select(Category.id).where(
    owned_by(Category.user_id), col(Category.id) == bindparam(ROW_ID)
)


async def _check_category(session: AsyncSession, *, user_id: str, category_id: UUID | None) -> None:
    if category_id is None:
        return
    found = await session.exec(_CATEGORY_EXISTS, params={OWNER: user_id, ROW_ID: category_id})
    if found.first() is None:
        raise _unknown_category()


@asynccontextmanager
async def _category_refusal_as_422(session: AsyncSession) -> AsyncIterator[None]:
    """The database's own refusal of a foreign category (the task's `INSERT` or `UPDATE`)
    reads as the 422 it is."""
    try:
        yield
    except IntegrityError:
        await session.rollback()
        raise _unknown_category() from None


def _unknown_category() -> InvalidInput:
    return InvalidInput(("body", "category_id"), "No such category.", "category_not_found")
