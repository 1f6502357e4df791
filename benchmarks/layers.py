"""Where a list page's database time goes: the same page through each layer, CPU per call.

    .venv/bin/python -m benchmarks.run --skip-scale --only x   # seeds todo_bench once
    .venv/bin/python -m benchmarks.layers

Runs in one process against the benchmark database (as the service's role, so row-level
security applies) and prints the client-side CPU time of one page of 20 tasks, best of
five rounds, from the raw driver up to the service function the API calls. CPU time, not
wall time: the figures hold on a busy machine. See specs/performance.md.
"""

import argparse
import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from backend import db
from backend.config import Settings
from backend.models import PageQuery, TaskFilters, TaskPublic
from backend.pagination import CursorSigner, PageRequest, page_of
from backend.tasks import service
from benchmarks import dataset

QUERY = """
    SELECT id, title, description, priority, due_at, category_id, completed, completed_at,
           created_at, updated_at, version
    FROM tasks WHERE user_id = %s ORDER BY created_at DESC, id DESC LIMIT 21
"""
ROUNDS, CALLS = 5, 400
SERVER_CALLS = 2_000  # the kernel counts a process's CPU in ticks of 10 ms


async def _cpu_per_call(call: Callable[[], Awaitable[object]]) -> float:
    for _ in range(50):
        await call()
    rounds = []
    for _ in range(ROUNDS):
        started = time.process_time()
        for _ in range(CALLS):
            await call()
        rounds.append((time.process_time() - started) / CALLS)
    return min(rounds) * 1e6


def _server_cpu(pid: int) -> float | None:
    """CPU seconds of a PostgreSQL backend on this machine, or None where it is remote."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _server_cpu_per_read(
    connection: psycopg.AsyncConnection[Any], user_id: str
) -> dict[bool, float] | None:
    """PostgreSQL's CPU for one read as the service makes it (BEGIN with the setting, the
    page, COMMIT), the page parsed every time or prepared; best of `ROUNDS`, alternating."""
    scope = sql.SQL("BEGIN; SET LOCAL app.user_id = {}").format(user_id)
    best: dict[bool, float] = {False: float("inf"), True: float("inf")}
    for _ in range(ROUNDS):
        for prepare in (False, True):
            started = _server_cpu(connection.info.backend_pid)
            if started is None:
                return None
            for _ in range(SERVER_CALLS):
                await connection.execute(scope)
                await (await connection.execute(QUERY, (user_id,), prepare=prepare)).fetchall()
                await connection.execute("COMMIT")
            spent = (_server_cpu(connection.info.backend_pid) or started) - started
            best[prepare] = min(best[prepare], spent / SERVER_CALLS * 1e6)
    return best


async def main(service_dsn: str, user_id: str) -> None:
    os.environ.setdefault("JWT_SECRET", "benchmark-layers-secret-0123456789abcdef")
    settings = Settings(database_url=service_dsn)
    engine = db.create_engine(settings)
    sessionmaker = db.create_sessionmaker(engine, settings)
    pool = AsyncConnectionPool(service_dsn, min_size=2, max_size=2, open=False)
    await pool.open()
    page = PageRequest(PageQuery(limit=20), CursorSigner("x" * 32))

    async def raw_driver() -> None:
        async with pool.connection() as connection:
            await connection.execute("SELECT set_config('app.user_id', %s, true)", (user_id,))
            await (await connection.execute(QUERY, (user_id,))).fetchall()

    in_transaction = await psycopg.AsyncConnection.connect(service_dsn)
    by_hand = await psycopg.AsyncConnection.connect(service_dsn, autocommit=True)
    scope = sql.SQL("BEGIN; SELECT set_config('app.user_id', {}, true)").format(user_id)

    async def four_round_trips() -> None:
        # What a service read sends: psycopg's BEGIN, then each statement, then ROLLBACK.
        await in_transaction.execute("SELECT set_config('app.user_id', %s, true)", (user_id,))
        await (await in_transaction.execute(QUERY, (user_id,))).fetchall()
        await in_transaction.rollback()

    async def three_round_trips() -> None:
        # BEGIN and the setting in one simple-protocol message, as the service begins its
        # transactions (the driver in autocommit; backend.db._begin_scoped).
        await by_hand.execute(scope)
        await (await by_hand.execute(QUERY, (user_id,))).fetchall()
        await by_hand.execute("ROLLBACK")

    async def scoped_session() -> None:
        async with sessionmaker() as session:
            await db.scope_to(session, user_id=user_id)
            await session.connection()  # checkout, BEGIN, the row-security setting

    async def service_call() -> None:
        async with sessionmaker() as session:
            await db.scope_to(session, user_id=user_id)
            await service.list_tasks(
                session, user_id=user_id, filters=TaskFilters(), sort="-created_at", page=page
            )

    async def service_and_page() -> None:
        async with sessionmaker() as session:
            await db.scope_to(session, user_id=user_id)
            rows, cursor = await service.list_tasks(
                session, user_id=user_id, filters=TaskFilters(), sort="-created_at", page=page
            )
            page_of(TaskPublic, rows, cursor)

    print(f"one page of 20 tasks of {user_id}; client CPU µs per call, best of {ROUNDS}")
    layers = {
        "raw psycopg pool: BEGIN, set_config, SELECT, COMMIT": raw_driver,
        "raw connection: BEGIN, set_config, SELECT, ROLLBACK": four_round_trips,
        "raw connection: BEGIN + set_config in one message, SELECT, ROLLBACK": three_round_trips,
        "SQLAlchemy session: checkout, BEGIN + setting, ROLLBACK": scoped_session,
        "+ the service's page query (SQLAlchemy, keyset)": service_call,
        "+ the page object (pydantic, what the route returns)": service_and_page,
    }
    for name, call in layers.items():
        print(f"{name:<70} {await _cpu_per_call(call):>7.0f}")
    server = await _server_cpu_per_read(by_hand, user_id)
    if server is None:
        print("PostgreSQL's own CPU: the server is not on this machine")
    else:
        print(f"PostgreSQL's CPU µs per read (BEGIN + setting, the page, COMMIT), best of {ROUNDS}")
        for prepare, name in ((False, "parsed every time"), (True, "prepared")):
            print(f"{'the page ' + name:<70} {server[prepare]:>7.0f}")
    await pool.close()
    await in_transaction.close()
    await by_hand.close()
    await engine.dispose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database", default="postgresql://postgres@127.0.0.1:5432/todo_bench")
    parser.add_argument("--size", type=int, default=10_000)
    args = parser.parse_args()
    service_dsn = dataset.service_url(args.database)
    asyncio.run(main(service_dsn, dataset.user_for(args.size)))
