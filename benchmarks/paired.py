"""A change judged in served requests: the service at an earlier commit against this checkout.

    .venv/bin/python -m benchmarks.paired --before HEAD~1 --only "create,get one"
    .venv/bin/python -m benchmarks.paired --accept application/vnd.todo.envelope+json

Both serve from the benchmark database (seeded as `benchmarks.run` seeds it), one worker
each: the earlier commit from a temporary git worktree, this checkout as it is. For each
chosen scenario of `benchmarks.run`, wrk drives the two servers in turn, `--rounds` times,
alternating which goes first, so that the machine's drift over the minutes of a
comparison lands on both sides. It prints the mean requests/s, server CPU per request and
p99 of each side, and how many of the rounds the checkout took less CPU a request: on a
shared machine CPU per request moves less than requests/s (specs/performance.md).
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

from backend.auth import issue_token
from backend.config import Settings
from backend.pagination import CursorSigner
from benchmarks import dataset
from benchmarks.load import ROOT, Result, serving, wrk
from benchmarks.scenarios import throughput

SERVE = "from backend.cli import app; app()"
"""The `todo-api` command of whichever `backend` the working directory holds."""


@contextmanager
def worktree(revision: str) -> Iterator[Path]:
    """A checkout of `revision` beside this one, removed after."""
    path = Path(tempfile.mkdtemp(prefix="todo-before-"))
    _git("worktree", "add", "--detach", "--force", str(path), revision)
    try:
        yield path
    finally:
        _git("worktree", "remove", "--force", str(path))


def _git(*arguments: str) -> None:
    command = ["git", *arguments]
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True)


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--before", default="HEAD~1", help="the git revision to compare this checkout with")
    add("--only", default="list first", help="scenarios: comma-separated name parts")
    add("--rounds", type=int, default=6)
    add("--duration", type=float, default=4, help="seconds per wrk run")
    add("--connections", type=int, default=16)
    add("--server", default="postgresql://postgres@127.0.0.1:5432", help="no database in it")
    add("--database", default="todo_bench")
    add("--size", type=int, default=10_000, help="tasks of the benchmark user")
    add("--accept", help="the Accept header of every request, e.g. the envelope's media type")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = _arguments(argv)
    os.environ |= {"JWT_SECRET": dataset.SECRET, "SECRET_KEY": dataset.SECRET}
    data = dataset.prepare(args.server, args.database, sizes=dataset.SIZES, reseed=False)
    dataset.refresh(data, args.size)
    user = dataset.user_data(data.admin_dsn, args.size)
    token = issue_token(Settings(), user.user_id, ttl_seconds=3600, now=int(time.time()))
    wanted = args.only.split(",")
    every = throughput(user, CursorSigner(dataset.SECRET))
    scenarios = [s for s in every if any(part in s.name for part in wanted)]
    logs = Path(tempfile.mkdtemp(prefix="todo-paired-"))
    command = [sys.executable, "-c", SERVE, "serve", "--no-migrate", "--port", "{port}"]
    print(f"{args.before} against this checkout; {args.rounds} rounds of {args.duration:g} s at "
          f"{args.connections} connections; logs: {logs}")  # fmt: skip
    with ExitStack() as stack:
        before_root = stack.enter_context(worktree(args.before))
        servers = {
            name: stack.enter_context(
                serving(
                    name,
                    command,
                    dataset.service_env(data) | {"PYTHONPATH": str(root)},
                    logs / f"{name}.log",
                    cwd=root,
                )
            )
            for name, root in (("before", before_root), ("after", ROOT))
        }
        for scenario in scenarios:
            runs: dict[str, list[Result]] = {name: [] for name in servers}
            for round_ in range(args.rounds):
                order = list(servers) if round_ % 2 == 0 else list(reversed(servers))
                for name in order:
                    if scenario.reopen:
                        dataset.reopen(data.admin_dsn, user.user_id, user.open_task_ids)
                    result = wrk(
                        servers[name],
                        scenario.requests,
                        token=token,
                        connections=args.connections,
                        seconds=args.duration,
                        accept=args.accept,
                    )
                    if result.errors:
                        raise SystemExit(f"{name} answered {result.errors} errors: see {logs}")
                    runs[name].append(result)
            won = sum(
                after.cpu_us < before.cpu_us
                for before, after in zip(runs["before"], runs["after"], strict=True)
            )
            for name, results in runs.items():
                mean = {
                    field: sum(getattr(r, field) for r in results) / len(results)
                    for field in ("requests_per_second", "cpu_us", "p99_ms")
                }
                print(
                    f"{scenario.name:<26} {name:<6} {mean['requests_per_second']:7.0f} req/s "
                    f"{mean['cpu_us']:7.0f} µs CPU a request  p99 {mean['p99_ms']:6.1f} ms"
                )
            print(f"{'':<26} after took less CPU in {won} of {args.rounds} rounds")


if __name__ == "__main__":
    main()
