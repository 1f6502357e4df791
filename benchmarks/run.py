"""The performance benchmark: the service beside the raw driver, driven by wrk.

    .venv/bin/python -m benchmarks.run [--quick] [--duration S] [--connections 1,16,64]

Seeds (once) a PostgreSQL database with users of 100, 10,000 and 100,000 tasks, starts
the raw ceiling (`benchmarks/ceiling.py`), the stack's floor (`benchmarks/floor.py`: the
ceiling's endpoint through SQLAlchemy) and the service (`todo-api serve`, one worker),
drives them with wrk, and prints two tables: throughput and latency per endpoint as a
ratio to the ceiling (measured again right before each run, so that the machine's drift
over the table cancels), then page latency at 100 and 100,000 tasks per user for every sort,
filter and search. See specs/performance.md.
"""

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlencode

import httpx

from backend.auth import issue_token
from backend.config import Settings
from backend.pagination import CursorSigner
from benchmarks import dataset
from benchmarks.load import Result, Server, serving, uvicorn_command, wrk
from benchmarks.scenarios import LIMIT, scale_queries, throughput


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--server", default="postgresql://postgres@127.0.0.1:5432", help="no database in it")
    add("--database", default="todo_bench")
    add("--reseed", action="store_true", help="drop and seed the database again")
    add("--duration", type=float, default=5, help="seconds per wrk run")
    add("--connections", default="1,16,64")
    add("--size", type=int, default=10_000, help="tasks of the throughput table's user")
    add("--only", default="", help="scenarios to run: comma-separated name parts")
    add("--quick", action="store_true", help="2 s runs at 16 and 64 connections")
    add("--skip-scale", action="store_true", help="leave out the 100 vs 100,000 table")
    add("--workers", type=int, default=1, help="service worker processes")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.connections = 2, "16,64"
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = _arguments(argv)
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install wrk")
    connections = [int(c) for c in args.connections.split(",")]
    os.environ |= {"JWT_SECRET": dataset.SECRET, "SECRET_KEY": dataset.SECRET}
    data = dataset.prepare(args.server, args.database, sizes=dataset.SIZES, reseed=args.reseed)
    dataset.refresh(data, args.size)  # earlier runs' writes would weigh on this one
    users = {size: dataset.user_data(data.admin_dsn, size) for size in dataset.SIZES}
    now = int(time.time())
    tokens = {
        size: issue_token(Settings(), users[size].user_id, ttl_seconds=3600, now=now)
        for size in dataset.SIZES
    }
    user, token = users[args.size], tokens[args.size]
    scenarios = throughput(user, CursorSigner(dataset.SECRET))
    if args.only:
        wanted = args.only.split(",")
        scenarios = [s for s in scenarios if any(part in s.name for part in wanted)]
    logs = Path(tempfile.mkdtemp(prefix="todo-bench-"))
    ceiling_command, floor_command = (
        uvicorn_command("benchmarks.ceiling:app"),
        uvicorn_command("benchmarks.floor:app"),
    )
    service_command = [
        str(Path(sys.executable).parent / "todo-api"), "serve", "--no-migrate",
        "--port", "{port}", "--workers", str(args.workers),
    ]  # fmt: skip
    service_env, ceiling_env = dataset.service_env(data), dataset.ceiling_env(data)

    print(f"\nwrk: 1 thread, {args.duration:g} s a run; user of {args.size:,} tasks; logs: {logs}")
    with (
        serving("ceiling", ceiling_command, ceiling_env, logs / "ceiling.log") as ceiling,
        serving("floor", floor_command, ceiling_env, logs / "floor.log") as floor,
        serving("service", service_command, service_env, logs / "service.log") as service,
    ):
        first_page = [("GET", f"/api/{user.user_id}/tasks?limit={LIMIT}", "")]
        for server in (ceiling, floor, service):  # warm up: pools, caches, prepared statements
            wrk(server, first_page, token=token, connections=16, seconds=1)
        rows = []
        ceilings: dict[int, list[Result]] = {c: [] for c in connections}
        for c in connections if scenarios else ():
            # The stack's floor (benchmarks/floor.py): what FastAPI over SQLAlchemy costs
            # the ceiling's own list page, before the service adds anything.
            raw = wrk(ceiling, first_page, token=token, connections=c, seconds=args.duration)
            ceilings[c].append(raw)
            result = wrk(floor, first_page, token=token, connections=c, seconds=args.duration)
            rows.append(("stack floor (list)", c, result, raw))
        for scenario in scenarios:
            for c in connections:
                if scenario.reopen:
                    dataset.reopen(data.admin_dsn, user.user_id, user.open_task_ids)
                # The ceiling again right before each run: the machine's speed drifts
                # (the ceiling's own req/s moved by two thirds between runs of one
                # afternoon), and a ratio to a ceiling measured minutes earlier carries it.
                raw = wrk(ceiling, first_page, token=token, connections=c, seconds=args.duration)
                ceilings[c].append(raw)
                result = wrk(
                    service, scenario.requests, token=token, connections=c, seconds=args.duration
                )
                rows.append((scenario.name, c, result, raw))
        if rows:
            middle = [
                ("raw ceiling (list)", c, _median(runs), _median(runs))
                for c, runs in ceilings.items()
            ]
            _print_throughput(middle + rows)
            for c, runs in ceilings.items():
                low, high = (f(run.requests_per_second for run in runs) for f in (min, max))
                print(f"ceiling at {c} connections: {low:.0f} to {high:.0f} req/s (median shown)")
        peaks = f"ceiling {ceiling.peak_rss_mb():.0f} MB, service {service.peak_rss_mb():.0f} MB"
        print(f"\npeak RSS: {peaks}")
        if not args.skip_scale:
            _scale(service, users, tokens, seconds=max(1, round(args.duration / 2)))


def _median(runs: list[Result]) -> Result:
    """The run of median requests/s."""
    return sorted(runs, key=lambda run: run.requests_per_second)[len(runs) // 2]


def _print_table(header: list[str], rows: list[list[str]]) -> None:
    """Columns as wide as their widest cell; the first one left-aligned, numbers right."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        pairs = zip(row[1:], widths[1:], strict=True)
        cells = [row[0].ljust(widths[0])] + [cell.rjust(width) for cell, width in pairs]
        print("  ".join(cells))


def _print_throughput(rows: list[tuple[str, int, Result, Result]]) -> None:
    """One line per scenario and connection count; the ratio is to the req/s of the
    ceiling run just before it."""
    header = ["endpoint", "conns", "req/s", "p50 ms", "p99 ms", "errors", "ratio", "cpu µs/req"]
    _print_table(
        header,
        [
            [
                name, str(c), f"{result.requests_per_second:.0f}", f"{result.p50_ms:.2f}",
                f"{result.p99_ms:.2f}", str(result.errors),
                f"{result.requests_per_second / ceiling.requests_per_second:.2f}",
                f"{result.cpu_us:.0f}",
            ]
            for name, c, result, ceiling in rows
        ],
    )  # fmt: skip


def _scale(
    service: Server, users: dict[int, dataset.UserData], tokens: dict[int, str], *, seconds: float
) -> None:
    """p50 of one page, one connection, for the smallest and the largest user.

    Each query runs small, large, large, small (half the time each, in whole seconds), and
    each size's p50 is the mean of its two runs: the machine's drift over the seconds of a
    pair cancels instead of landing on one side of the ratio. The items each page holds are
    printed beside: a search can find fewer than a page in the small user's tasks, and a
    shorter page costs less to build and send."""
    small, large = min(users), max(users)
    print(f"\npage latency, 1 connection, {seconds:g} s a query: {small:,} vs {large:,} tasks")
    queries = {size: scale_queries(users[size]) for size in (small, large)}
    half = max(1, seconds // 2)  # wrk takes whole seconds
    rows = []
    for name in queries[small]:
        runs: dict[int, list[float]] = {small: [], large: []}
        paths = {
            size: f"/api/{users[size].user_id}/tasks?"
            + urlencode({"limit": LIMIT, **queries[size][name]})
            for size in (small, large)
        }
        items = {
            size: len(
                httpx.get(service.url + path, headers={"Authorization": f"Bearer {tokens[size]}"})
                .raise_for_status()
                .json()["items"]
            )
            for size, path in paths.items()
        }
        for size in (small, large, large, small):
            result = wrk(
                service, [("GET", paths[size], "")], token=tokens[size], connections=1, seconds=half
            )
            runs[size].append(result.p50_ms)
        p50 = {size: sum(values) / len(values) for size, values in runs.items()}
        rows.append(
            [
                name,
                f"{items[small]} / {items[large]}",
                f"{p50[small]:.2f}",
                f"{p50[large]:.2f}",
                f"{p50[large] / p50[small]:.2f}",
            ]
        )
    header = ["query", "items", f"p50 ms at {small:,}", f"p50 ms at {large:,}", "ratio"]
    _print_table(header, rows)


if __name__ == "__main__":
    main()
