"""Demo data: users with categories, tasks and the history those tasks would have.

Rows go in through bulk inserts, each user's in transactions scoped to that user (so
row-level security holds for the seeding role too), in batches that report progress.
The data is reproducible: the same `seed` gives the same titles, dates and states.
"""

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession
from uuid6 import uuid7

from backend.changes.service import append_changes
from backend.db import scope_to, utcnow
from backend.fields import ChangeEntity, ChangeOp, HistoryAction, Priority, name_key
from backend.history.service import entry
from backend.models import Category, Task, TaskHistory, User
from backend.tasks.service import snapshot

BATCH = 2_000
CATEGORIES = (
    ("Work", "#2563EB"),
    ("Home", "#16A34A"),
    ("Errands", "#F59E0B"),
    ("Health", "#DC2626"),
    ("Learning", "#7C3AED"),
)
VERBS = (
    "Write", "Review", "Plan", "Call", "Email", "Fix", "Buy", "Book", "Clean", "Read",
    "Update", "Prepare", "Schedule", "Pay", "Finish", "Draft", "Order", "Renew", "Check", "Sort",
)  # fmt: skip
OBJECTS = (
    "quarterly report", "dentist appointment", "groceries", "project proposal", "tax return",
    "team retrospective", "birthday present", "car insurance", "kitchen", "release notes",
    "budget spreadsheet", "flight to Lisbon", "library books", "garden hose", "blog post",
    "client invoice", "passport", "onboarding guide", "running shoes", "database backup",
    "conference talk", "electricity bill", "photo album", "meeting notes", "bike repair",
)  # fmt: skip
DETAILS = (
    "Before the end of the week.", "Ask Sam for the latest numbers first.",
    "Keep it short; one page is enough.", "See the notes from Monday.",
    "Compare at least three offers.", "Needs the signed form.",
)  # fmt: skip
PRIORITY_WEIGHTS = {Priority.none: 4, Priority.low: 3, Priority.medium: 2, Priority.high: 1}

_TASKS = Task.metadata.tables[str(Task.__tablename__)]

Progress = Callable[[int], None]
"""Told how many more tasks are stored, after each batch."""


@dataclass
class Rows:
    """One batch of rows, table by table."""

    tasks: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)


def demo_user_ids(count: int, prefix: str = "demo-user") -> list[str]:
    return [f"{prefix}-{number}" for number in range(1, count + 1)]


def categories_for(user_id: str, now: datetime) -> list[dict[str, Any]]:
    return [
        {
            "user_id": user_id,
            "id": uuid7(),
            "name": name,
            "name_key": name_key(name),
            "color": color,
            "created_at": now,
            "updated_at": now,
            "version": 1,
        }
        for name, color in CATEGORIES
    ]


def task_rows(
    user_id: str, count: int, category_ids: list[UUID], *, rng: random.Random, now: datetime
) -> Iterator[Rows]:
    """`count` tasks created over the last year (newest last), in batches, each with its
    `created` entry, and a `completed` entry for the ~45% that are done."""
    span = timedelta(days=365)
    rows = Rows()
    for number in range(count):
        created = now - span + span * (number + 1) / (count + 1)
        task = Task(
            user_id=user_id,
            id=uuid7(),
            title=f"{rng.choice(VERBS)} {rng.choice(OBJECTS)}",
            description=rng.choice(DETAILS) if rng.random() < 0.3 else None,
            priority=rng.choices(list(PRIORITY_WEIGHTS), list(PRIORITY_WEIGHTS.values()))[0],
            due_at=created + timedelta(days=rng.randint(1, 45)) if rng.random() < 0.4 else None,
            category_id=rng.choice(category_ids) if rng.random() < 0.8 else None,
            created_at=created,
            updated_at=created,
        )
        rows.history.append(
            entry(user_id, task.id, task.title, HistoryAction.created, snapshot(task), created)
        )
        if rng.random() < 0.45:
            done = min(created + timedelta(hours=rng.randint(1, 24 * 20)), now)
            task.completed, task.completed_at, task.updated_at, task.version = True, done, done, 2
            change = {"completed": {"from": False, "to": True}}
            rows.history.append(
                entry(user_id, task.id, task.title, HistoryAction.completed, change, done)
            )
        rows.tasks.append(task.model_dump())
        if len(rows.tasks) == BATCH:
            yield rows
            rows = Rows()
    if rows.tasks:
        yield rows


async def seed(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    user_ids: list[str],
    tasks_per_user: int,
    seed: int = 0,
    progress: Progress | None = None,
) -> None:
    """Give each of `user_ids` five categories and `tasks_per_user` tasks; a user who
    already exists is left alone (and counted as done), so a rerun adds only what is new."""
    rng = random.Random(seed)  # noqa: S311 (demo data: reproducible, not secret)
    now = utcnow()
    for user_id in user_ids:
        async with sessionmaker() as session:
            await scope_to(session, user_id=user_id)
            if (await session.exec(select(User.id).where(User.id == user_id))).first():
                if progress is not None:
                    progress(tasks_per_user)
                continue
            name = user_id.replace("-", " ").title()
            user = {"id": user_id, "name": name, "created_at": now, "updated_at": now}
            await session.exec(insert(User).values(**user))
            categories = categories_for(user_id, now)
            await session.exec(insert(Category), params=categories)
            await _append_changes(session, user_id, "category", categories, now)
            await session.commit()
            category_ids = [category["id"] for category in categories]
            for rows in task_rows(user_id, tasks_per_user, category_ids, rng=rng, now=now):
                # The table, not the entity: the ORM would reset every version to 1.
                await session.exec(insert(_TASKS), params=rows.tasks)
                await session.exec(insert(TaskHistory), params=rows.history)
                await _append_changes(session, user_id, "task", rows.tasks, now)
                await session.commit()
                if progress is not None:
                    progress(len(rows.tasks))


async def _append_changes(
    session: AsyncSession,
    user_id: str,
    entity: ChangeEntity,
    rows: list[dict[str, Any]],
    at: datetime,
) -> None:
    """The change-feed entries of new rows, so that a sync finds them."""
    changes: dict[tuple[ChangeEntity, UUID], tuple[ChangeOp, int]] = {
        (entity, row["id"]): ("upsert", row["version"]) for row in rows
    }
    await session.run_sync(lambda sync: append_changes(sync.connection(), user_id, changes, at))
