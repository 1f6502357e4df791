"""What the observability middleware and the rate limits add to a request: microseconds
per request through the whole ASGI app, each variant against the bare app.

Run: .venv/bin/python -m benchmarks.middleware [--requests N] [--redis redis://...]

Requests go through `httpx.AsyncClient(transport=ASGITransport(app))`, one at a time, best
of three runs. Two routes that never touch the database, so that the differences are the
middleware's: `/healthz` (no authentication; the limiter leaves it alone) and a 403 under
`/api/{user_id}` (a JWT is verified, then the per-user limit is counted before the guard
refuses), which passes through every layer a user request does except its query.
"""

import argparse
import asyncio
import logging
import os
import tempfile
import time
from contextlib import AsyncExitStack
from typing import Any

import httpx
import jwt
from fastapi import FastAPI
from starlette.types import Message, Receive, Scope, Send

from backend import migrate
from backend.config import Settings
from backend.main import create_app
from backend.observability import JsonFormatter, Metrics, Observe
from backend.ratelimit import RateLimiter

SECRET = "benchmark-secret-that-is-long-enough-for-hs256"
ROUTES = ("/healthz", "/api/bob/tasks")
ROUNDS = 5


def _app(settings: Settings, *, observe: bool, **changes: Any) -> FastAPI:
    app = create_app(settings.model_copy(update=changes))
    if not observe:
        app.user_middleware = [m for m in app.user_middleware if m.cls != Observe]  # type: ignore[comparison-overlap]
    return app


async def _time(client: httpx.AsyncClient, path: str, headers: dict[str, str], n: int) -> float:
    """Microseconds per request over `n` requests."""
    started = time.perf_counter()
    for _ in range(n):
        await client.get(path, headers=headers)
    return (time.perf_counter() - started) / n * 1e6


async def _isolated(limiter: RateLimiter, observe: Observe, n: int) -> dict[str, float]:
    """The components alone, around an app that answers nothing: microseconds per call."""
    scope = {"type": "http", "method": "GET", "path": "/api/bob/tasks", "headers": []}

    async def receive() -> Message:
        return {"type": "http.request"}

    async def send(message: Message) -> None:
        return None

    async def call_observe() -> None:
        await observe(scope, receive, send)

    async def hit_memory() -> None:
        await limiter.hit(limiter.by_user, "alice")

    figures = {}
    for name, call in (("Observe", call_observe), ("one limit check, memory", hit_memory)):
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            for _ in range(n):
                await call()
            best = min(best, (time.perf_counter() - started) / n * 1e6)
        figures[name] = best
    return figures


def _json_log_to_devnull() -> logging.Handler:
    handler = logging.FileHandler(os.devnull)
    handler.setFormatter(JsonFormatter())
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.INFO)
    return handler


def _settings() -> Settings:
    database = os.path.join(tempfile.mkdtemp(), "bench.db")
    high = "10000000/minute"
    settings = Settings(
        _env_file=None,
        environment="test",
        database_url=f"sqlite:///{database}",
        jwt_secret=SECRET,
        rate_limit_user=high,
        rate_limit_ip=high,
    )
    migrate.upgrade(settings)
    return settings


async def main(settings: Settings, requests: int, redis_url: str | None) -> None:
    now = int(time.time())
    token = jwt.encode({"sub": "alice", "iat": now, "exp": now + 3600}, SECRET)
    headers = {"Authorization": f"Bearer {token}"}
    variants: list[tuple[str, dict[str, Any], bool]] = [
        ("bare (no Observe, no limits)", {"observe": False, "rate_limit_enabled": False}, False),
        ("+ Observe, access log dropped", {"observe": True, "rate_limit_enabled": False}, False),
        ("+ Observe, JSON log line written", {"observe": True, "rate_limit_enabled": False}, True),
        ("+ limits in memory", {"observe": True}, True),
    ]
    if redis_url:
        variants.append(("+ limits in Redis", {"observe": True, "redis_url": redis_url}, True))
    apps = [_app(settings, **changes) for _, changes, _ in variants]
    best = {(name, route): float("inf") for name, _, _ in variants for route in ROUTES}
    async with AsyncExitStack() as stack:
        clients = []
        for app in apps:
            await stack.enter_async_context(app.router.lifespan_context(app))
            transport = httpx.ASGITransport(app=app)
            client = httpx.AsyncClient(transport=transport, base_url="http://bench")
            clients.append(await stack.enter_async_context(client))
        # Rounds interleave the variants, so that a change in the machine's load between
        # them does not read as a cost; each cell is its best round.
        per_round = max(1, requests // ROUNDS)
        for _ in range(ROUNDS):
            for (name, _, log), client in zip(variants, clients, strict=True):
                handler = _json_log_to_devnull() if log else None
                for route in ROUTES:
                    micros = await _time(client, route, headers, per_round)
                    best[name, route] = min(best[name, route], micros)
                if handler is not None:
                    logging.getLogger().removeHandler(handler)
                    logging.getLogger().setLevel(logging.WARNING)
    print(f"{requests} requests per variant and route in {ROUNDS} interleaved rounds, best round;")
    print("microseconds per request (difference with the bare app)")
    print(f"{'variant':<36}" + "".join(f"{route:>20}" for route in ROUTES))
    bare = variants[0][0]
    for name, _, _ in variants:
        cells = [f"{best[name, r]:>9.1f} ({best[name, r] - best[bare, r]:+7.1f})" for r in ROUTES]
        print(f"{name:<36}" + "".join(f"{cell:>20}" for cell in cells))
    print("\nalone, around an app that does nothing (microseconds per call, best of 3):")
    limiter = RateLimiter(settings)
    handler = _json_log_to_devnull()
    with_log = await _isolated(limiter, Observe(_noop, Metrics(None)), requests)
    logging.getLogger().removeHandler(handler)
    logging.getLogger().setLevel(logging.WARNING)
    without_log = await _isolated(limiter, Observe(_noop, Metrics(None)), requests)
    print(f"  Observe, log line dropped        {without_log['Observe']:8.1f}")
    print(f"  Observe, JSON log line written   {with_log['Observe']:8.1f}")
    print(f"  one limit check in memory        {without_log['one limit check, memory']:8.1f}")
    if redis_url:
        shared = RateLimiter(settings.model_copy(update={"redis_url": redis_url}))
        started = time.perf_counter()
        for _ in range(requests):
            await shared.hit(shared.by_user, "alice")
        micros = (time.perf_counter() - started) / requests * 1e6
        await shared.close()
        print(f"  one limit check in Redis         {micros:8.1f}")


async def _noop(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b""})


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5_000)
    parser.add_argument("--redis", default=None, help="also time limits in this Redis")
    arguments = parser.parse_args()
    asyncio.run(main(_settings(), arguments.requests, arguments.redis))
