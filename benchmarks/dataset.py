"""The benchmark database: created, migrated and seeded once, then reused.

Three users hold 100, 10,000 and 100,000 tasks (with categories and history, see
`backend.seed`). The service runs as a role without superuser rights, so row-level
security applies to it as it would in production; the raw ceiling runs as the admin.
"""

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import psycopg
from psycopg import sql
from sqlalchemy import make_url

from backend import db, migrate
from backend import seed as demo
from backend.config import Settings

SIZES = (100, 10_000, 100_000)
SERVICE_ROLE = "todo_bench_service"


def user_for(size: int) -> str:
    return f"bench-{size}"


@dataclass(frozen=True)
class Dataset:
    admin_dsn: str  # the ceiling connects with this (a superuser: no row-level security)
    service_dsn: str  # the service connects with this (a plain role)


def refresh(dataset: Dataset, size: int) -> None:
    """Seed the throughput table's user again: each run's writes (created tasks, renames,
    toggles and their history) would otherwise pile up and slow later runs' weekly stats."""
    user_id = user_for(size)
    with psycopg.connect(dataset.admin_dsn, autocommit=True) as connection:
        for table, owner in OWNED_TABLES:
            connection.execute(
                sql.SQL("DELETE FROM {} WHERE {} = %s").format(
                    sql.Identifier(table), sql.Identifier(owner)
                ),
                (user_id,),
            )
    asyncio.run(_seed(dataset.admin_dsn, size))
    with psycopg.connect(dataset.admin_dsn, autocommit=True) as connection:
        connection.execute("VACUUM ANALYZE tasks, task_history, changes")


OWNED_TABLES = (
    ("changes", "user_id"),
    ("idempotency_keys", "user_id"),
    ("personal_tokens", "user_id"),
    ("task_history", "user_id"),
    ("tasks", "user_id"),
    ("categories", "user_id"),
    ("users", "id"),
)


def prepare(server: str, database: str, *, sizes: tuple[int, ...], reseed: bool) -> Dataset:
    """Create (or reuse) `database` on `server` (a postgresql:// URL without a path)."""
    admin = f"{server}/{database}"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as connection:
        exists = connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (database,)
        ).fetchone()
        if exists and reseed:
            connection.execute(
                sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(database))
            )
        if not exists or reseed:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
        role = connection.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (SERVICE_ROLE,))
        if role.fetchone() is None:
            connection.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(SERVICE_ROLE)))
    migrate.upgrade(Settings(database_url=admin))
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(
            sql.SQL(
                "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {}"
            ).format(sql.Identifier(SERVICE_ROLE))
        )
        seeded = {
            row[0]
            for row in connection.execute(
                "SELECT id FROM users WHERE id = ANY(%s)", ([user_for(size) for size in sizes],)
            )
        }
    missing = [size for size in sizes if user_for(size) not in seeded]
    for size in missing:
        started = time.perf_counter()
        asyncio.run(_seed(admin, size))
        print(f"seeded {user_for(size)}: {size:,} tasks in {time.perf_counter() - started:.1f} s")
    if missing:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute("VACUUM ANALYZE")
    return Dataset(admin_dsn=admin, service_dsn=service_url(admin))


SECRET = "benchmark-secret-not-for-production-0123456789"
"""Signs the benchmarks' tokens and cursors; both servers verify with it."""


def service_env(dataset: Dataset) -> dict[str, str]:
    """The service as deployed, as the row-security role. Limits stay on, and cost what
    they cost, but never refuse the load."""
    return {
        "DATABASE_URL": dataset.service_dsn,
        "JWT_SECRET": SECRET,
        "SECRET_KEY": SECRET,
        "RATE_LIMIT_USER": "1000000000/minute",
        "RATE_LIMIT_IP": "1000000000/minute",
    }


def ceiling_env(dataset: Dataset) -> dict[str, str]:
    """The raw ceiling, as the superuser (no row-level security)."""
    return {"BENCH_DSN": dataset.admin_dsn, "JWT_SECRET": SECRET}


def service_url(admin_url: str) -> str:
    """The benchmark database as the service's role (row-level security applies to it)."""
    url = make_url(admin_url).set(username=SERVICE_ROLE, password=None)
    return url.render_as_string(hide_password=False)


async def _seed(dsn: str, size: int) -> None:
    settings = Settings(database_url=dsn)
    engine = db.create_engine(settings)
    try:
        await demo.seed(
            db.create_sessionmaker(engine, settings),
            user_ids=[user_for(size)],
            tasks_per_user=size,
            seed=size,
        )
    finally:
        await engine.dispose()


@dataclass(frozen=True)
class UserData:
    """What the scenarios of one user need: ids to read and write, a category, a middle row."""

    user_id: str
    open_task_ids: list[UUID]
    task_ids: list[UUID]
    category_id: UUID
    middle: tuple[datetime, UUID]  # (created_at, id) of the row in the middle
    middle_change: int  # the number of the change in the middle of the user's feed


def user_data(dsn: str, size: int, *, sample: int = 2_000) -> UserData:
    user_id = user_for(size)
    with psycopg.connect(dsn) as connection:
        ids = [
            row[0]
            for row in connection.execute(
                "SELECT id FROM tasks WHERE user_id = %s ORDER BY random() LIMIT %s",
                (user_id, sample),
            )
        ]
        open_ids = [
            row[0]
            for row in connection.execute(
                "SELECT id FROM tasks WHERE user_id = %s AND NOT completed"
                " ORDER BY random() LIMIT %s",
                (user_id, sample),
            )
        ]
        category = connection.execute(
            "SELECT id FROM categories WHERE user_id = %s ORDER BY name LIMIT 1", (user_id,)
        ).fetchone()
        middle = connection.execute(
            "SELECT created_at, id FROM tasks WHERE user_id = %s"
            " ORDER BY created_at DESC, id DESC OFFSET %s LIMIT 1",
            (user_id, size // 2),
        ).fetchone()
        middle_change = connection.execute(
            "SELECT seq FROM changes WHERE user_id = %s ORDER BY seq OFFSET %s LIMIT 1",
            (user_id, size // 2),
        ).fetchone()
    assert category is not None
    assert middle is not None
    assert middle_change is not None
    return UserData(
        user_id=user_id,
        open_task_ids=open_ids,
        task_ids=ids,
        category_id=category[0],
        middle=(middle[0], middle[1]),
        middle_change=middle_change[0],
    )


def reopen(dsn: str, user_id: str, task_ids: list[UUID]) -> None:
    """Put the tasks the `complete` scenario toggles back to open, so each request writes."""
    with psycopg.connect(dsn) as connection:
        connection.execute(
            "UPDATE tasks SET completed = false, completed_at = NULL"
            " WHERE user_id = %s AND id = ANY(%s)",
            (user_id, task_ids),
        )
