"""Reminders: when each of a task's reminders falls, kept in `reminders` with the task's
writes (`schedule`, in their unit of work), and the worker's firing of those that fall
due (`fire_due`): each fires once, in the transaction that records it in the feed and
queues its `task.reminder` webhooks, so that neither two workers nor a restart fire it
twice, and a worker that dies half way leaves it to the next."""

from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, insert, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection
from uuid6 import uuid7

from backend.db import begin
from backend.errors import InvalidInput
from backend.fields import reminder_offset
from backend.models import (
    Change,
    Reminder,
    ReminderAt,
    ReminderPublic,
    ScheduledReminder,
    Task,
    TaskPublic,
)
from backend.owned import OWNER, owned_by
from backend.unit_of_work import UnitOfWork

_REMINDERS = ScheduledReminder.__table__  # type: ignore[attr-defined]
_TASKS = Task.__table__  # type: ignore[attr-defined]
_CHANGES = Change.__table__  # type: ignore[attr-defined]
_r, _t = _REMINDERS.c, _TASKS.c

_UNSCHEDULE = delete(_REMINDERS).where(
    owned_by(_r.user_id), _r.task_id == bindparam("task"), _r.fired_at.is_(None)
)
_SCHEDULE = insert(_REMINDERS)


def fire_time(reminder: Reminder, due_at: datetime | None) -> datetime | None:
    """When `reminder` falls; None without a due time, or before the year 1."""
    if isinstance(reminder, ReminderAt):
        return reminder.at
    try:
        return None if due_at is None else due_at - reminder_offset(reminder.before)
    except OverflowError:
        return None


def check_reminders(reminders: list[Reminder], due_at: datetime | None) -> None:
    """422 where a reminder set before the due time has none to follow."""
    if due_at is None and any(not isinstance(each, ReminderAt) for each in reminders):
        raise InvalidInput(("body", "due_at"), "recurrence_needs_due_at")


def schedule(work: UnitOfWork, task: TaskPublic, *, replacing: bool) -> None:
    """`work` keeps when each reminder of `task` falls, if after now and the task is open,
    in place of what was pending (`replacing`); those that fired stay as they were."""
    if replacing:
        work.execute(_UNSCHEDULE, {OWNER: work.user_id, "task": task.id}, guarded=False)
    if task.completed:
        return
    rows = [
        {"user_id": work.user_id, "id": uuid7(), "task_id": task.id, "fire_at": at}
        for reminder in task.reminders
        if (at := fire_time(reminder, task.due_at)) is not None and at > work.at
    ]
    if rows:
        work.execute(_SCHEDULE, rows, guarded=False)


def _task(column: Any) -> Any:
    return select(column).where(_t.user_id == _r.user_id, _t.id == _r.task_id).scalar_subquery()


_DUE = (
    select(_r.user_id, _r.id)
    .where(_r.fired_at.is_(None), _r.fire_at <= bindparam("now"))
    .order_by(_r.fire_at)
    .limit(bindparam("limit"))
    .with_for_update(skip_locked=True)
)
_FIRE = (
    update(_REMINDERS)
    .where(tuple_(_r.user_id, _r.id).in_(_DUE), _r.fired_at.is_(None))
    .values(fired_at=bindparam("now"), title=_task(_t.title), due_at=_task(_t.due_at))
    .returning(_r.user_id, *(_r[name] for name in ReminderPublic.model_fields))
)
"""Claim what fell due, oldest first (`SKIP LOCKED`: another worker's claims are not
waited for), marked fired with the task's title and due time as they are now."""
_FIELDS = tuple(ReminderPublic.model_fields)


async def fire_due(
    connection: AsyncConnection, *, now: datetime, limit: int
) -> tuple[int, set[str]]:
    """Fire at most `limit` reminders that fell due by `now`, each in the feed and its
    webhooks, all in one transaction, committed here; how many, and whose."""
    works: dict[str, UnitOfWork] = {}
    await begin(connection)
    rows = (await connection.execute(_FIRE, {"now": now, "limit": limit})).all()
    for user_id, *values in rows:
        reminder = ReminderPublic.model_validate(dict(zip(_FIELDS, values, strict=True)))
        works.setdefault(user_id, UnitOfWork(user_id, at=now)).reminded(reminder)
    if works:
        await connection.run_sync(lambda sync: [work.write(sync) for work in works.values()])
    await connection.commit()
    return len(rows), set(works)


_PRUNE = delete(_REMINDERS).where(_r.fired_at < bindparam("before"))
_PRUNE_FEED = delete(_CHANGES).where(
    _CHANGES.c.entity == "reminder", _CHANGES.c.changed_at < bindparam("before")
)


async def prune_reminders(connection: AsyncConnection, *, before: datetime) -> int:
    """Forget every user's reminders that fired before `before`, and their feed entries
    (no sync token that could still want them is accepted); how many."""
    await connection.execute(_PRUNE_FEED, {"before": before})
    return (await connection.execute(_PRUNE, {"before": before})).rowcount
