"""Statistics: the week's activity, computed from the history so deleted tasks still count."""

from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Executable, and_, bindparam, func, true
from sqlalchemy import select as select_rows
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.db import UTCDateTime, read_rows, utcnow
from backend.fields import HistoryAction
from backend.models import DayStats, Task, TaskHistory, WeeklyStats
from backend.owned import OWNER, owned_by

DAYS = 7


def _local_midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(), tzinfo=zone).astimezone(UTC)


def _week_statement() -> Executable:
    """Built once: the day bounds (`day0` ... `day7`), the owner and `now` are bound. One
    statement, one row: the week's counts (created and completed for each day), then the
    open and overdue tasks; a round trip less than a statement each."""
    bounds = [bindparam(f"day{i}", type_=UTCDateTime()) for i in range(DAYS + 1)]
    counts: list[ColumnElement[int]] = []
    for day, (start, end) in enumerate(pairwise(bounds)):
        in_day = and_(col(TaskHistory.occurred_at) >= start, col(TaskHistory.occurred_at) < end)
        for action in (HistoryAction.created, HistoryAction.completed):
            count = func.count().filter(and_(in_day, col(TaskHistory.action) == action))
            counts.append(count.label(f"{action.value}_{day}"))
    history = select(*counts).where(
        owned_by(TaskHistory.user_id),
        col(TaskHistory.occurred_at) >= bounds[0],
        col(TaskHistory.occurred_at) < bounds[-1],
        col(TaskHistory.action).in_([HistoryAction.created, HistoryAction.completed]),
    )
    now = bindparam("now", type_=UTCDateTime())
    overdue = and_(col(Task.due_at).is_not(None), col(Task.due_at) < now)
    current = select(
        func.count().label("open"), func.count().filter(overdue).label("overdue")
    ).where(owned_by(Task.user_id), col(Task.completed).is_(False))
    week, now_open = history.subquery(), current.subquery()
    return select_rows(week, now_open).select_from(week.join(now_open, true()))


_WEEK = _week_statement()


async def weekly_stats(session: AsyncSession, *, user_id: str, zone: ZoneInfo) -> WeeklyStats:
    now = utcnow()
    today = now.astimezone(zone).date()
    days = [today - timedelta(days=offset) for offset in range(DAYS - 1, -1, -1)]
    bounds = [_local_midnight(day, zone) for day in [*days, today + timedelta(days=1)]]
    params: dict[str, Any] = {f"day{i}": bound for i, bound in enumerate(bounds)}
    params |= {OWNER: user_id, "now": now}
    _, rows = await read_rows(session, _WEEK, params)
    *totals, open_count, overdue_count = rows[0]

    per_day = [
        DayStats(date=day, created=totals[2 * i], completed=totals[2 * i + 1])
        for i, day in enumerate(days)
    ]
    created = sum(day.created for day in per_day)
    completed = sum(day.completed for day in per_day)
    finished_share = completed / (completed + open_count) if completed + open_count else 0.0
    return WeeklyStats(
        tz=zone.key,
        from_=days[0],
        to=today,
        days=per_day,
        created=created,
        completed=completed,
        open=open_count,
        overdue=overdue_count,
        completion_rate=round(finished_share, 4),
    )
