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
    Select,
    TableClause,
    bindparam,
    func,
    or_,
    update,
)
from sqlalchemy import select as select_rows
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from uuid6 import uuid7

from backend.conditions import UNCONDITIONAL, Precondition, change_current_row
from backend.db import LIKE_ESCAPE, like_escape, read_rows
from backend.errors import InvalidInput, NotFound
from backend.fields import HistoryAction, Priority, name_key
from backend.models import (
    TASK_SEARCH,
    Category,
    Occurrence,
    PageQuery,
    Task,
    TaskCreate,
    TaskFilters,
    TaskPublic,
    TaskSort,
    TaskTag,
)
from backend.owned import OWNER, ROW_ID, OwnedTable, owned_by
from backend.pagination import Keyset, PageRequest, Record, fetch_page
from backend.recurrence import series
from backend.reminders.service import check_reminders, schedule
from backend.subtasks.service import check_parent, descendants
from backend.tags.service import link_tags, resolve_tags
from backend.unit_of_work import UnitOfWork

_SORT_COLUMNS: dict[str, tuple[TypeAdapter[Any], bool]] = {
    "created_at": (TypeAdapter(AwareDatetime), False),
    "updated_at": (TypeAdapter(AwareDatetime), False),
    "due_at": (TypeAdapter(AwareDatetime | None), True),
    "priority": (TypeAdapter(Priority), False),
    "title": (TypeAdapter(str), False),
}


_LINKS = TaskTag.__table__  # type: ignore[attr-defined]
_TAGGED = select_rows(_LINKS.c.task_id).where(
    owned_by(_LINKS.c.user_id), _LINKS.c.tag_key.in_(bindparam("tag_keys", expanding=True))
)
"""The caller's tasks that carry any of the tags of `tag_keys`."""


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
            "parent_id": c.parent_id == bindparam("parent_id"),
            "top_level": c.parent_id.is_(None),
            "priority": c.priority == bindparam("priority"),
            "due_before": c.due_at < bindparam("due_before"),
            "due_after": c.due_at >= bindparam("due_after"),
            "q": or_(
                c.title.icontains(bindparam("q"), escape=LIKE_ESCAPE),
                c.description.icontains(bindparam("q"), escape=LIKE_ESCAPE),
            ),
            "tag_any": c.id.in_(_TAGGED),
            "tag_all": c.id.in_(
                _TAGGED.group_by(_LINKS.c.task_id).having(func.count() == bindparam("tag_count"))
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
TABLE_LISTINGS = _Listings(_TABLE)
SEARCH_LISTINGS = _Listings(TASK_SEARCH)
"""Searches read the search view, where PostgreSQL may use the trigram index under row
security (`backend.models.TASK_SEARCH`); every other list reads the table."""
SORTS = TABLE_LISTINGS.sorts

_ROWS = OwnedTable(Task)


async def get_task(
    session: AsyncSession, *, user_id: str, task_id: UUID, for_update: bool = False
) -> TaskPublic:
    """The caller's task; `for_update` locks it until the commit (PostgreSQL)."""
    row = await _ROWS.get(session, owner=user_id, row_id=task_id, for_update=for_update)
    if row is None:
        raise NotFound
    return TaskPublic.model_validate(row)


async def list_occurrences(
    session: AsyncSession, *, user_id: str, task_id: UUID, limit: int
) -> list[Occurrence]:
    """The occurrences of a recurring task from its current due time on; none for one
    that does not recur or whose series ended."""
    task = await get_task(session, user_id=user_id, task_id=task_id)
    return [] if task.completed else series.upcoming(task.recurrence, limit)


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
    if filters.parent_id == "none":
        chosen["top_level"] = None
    elif filters.parent_id is not None:
        chosen["parent_id"] = filters.parent_id
    params = dict(chosen)
    if filters.tag:
        keys = sorted({name_key(name) for name in filters.tag})
        # One tag: "all" is "any", whose plan may start from the tag's links.
        chosen["tag_any" if len(keys) == 1 else f"tag_{filters.tag_mode}"] = None
        params |= {"tag_keys": keys, "tag_count": len(keys)}
    listings = TABLE_LISTINGS if filters.q is None else SEARCH_LISTINGS
    return await fetch_page(
        session,
        listings.statement(frozenset(chosen)),
        keyset=listings.sorts[sort],
        page=page,
        owner=user_id,
        scope="tasks",
        params=params,
    )


async def create_task(session: AsyncSession, *, user_id: str, task_in: TaskCreate) -> TaskPublic:
    """The new task, with its `created` entry and its feed entry."""
    await _check_category(session, user_id=user_id, category_id=task_in.category_id)
    if task_in.parent_id is not None:
        await check_parent(session, user_id=user_id, task_id=None, parent_id=task_in.parent_id)
    work = UnitOfWork(user_id)
    check_reminders(task_in.reminders, task_in.due_at)
    recurrence = None
    if task_in.recurrence is not None:
        recurrence = series.start(task_in.recurrence, task_in.due_at, work.at)
    tags = await resolve_tags(session, work, task_in.tags)
    row = {
        "user_id": user_id,
        "id": uuid7(),
        **dict(task_in),
        "tags": tags,
        "recurrence": series.stored(recurrence),
        "reminders": _json(task_in.reminders),
        "completed": False,
        "completed_at": None,
        "created_at": work.at,
        "updated_at": work.at,
        "version": 1,
    }
    task = TaskPublic.model_validate(row)
    work.execute(_ROWS.insert, row, guarded=False)
    link_tags(work, task.id, tags, replacing=False)
    schedule(work, task, replacing=False)
    work.record(task.id, task.title, HistoryAction.created, snapshot(task))
    work.changed("task", task, HistoryAction.created)
    async with _category_refusal_as_422(session):
        await work.commit(session)
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

    The row is read locked (`FOR UPDATE` on PostgreSQL) and written back guarded by the
    version read, with its history and feed entries."""

    async def change(task: TaskPublic) -> TaskPublic:
        if changes.get("category_id") not in (None, task.category_id):
            await _check_category(session, user_id=user_id, category_id=changes["category_id"])
        if changes.get("parent_id") not in (None, task.parent_id):
            await check_parent(
                session, user_id=user_id, task_id=task_id, parent_id=changes["parent_id"]
            )
        work = UnitOfWork(user_id)
        if "tags" in changes:
            changes["tags"] = await resolve_tags(session, work, changes["tags"])
        diff = {}
        for field, value in changes.items():
            before, after = _json(getattr(task, field)), _json(value)
            if before != after:
                diff[field] = {"from": before, "to": after}
        if not diff:
            return task
        updates = {field: changes[field] for field in diff}
        if "completed" in diff:
            updates["completed_at"] = work.at if updates["completed"] else None
            action = HistoryAction.completed if updates["completed"] else HistoryAction.reopened
        else:
            action = HistoryAction.updated
        updates |= {"updated_at": work.at, "version": task.version + 1}
        changed = task.model_copy(update=updates)
        if diff.keys() & {"recurrence", "due_at", "reminders"}:
            updates |= _series_of(changed, task, restarted="recurrence" in diff, now=work.at)
            changed = task.model_copy(update=updates)
        completing = action is HistoryAction.completed
        moved = series.moved_on(changed, work.at) if completing else None
        final = moved or changed
        values = _stored(updates, moved)
        params = _ROWS.params(user_id, task_id, read_version=task.version, values=values)
        work.execute(_ROWS.update, params, guarded=True)
        if "tags" in diff:
            link_tags(work, task_id, changed.tags, replacing=True)
        if (task.reminders or final.reminders) and (
            moved is not None or diff.keys() & {"due_at", "reminders", "completed"}
        ):  # a task that has none has nothing pending either
            schedule(work, final, replacing=True)
        if action is HistoryAction.completed and changed.recurrence is not None:
            diff["occurrence_due_at"] = _json(changed.due_at)  # which one was completed
        work.record(task_id, changed.title, action, diff)
        work.changed("task", changed, action)
        if moved is not None:  # the occurrence completed; the task goes on to the next
            _record_rescheduled(work, changed, moved)
        elif action is HistoryAction.completed:  # and its open subtasks with it
            for below in await descendants(
                session, user_id=user_id, task_id=task_id, open_only=True
            ):
                _complete(work, below)
        async with _category_refusal_as_422(session):
            await work.commit(session)
        return final

    return await change_current_row(
        session,
        read=lambda locked: get_task(session, user_id=user_id, task_id=task_id, for_update=locked),
        change=change,
        precondition=precondition,
    )


async def set_completed(
    session: AsyncSession,
    *,
    user_id: str,
    task_id: UUID,
    completed: bool,
    precondition: Precondition = UNCONDITIONAL,
) -> TaskPublic:
    """Complete or reopen a task (REST `complete` / `incomplete`, MCP); a no-op when it
    already is."""
    return await update_task(
        session,
        user_id=user_id,
        task_id=task_id,
        changes={"completed": completed},
        precondition=precondition,
    )


async def delete_task(
    session: AsyncSession,
    *,
    user_id: str,
    task_id: UUID,
    precondition: Precondition = UNCONDITIONAL,
) -> None:
    async def change(task: TaskPublic) -> None:
        work = UnitOfWork(user_id)
        for below in await descendants(session, user_id=user_id, task_id=task_id):  # deepest first
            params = _ROWS.params(user_id, below.id, read_version=below.version)
            work.execute(_ROWS.delete, params, guarded=True)
            work.record(below.id, below.title, HistoryAction.deleted, snapshot(below))
            work.changed("task", below, HistoryAction.deleted)
        params = _ROWS.params(user_id, task_id, read_version=task.version)
        work.execute(_ROWS.delete, params, guarded=True)
        work.record(task_id, task.title, HistoryAction.deleted, snapshot(task))
        work.changed("task", task, HistoryAction.deleted)
        await work.commit(session)

    await change_current_row(
        session,
        read=lambda locked: get_task(session, user_id=user_id, task_id=task_id, for_update=locked),
        change=change,
        precondition=precondition,
    )


def _complete(work: UnitOfWork, task: TaskPublic) -> None:
    """`work` completes an open subtask of a task being completed: a recurring one, that
    occurrence, and it moves on to its next."""
    updates = {"completed": True, "completed_at": work.at, "updated_at": work.at}
    updates["version"] = task.version + 1
    completed = task.model_copy(update=updates)
    moved = series.moved_on(completed, work.at)
    values = _stored(updates, moved)
    params = _ROWS.params(work.user_id, task.id, read_version=task.version, values=values)
    work.execute(_ROWS.update, params, guarded=True)
    diff: dict[str, Any] = {
        "completed": {"from": False, "to": True},
        "completed_at": {"from": None, "to": _json(work.at)},
    }
    if task.recurrence is not None:
        diff["occurrence_due_at"] = _json(task.due_at)
    if task.reminders:
        schedule(work, moved or completed, replacing=True)
    work.record(task.id, task.title, HistoryAction.completed, diff)
    work.changed("task", completed, HistoryAction.completed)
    if moved is not None:
        _record_rescheduled(work, completed, moved)


def _series_of(
    changed: TaskPublic, task: TaskPublic, *, restarted: bool, now: datetime
) -> dict[str, Any]:
    """A write's new rule, due time or reminders, checked together: a recurrence that is
    set starts a series; one whose due time moves goes on from there, its count kept."""
    check_reminders(changed.reminders, changed.due_at)
    if changed.recurrence is None or not (restarted or changed.due_at != task.due_at):
        return {}
    left = None if restarted or task.recurrence is None else task.recurrence.left
    recurrence = series.start(changed.recurrence, changed.due_at, now, left=left)
    return {"recurrence": recurrence}


def _record_rescheduled(work: UnitOfWork, completed: TaskPublic, moved: TaskPublic) -> None:
    """The history and the events of a recurring task's completion: its occurrence, due
    then, completed; then the task at its next occurrence."""
    change = {
        "due_at": {"from": _json(completed.due_at), "to": _json(moved.due_at)},
        "completed": {"from": True, "to": False},
    }
    work.record(completed.id, moved.title, HistoryAction.rescheduled, change)
    work.changed("task", moved, HistoryAction.rescheduled)


def _stored(updates: dict[str, Any], moved: TaskPublic | None = None) -> dict[str, Any]:
    """Column values of a write (and of the next occurrence it `moved` a recurring task
    to): the recurrence with its series, reminders as JSON."""
    values = dict(updates)
    if moved is not None:
        values |= {field: getattr(moved, field) for field in series.MOVED}
    if "recurrence" in values:
        values["recurrence"] = series.stored(values["recurrence"])
    if "reminders" in values:
        values["reminders"] = _json(values["reminders"])
    return values


_UNCATEGORIZE = (
    update(_TABLE)
    .where(owned_by(_TABLE.c.user_id), _TABLE.c.category_id == bindparam("detached"))
    .values(category_id=None, updated_at=bindparam("at"), version=_TABLE.c.version + 1)
    .returning(*(_TABLE.c[name] for name in TaskPublic.model_fields))
)


async def uncategorize_tasks(session: AsyncSession, *, work: UnitOfWork, category_id: UUID) -> None:
    """Detach a category's tasks now, in the transaction of `work`, which gets a history
    and a feed entry for each of them."""
    params = {OWNER: work.user_id, "detached": category_id, "at": work.at}
    names, detached = await read_rows(session, _UNCATEGORIZE, params)
    change = {"category_id": {"from": str(category_id), "to": None}}
    for row in detached:
        task = TaskPublic.model_validate(dict(zip(names, row, strict=True)))
        work.record(task.id, task.title, HistoryAction.updated, change)
        work.changed("task", task, HistoryAction.updated)


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
    return InvalidInput(("body", "category_id"), "category_not_found")
