"""Event streams under load: many streams of other users open on one worker.

    .venv/bin/python -m benchmarks.events [--streams 1000] [--writes 200]

Serves the service (one worker, PostgreSQL, the benchmark database) and prints:
- create throughput and CPU a request (wrk, 16 connections) before the streams open,
  with `--streams` streams of other users open, and after they closed;
- the delay from sending a create to its event on the creator's stream, one create at a
  time (p50, p99), with those streams open;
- the server's peak RSS.
"""

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx

from backend.auth import issue_token
from backend.config import Settings
from backend.pagination import CursorSigner
from benchmarks import dataset
from benchmarks.load import Result, Server, serving, wrk
from benchmarks.scenarios import throughput

SERVE = "from backend.cli import app; app()"


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def _open_stream(url: str, path: str, token: str) -> Connection:
    """A stream, open until its writer is closed (dropping the writer hangs up)."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
        "Accept: text/event-stream\r\n\r\n".encode()
    )
    await writer.drain()
    status = await reader.readline()
    if b" 200 " not in status:
        raise SystemExit(f"a stream was refused: {status!r}")
    return reader, writer


async def _delays(url: str, user_id: str, token: str, writes: int) -> list[float]:
    """Seconds from sending each create to its event on the user's stream."""
    reader, writer = await _open_stream(url, f"/api/{user_id}/events", token)
    delays: list[float] = []
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}) as c:
        for number in range(writes):
            sent = time.perf_counter()
            response = await c.post(f"/api/{user_id}/tasks", json={"title": f"event {number}"})
            task_id = response.json()["id"].encode()
            while task_id not in (line := await reader.readline()):
                if not line:
                    raise SystemExit("the stream ended")
            delays.append(time.perf_counter() - sent)
    writer.close()
    return delays


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--writes", type=int, default=200)
    parser.add_argument("--duration", type=float, default=5)
    parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--database", default="todo_bench")
    args = parser.parse_args(argv)
    os.environ |= {"JWT_SECRET": dataset.SECRET, "SECRET_KEY": dataset.SECRET}
    data = dataset.prepare(args.server, args.database, sizes=dataset.SIZES, reseed=False)
    user = dataset.user_data(data.admin_dsn, 10_000)
    settings, now = Settings(), int(time.time())
    token = issue_token(settings, user.user_id, ttl_seconds=3600, now=now)
    others = [
        issue_token(settings, f"bench-stream-{n}", ttl_seconds=3600, now=now)
        for n in range(args.streams)
    ]
    [create] = [s for s in throughput(user, CursorSigner(dataset.SECRET)) if s.name == "create"]
    env = dataset.service_env(data) | {"EVENTS_MAX_STREAMS": str(args.streams + 10)}
    command = [sys.executable, "-c", SERVE, "serve", "--no-migrate", "--port", "{port}"]
    log = Path(tempfile.mkdtemp(prefix="todo-events-")) / "service.log"
    with serving("service", command, env, log) as server:

        def creates() -> Result:
            return wrk(server, create.requests, token=token, connections=16, seconds=args.duration)

        before = creates()
        delays, during = asyncio.run(_measure(server, others, user.user_id, token, args, creates))
        after = creates()
        rss = server.peak_rss_mb()
    _report(args, before, during, after, delays, rss)


async def _measure(
    server: Server,
    others: list[str],
    user_id: str,
    token: str,
    args: argparse.Namespace,
    creates: Callable[[], Result],
) -> tuple[list[float], Result]:
    opened = [
        await _open_stream(server.url, f"/api/bench-stream-{n}/events", other)
        for n, other in enumerate(others)
    ]
    delays = await _delays(server.url, user_id, token, args.writes)
    during = await asyncio.to_thread(creates)  # the streams still open
    for _, writer in opened:
        writer.close()
    return delays, during


def _report(
    args: argparse.Namespace,
    before: Result,
    during: Result,
    after: Result,
    delays: list[float],
    rss: float,
) -> None:
    baseline_rps = (before.requests_per_second + after.requests_per_second) / 2
    baseline_cpu = (before.cpu_us + after.cpu_us) / 2
    print(f"{args.streams} streams of other users open on one worker")
    for name, result in (("before", before), ("with streams", during), ("after", after)):
        print(
            f"  create {name:<13} {result.requests_per_second:7.0f} req/s "
            f"{result.cpu_us:7.0f} µs CPU a request  p99 {result.p99_ms:6.1f} ms"
        )
    print(
        f"  with streams over without: req/s {during.requests_per_second / baseline_rps:.3f}, "
        f"CPU a request {during.cpu_us / baseline_cpu:.3f}"
    )
    print(
        f"  create -> its event on the stream, {len(delays)} one at a time: "
        f"p50 {statistics.median(delays) * 1000:.1f} ms, "
        f"p99 {_percentile(delays, 0.99) * 1000:.1f} ms"
    )
    print(f"  server peak RSS {rss:.0f} MB")


if __name__ == "__main__":
    main()
