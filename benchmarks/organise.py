"""Tags, subtasks' lists and batches under load (issue 27's figures).

    .venv/bin/python -m benchmarks.organise [--tasks 2000] [--big 100000] [--duration 5]

Serves the service (PostgreSQL, the benchmark database, one worker). Its users are made
through the API itself, in batches, once (a later run reuses them). Prints:
- tags: a list's first page where every task has 3 tags against the same page of a user
  of as many tasks without tags, CPU µs a request and req/s at 16 connections (wrk);
- tag filter: p50 of a `tag=` first page at `--big` tasks against 100 tasks, one
  connection, for a tag on 30% of the tasks and one on 0.1%;
- batches: tasks stored a second by atomic batches of 100 creates against single
  creates, both at 16 connections.
"""

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlencode

import httpx

from backend.auth import issue_token
from backend.config import Settings
from benchmarks import dataset
from benchmarks.load import Result, serving, wrk

CLI = "from backend.cli import app; app()"
VOCABULARY = [f"t{n}" for n in range(10)]


def tags_of(number: int) -> list[str]:
    """Three tags of ten, in turn (each on 30% of the tasks), and `rare` on 0.1%."""
    chosen = [VOCABULARY[(number + k) % len(VOCABULARY)] for k in range(3)]
    return [*chosen, "rare"] if number % 1000 == 0 else chosen


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--big", type=int, default=100_000)
    parser.add_argument("--duration", type=float, default=5)
    parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--database", default="todo_bench")
    args = parser.parse_args(argv)
    os.environ |= {"JWT_SECRET": dataset.SECRET, "SECRET_KEY": dataset.SECRET}
    data = dataset.prepare(args.server, args.database, sizes=dataset.SIZES, reseed=False)
    settings, now = Settings(), int(time.time())
    users = {
        "tagged": (f"bench-org-tagged-{args.tasks}", args.tasks, True),
        "plain": (f"bench-org-plain-{args.tasks}", args.tasks, False),
        "small": ("bench-org-tags-100", 100, True),
        "big": (f"bench-org-tags-{args.big}", args.big, True),
        "writer": ("bench-org-writer", 0, False),
    }
    tokens = {
        kind: issue_token(settings, user, ttl_seconds=3600, now=now)
        for kind, (user, _, _) in users.items()
    }
    command = [sys.executable, "-c", CLI, "serve", "--no-migrate", "--port", "{port}"]
    log = Path(tempfile.mkdtemp(prefix="todo-organise-")) / "service.log"
    with serving("service", command, dataset.service_env(data), log) as server:
        asyncio.run(_seed(server.url, users, tokens))

        def run(kind: str, requests: list[tuple[str, str, str]], connections: int) -> Result:
            return wrk(
                server,
                requests,
                token=tokens[kind],
                connections=connections,
                seconds=args.duration,
            )

        def page(kind: str, **query: str) -> list[tuple[str, str, str]]:
            user = users[kind][0]
            return [("GET", f"/api/{user}/tasks?{urlencode({'limit': 20, **query})}", "")]

        tagged, plain = run("tagged", page("tagged"), 16), run("plain", page("plain"), 16)
        filters = {
            (tag, kind): run(kind, page(kind, tag=tag), 1)
            for tag in ("t0", "rare")
            for kind in ("small", "big")
        }
        writer = users["writer"][0]
        single = [("POST", f"/api/{writer}/tasks", '{"title": "single"}')]
        creates = [
            {"id": f"op{n}", "method": "POST", "path": "/tasks", "body": {"title": f"b{n}"}}
            for n in range(100)
        ]
        batch = [("POST", f"/api/{writer}/batch", json.dumps({"operations": creates}))]
        singles, batches = run("writer", single, 16), run("writer", batch, 16)
    _report(args, tagged, plain, filters, singles, batches)


async def _seed(url: str, users: dict[str, tuple[str, int, bool]], tokens: dict[str, str]) -> None:
    """Each user's tasks, made with batches of 100, unless the user has some already."""
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        for kind, (user, size, tagged) in users.items():
            client.headers["Authorization"] = f"Bearer {tokens[kind]}"
            listed = await client.get(f"/api/{user}/tasks?limit=1")
            if size == 0 or listed.json()["items"]:
                continue
            started, lanes = time.perf_counter(), asyncio.Semaphore(4)
            batches = [range(first, min(first + 100, size)) for first in range(0, size, 100)]
            await asyncio.gather(*(_batch(client, lanes, user, tasks, tagged) for tasks in batches))
            print(f"seeded {user}: {size:,} tasks in {time.perf_counter() - started:.1f} s")


async def _batch(
    client: httpx.AsyncClient,
    lanes: asyncio.Semaphore,
    user: str,
    numbers: range,
    tagged: bool,
) -> None:
    operations = [
        {
            "id": f"op{n}",
            "method": "POST",
            "path": "/tasks",
            "body": {"title": f"Task {n}", "tags": tags_of(n) if tagged else []},
        }
        for n in numbers
    ]
    async with lanes:
        answer = await client.post(f"/api/{user}/batch", json={"operations": operations})
    if answer.status_code != 200 or not answer.json()["committed"]:
        raise SystemExit(f"seeding {user} failed: {answer.text[:300]}")


def _report(
    args: argparse.Namespace,
    tagged: Result,
    plain: Result,
    filters: dict[tuple[str, str], Result],
    singles: Result,
    batches: Result,
) -> None:
    print(f"list first page, {args.tasks:,} tasks, 16 connections:")
    for name, result in (("3 tags a task", tagged), ("no tags", plain)):
        print(
            f"  {name:<14} {result.requests_per_second:7.0f} req/s "
            f"{result.cpu_us:7.0f} µs CPU a request  p99 {result.p99_ms:6.1f} ms"
        )
    print(f"  tagged over plain, CPU a request: {tagged.cpu_us / plain.cpu_us:.3f}")
    print(f"tag= first page, one connection, p50 at {args.big:,} tasks over 100:")
    for tag, share in (("t0", "30%"), ("rare", "0.1%")):
        small, big = filters[(tag, "small")], filters[(tag, "big")]
        print(
            f"  {tag} (on {share}): {small.p50_ms:.2f} -> {big.p50_ms:.2f} ms, "
            f"{big.p50_ms / small.p50_ms:.2f}x"
        )
    single_rate = singles.requests_per_second
    batch_rate = batches.requests_per_second * 100
    print("tasks stored a second, 16 connections:")
    print(f"  single creates {single_rate:8.0f}  (p99 {singles.p99_ms:.1f} ms)")
    print(f"  batches of 100 {batch_rate:8.0f}  (p99 {batches.p99_ms:.1f} ms)")
    print(f"  batches over singles: {batch_rate / single_rate:.1f}x")


if __name__ == "__main__":
    main()
