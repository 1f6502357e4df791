"""Webhook deliveries: how many a second one worker sends, and how soon after a write.

    .venv/bin/python -m benchmarks.webhooks [--users 10 --hooks 10 --tasks 50 --writes 200]

Serves the service (PostgreSQL, the benchmark database) beside one `todo-api worker`, and
a local receiver in this process that answers 200 at once. Prints:
- throughput: `--users` users with `--hooks` webhooks each write `--tasks` tasks apiece
  while the worker is stopped; the worker then starts, and the figure is deliveries a
  second from its start to the last delivery's arrival (each webhook's line goes one at
  a time, in order);
- delay: one webhook, `--writes` creates one at a time, from sending each create to its
  delivery's arrival (p50, p99): an upper bound of commit to delivery.
Every webhook it made is deleted at the end.
"""

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

from backend.auth import issue_token
from backend.config import Settings
from benchmarks import dataset
from benchmarks.load import serving

CLI = "from backend.cli import app; app()"


class Receiver:
    """A minimal HTTP/1.1 receiver (keep-alive): each request's arrival time by the task
    id in its body."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.count = 0
        self.changed = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                body = json.loads(await reader.readexactly(length))
                self.arrived[body["data"].get("id", "")] = time.perf_counter()
                self.count += 1
                self.changed.set()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def until(self, count: int, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while self.count < count:
            self.changed.clear()
            if time.monotonic() > deadline:
                raise SystemExit(f"only {self.count} of {count} deliveries arrived")
            await asyncio.wait_for(self.changed.wait(), deadline - time.monotonic())


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--hooks", type=int, default=10)
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--writes", type=int, default=200)
    parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--database", default="todo_bench")
    args = parser.parse_args(argv)
    os.environ |= {"JWT_SECRET": dataset.SECRET, "SECRET_KEY": dataset.SECRET}
    data = dataset.prepare(args.server, args.database, sizes=dataset.SIZES, reseed=False)
    asyncio.run(_run(args, data))


async def _run(args: argparse.Namespace, data: dataset.Dataset) -> None:
    receiver = Receiver()
    listener = await asyncio.start_server(receiver.handle, "127.0.0.1", 0)
    hook_url = f"http://127.0.0.1:{listener.sockets[0].getsockname()[1]}/hook"
    allowed = {"WEBHOOK_ALLOWED_HOSTS": "127.0.0.1"}
    api_env = dataset.service_env(data) | allowed
    worker_env = dataset.service_env(data) | allowed | {"DATABASE_URL": data.admin_dsn}
    folder = Path(tempfile.mkdtemp(prefix="todo-webhooks-"))
    api = [sys.executable, "-c", CLI, "serve", "--no-migrate", "--port", "{port}"]
    worker = [sys.executable, "-c", CLI, "worker"]
    settings, now = Settings(), int(time.time())
    users = [f"bench-hook-{n}" for n in range(args.users)]
    tokens = {user: issue_token(settings, user, ttl_seconds=3600, now=now) for user in users}
    with serving("service", api, api_env, folder / "service.log") as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            try:
                for user in users:
                    for _ in range(args.hooks):
                        await _call(
                            client, "POST", user, tokens[user], "webhooks", {"url": hook_url}
                        )
                await asyncio.gather(
                    *(_writes(client, user, tokens[user], args.tasks) for user in users)
                )
                expected = args.users * args.hooks * args.tasks
                started = time.perf_counter()
                with running(worker, worker_env, folder / "worker.log"):
                    await receiver.until(expected, seconds=600)
                    rate = expected / (time.perf_counter() - started)
                    await _clear_hooks(client, users[1:], tokens)
                    delays = await _delays(client, users[0], tokens[users[0]], args, receiver)
            finally:
                await _clear_hooks(client, users, tokens)
    listener.close()
    print(f"one worker, {args.users * args.hooks} webhooks, {expected} deliveries queued")
    print(f"  deliveries a second, worker start to last arrival: {rate:.0f}")
    ordered = sorted(delays)
    print(
        f"  create sent -> its last delivery, {len(delays)} one at a time, {args.hooks} webhooks: "
        f"p50 {statistics.median(delays) * 1000:.1f} ms, "
        f"p99 {ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000:.1f} ms"
    )


@contextmanager
def running(command: list[str], env: dict[str, str], log: Path) -> Iterator[None]:
    """`command` running in the background (a `todo-api worker`), terminated after."""
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=os.environ | env, stdout=out, stderr=out)
    try:
        yield
    finally:
        process.terminate()
        process.wait(20)


async def _call(
    client: httpx.AsyncClient, method: str, user: str, token: str, path: str, body: object = None
) -> dict[str, object]:
    response = await client.request(
        method, f"/api/{user}/{path}", json=body, headers={"Authorization": f"Bearer {token}"}
    )
    if response.is_error:
        raise SystemExit(f"{method} {path}: {response.status_code} {response.text}")
    return response.json() if response.content else {}


async def _writes(client: httpx.AsyncClient, user: str, token: str, count: int) -> None:
    for number in range(count):
        await _call(client, "POST", user, token, "tasks", {"title": f"hook {number}"})


async def _delays(
    client: httpx.AsyncClient,
    user: str,
    token: str,
    args: argparse.Namespace,
    receiver: Receiver,
) -> list[float]:
    delays = []
    for number in range(args.writes):
        sent = time.perf_counter()
        task = await _call(client, "POST", user, token, "tasks", {"title": f"delay {number}"})
        await receiver.until(receiver.count + args.hooks, seconds=30)
        delays.append(receiver.arrived[str(task["id"])] - sent)
    return delays


async def _clear_hooks(client: httpx.AsyncClient, users: list[str], tokens: dict[str, str]) -> None:
    """Delete the users' webhooks (their deliveries go with them)."""
    for user in users:
        listed = await _call(client, "GET", user, tokens[user], "webhooks?limit=100")
        for hook in listed["items"]:  # type: ignore[attr-defined]
            await _call(client, "DELETE", user, tokens[user], f"webhooks/{hook['id']}")


if __name__ == "__main__":
    main()
