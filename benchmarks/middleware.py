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
from typing import Any

import httpx
import jwt
from fastapi import FastAPI

from backend import migrate
from backend.config import Settings
from backend.main import create_app
from backend.observability import JsonFormatter, Observe

SECRET = "benchmark-secret-that-is-long-enough-for-hs256"
ROUTES = ("/healthz", "/api/bob/tasks")


def _app(settings: Settings, *, observe: bool, **changes: Any) -> FastAPI:
    app = create_app(settings.model_copy(update=changes))
    if not observe:
        app.user_middleware = [m for m in app.user_middleware if m.cls != Observe]  # type: ignore[comparison-overlap]
    return app


async def _time(app: FastAPI, path: str, headers: dict[str, str], requests: int) -> float:
    """Best of three runs, in microseconds per request."""
    best = float("inf")
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            for _ in range(50):
                await client.get(path, headers=headers)
            for _ in range(3):
                started = time.perf_counter()
                for _ in range(requests):
                    await client.get(path, headers=headers)
                best = min(best, (time.perf_counter() - started) / requests * 1e6)
    return best


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
    print(f"{requests} requests per run, best of 3; microseconds per request")
    print(f"{'variant':<36}" + "".join(f"{route:>18}" for route in ROUTES))
    bare: dict[str, float] = {}
    for name, changes, log in variants:
        handler = _json_log_to_devnull() if log else None
        cells = []
        for route in ROUTES:
            app = _app(settings, **changes)
            micros = await _time(app, route, headers, requests)
            bare.setdefault(route, micros)
            cells.append(f"{micros:>9.1f} ({micros - bare[route]:+6.1f})")
        if handler is not None:
            logging.getLogger().removeHandler(handler)
            logging.getLogger().setLevel(logging.WARNING)
        print(f"{name:<36}" + "".join(f"{cell:>18}" for cell in cells))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5_000)
    parser.add_argument("--redis", default=None, help="also time limits in this Redis")
    arguments = parser.parse_args()
    asyncio.run(main(_settings(), arguments.requests, arguments.redis))
