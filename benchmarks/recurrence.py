"""Recurring completions and reminders under load (issue 28's figures).

    .venv/bin/python -m benchmarks.recurrence [--tasks 20000] [--reminders 10000] [--duration 5]

Serves the service (PostgreSQL, the benchmark database, one worker) beside one
`todo-api worker`. Its users are new at each run, made through the API in batches, and
deleted at the end. Prints:
- completion: `PATCH .../complete` at 16 connections, each request a different one of
  `--tasks` open tasks due at 09:00 (each completed once at most; vacuumed after they are
  made): plain tasks against
  weekly recurring ones (Europe/Paris), each moved on to its next occurrence; CPU µs a
  request and req/s (wrk), and the ratio of CPU a request;
- reminders: `--reminders` tasks of 100 users, each with one reminder at one instant a
  little after they are all made; when the worker had fired them all, and each
  reminder's lag (`fired_at - fire_at`, read from the database): p50, p99, max.
"""

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg

from backend.auth import issue_token
from backend.config import Settings
from benchmarks import dataset
from benchmarks.load import Result, serving, wrk
from benchmarks.webhooks import running

CLI = "from backend.cli import app; app()"
DUE = "2027-01-04T08:00:00Z"
WEEKLY = {"rule": "FREQ=WEEKLY;BYDAY=MO", "tz": "Europe/Paris"}
USERS = 100
PREFIX = "bench-rec-"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--reminders", type=int, default=10_000)
    parser.add_argument("--duration", type=float, default=5)
    parser.add_argument("--lead", type=float, default=30, help="seconds to the reminders")
    parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--database", default="todo_bench")
    args = parser.parse_args(argv)
    os.environ |= {"JWT_SECRET": dataset.SECRET, "SECRET_KEY": dataset.SECRET}
    data = dataset.prepare(args.server, args.database, sizes=dataset.SIZES, reseed=False)
    stamp = int(time.time())
    settings = Settings()

    def token(user: str) -> str:
        return issue_token(settings, user, ttl_seconds=3600, now=stamp)

    folder = Path(tempfile.mkdtemp(prefix="todo-recurrence-"))
    api = [sys.executable, "-c", CLI, "serve", "--no-migrate", "--port", "{port}"]
    worker = [sys.executable, "-c", CLI, "worker"]
    worker_env = dataset.service_env(data) | {"DATABASE_URL": data.admin_dsn}
    try:
        with serving("service", api, dataset.service_env(data), folder / "service.log") as server:
            kinds = {"plain": None, "recurring": WEEKLY}
            tasks = {
                kind: asyncio.run(
                    _seed(server.url, f"{PREFIX}{kind}-{stamp}", token, args.tasks, recurrence)
                )
                for kind, recurrence in kinds.items()
            }
            _settle(data.admin_dsn)
            completions = {
                kind: wrk(
                    server,
                    [("PATCH", f"/api/{user}/tasks/{task}/complete", "") for task in ids],
                    token=token(user),
                    connections=16,
                    seconds=args.duration,
                )
                for kind, (user, ids) in tasks.items()
            }
            with running(worker, worker_env, folder / "worker.log"):
                fire_at = datetime.now(UTC) + timedelta(seconds=args.lead)
                users = [f"{PREFIX}remind-{stamp}-{n}" for n in range(USERS)]
                made = time.monotonic()
                asyncio.run(_remind(server.url, users, token, args.reminders, fire_at))
                made_in = time.monotonic() - made
                lags = _wait_fired(data.admin_dsn, f"{PREFIX}remind-{stamp}-%", args.reminders)
    finally:
        _clean(data.admin_dsn, f"{PREFIX}%-{stamp}%")
    _report(args, completions, made_in, lags)


async def _seed(
    url: str, user: str, token: Callable[[str], str], count: int, recurrence: dict[str, str] | None
) -> tuple[str, list[str]]:
    """`count` open tasks of a new user, due at `DUE`; their ids."""
    body = {"title": "Water the plants", "due_at": DUE, "recurrence": recurrence}
    return user, await _batches(url, user, token, [body] * count)


async def _remind(
    url: str, users: list[str], token: Callable[[str], str], count: int, fire_at: datetime
) -> None:
    body = {"title": "Stand-up", "reminders": [{"at": fire_at.isoformat()}]}
    share, lanes = count // len(users), asyncio.Semaphore(4)

    async def seed(user: str) -> None:
        async with lanes:
            await _batches(url, user, token, [body] * share)

    await asyncio.gather(*(seed(user) for user in users))


async def _batches(
    url: str, user: str, token: Callable[[str], str], bodies: list[dict[str, Any]]
) -> list[str]:
    headers = {"Authorization": f"Bearer {token(user)}"}
    ids: list[str] = []
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120) as client:
        for first in range(0, len(bodies), 100):
            operations = [
                {"id": f"op{n}", "method": "POST", "path": "/tasks", "body": body}
                for n, body in enumerate(bodies[first : first + 100])
            ]
            answer = await client.post(f"/api/{user}/batch", json={"operations": operations})
            if answer.status_code != 200 or not answer.json()["committed"]:
                raise SystemExit(f"seeding {user} failed: {answer.text[:300]}")
            ids += [result["body"]["id"] for result in answer.json()["results"]]
    return ids


def _settle(dsn: str) -> None:
    """Vacuum what the seeding wrote, so that autovacuum does not share the run's cores."""
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute("VACUUM ANALYZE tasks, task_history, changes")


def _wait_fired(dsn: str, users: str, count: int) -> list[float]:
    """Once every reminder of `users` fired (or two minutes past the last): each one's
    lag in seconds."""
    with psycopg.connect(dsn, autocommit=True) as connection:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            row = connection.execute(
                "SELECT count(*) FILTER (WHERE fired_at IS NULL), count(*), max(fire_at) "
                "FROM reminders WHERE user_id LIKE %s",
                (users,),
            ).fetchone()
            assert row is not None
            left, total, last = row
            if total >= count and left == 0:
                break
            if last is not None and datetime.now(UTC) > last + timedelta(minutes=2):
                raise SystemExit(f"{left} of {total} reminders were still to fire")
            time.sleep(0.5)
        lags = connection.execute(
            "SELECT extract(epoch FROM fired_at - fire_at) FROM reminders "
            "WHERE user_id LIKE %s ORDER BY 1",
            (users,),
        ).fetchall()
    return [float(lag) for (lag,) in lags]


def _clean(dsn: str, users: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as connection:
        for table in ("reminders", "changes", "task_history", "idempotency_keys", "tasks"):
            connection.execute(f"DELETE FROM {table} WHERE user_id LIKE %s", (users,))  # noqa: S608
        connection.execute("DELETE FROM users WHERE id LIKE %s", (users,))


def _report(
    args: argparse.Namespace, completions: dict[str, Result], made_in: float, lags: list[float]
) -> None:
    plain, recurring = completions["plain"], completions["recurring"]
    print(f"complete, 16 connections, each request a different open task ({args.tasks:,}):")
    for name, result in (("plain", plain), ("recurring", recurring)):
        print(
            f"  {name:<10} {result.requests_per_second:7.0f} req/s "
            f"{result.cpu_us:7.0f} µs CPU a request  p99 {result.p99_ms:6.1f} ms"
            f"  errors {result.errors}"
        )
    print(f"  recurring over plain, CPU a request: {recurring.cpu_us / plain.cpu_us:.3f}")
    p99 = lags[min(len(lags) - 1, int(0.99 * len(lags)))]
    print(f"reminders: {len(lags):,} of {USERS} users, made in {made_in:.1f} s, one worker:")
    print(
        f"  lag after their time: p50 {lags[len(lags) // 2]:.2f} s, p99 {p99:.2f} s, "
        f"max {lags[-1]:.2f} s"
    )


if __name__ == "__main__":
    main()
