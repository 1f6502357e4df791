"""A Redis that accepts connections and never answers: no request spends more than
`REDIS_TIMEOUT_SECONDS` on it in all, Redis is tried again off the request path, and the
limiter counts in Redis again once it answers. And the memory storage it falls back to."""

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

import pytest
from limits.aio.storage import MemoryStorage

from backend import ratelimit
from backend.config import Settings
from backend.ratelimit import RateLimiter, SweptMemoryStorage

TIMEOUT = 0.25
RETRY_SECONDS = 0.1
SLACK_SECONDS = 0.1
"""What a hit may take beyond the timeout: scheduling on a busy machine, never a retry."""


class StandIn:
    """A TCP server on 127.0.0.1: while `hung`, it accepts and never answers; otherwise it
    relays each connection to the real Redis at `upstream_port`."""

    def __init__(self, upstream_port: int | None = None) -> None:
        self.hung = True
        self.accepted = 0
        self.upstream_port = upstream_port
        self._held: list[asyncio.StreamWriter] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self._held.append(writer)
        if self.hung or self.upstream_port is None:
            return  # held open, never read, never answered
        upstream_reader, upstream_writer = await asyncio.open_connection(
            "127.0.0.1", self.upstream_port
        )
        self._held.append(upstream_writer)
        await asyncio.gather(_relay(reader, upstream_writer), _relay(upstream_reader, writer))

    def close(self) -> None:
        for writer in self._held:
            writer.close()


async def _relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


@contextlib.asynccontextmanager
async def serving(stand_in: StandIn) -> AsyncIterator[int]:
    server = await asyncio.start_server(stand_in.handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        stand_in.close()
        server.close()


def _limiter(settings: Settings, port: int) -> RateLimiter:
    return RateLimiter(
        settings.model_copy(
            update={
                "redis_url": f"redis://127.0.0.1:{port}/0",
                "redis_timeout_seconds": TIMEOUT,
                "rate_limit_key_prefix": f"outage-{time.time_ns()}",
            }
        )
    )


async def _timed_hits(limiter: RateLimiter, count: int, pause: float) -> list[float]:
    durations = []
    for _ in range(count):
        started = time.perf_counter()
        verdict = await limiter.hit(limiter.by_user, "alice")
        durations.append(time.perf_counter() - started)
        assert verdict.allowed
        await asyncio.sleep(pause)
    return durations


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ratelimit, "REDIS_RETRY_SECONDS", RETRY_SECONDS)


def test_hung_redis_costs_a_request_at_most_the_timeout(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> tuple[list[float], int]:
        stand_in = StandIn()
        async with serving(stand_in) as port:
            limiter = _limiter(settings, port)
            try:
                # 30 hits over ~1.5 s: the failover, then ~15 tries at reconnecting.
                durations = await _timed_hits(limiter, 30, pause=0.05)
            finally:
                await limiter.close()
        return durations, stand_in.accepted

    with caplog.at_level(logging.WARNING, logger="todo_api"):
        durations, accepted = asyncio.run(scenario())

    figures = f"hits took {[round(d, 3) for d in durations]} s; {accepted} connections"
    assert max(durations) <= TIMEOUT + SLACK_SECONDS, figures
    assert durations[0] >= TIMEOUT * 0.9, figures  # the first one did wait on Redis
    assert max(durations[1:]) < TIMEOUT / 2, figures  # the rest never did
    assert accepted >= 3, figures  # Redis was tried again, off the request path
    retries = [r for r in caplog.records if "coredis" in r.name and "retry" in r.getMessage()]
    assert not retries, [r.getMessage() for r in retries]
    warnings = [r.getMessage() for r in caplog.records if r.name == "todo_api"]
    assert len(warnings) == 1, warnings  # once per failover, not per try


def test_counts_in_redis_again_once_it_answers(
    settings: Settings, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> tuple[bool, bool]:
        stand_in = StandIn(upstream_port=6379)
        async with serving(stand_in) as port:
            limiter = _limiter(settings, port)
            assert limiter.shared is not None
            try:
                await _timed_hits(limiter, 1, pause=0)
                counted_while_hung = await _counted_in_redis(limiter)
                stand_in.hung = False
                for _ in range(50):
                    await _timed_hits(limiter, 1, pause=RETRY_SECONDS / 2)
                    if await _counted_in_redis(limiter):
                        return counted_while_hung, True
                return counted_while_hung, False
            finally:
                await limiter.close()

    with caplog.at_level(logging.WARNING, logger="todo_api"):
        counted_while_hung, counted_after = asyncio.run(scenario())

    assert not counted_while_hung
    assert counted_after
    messages = [r.getMessage() for r in caplog.records if r.name == "todo_api"]
    assert any("answers again" in message for message in messages), messages


async def _counted_in_redis(limiter: RateLimiter) -> bool:
    assert limiter.shared is not None
    if not await limiter.shared.check():
        return False
    key = limiter.by_user.item.key_for(limiter.by_user.name, "alice")
    return await limiter.shared.get(key) > 0


def test_memory_counters_are_swept_at_most_once_a_second(monkeypatch: pytest.MonkeyPatch) -> None:
    """`SweptMemoryStorage` overrides limits' private `MemoryStorage.__schedule_expiry`
    (limits is pinned in pyproject.toml): this fails if limits renames it or stops
    scheduling a sweep on each hit."""
    sweeps: list[float] = []
    original = MemoryStorage._MemoryStorage__schedule_expiry  # type: ignore[attr-defined]

    async def counted(storage: MemoryStorage) -> None:
        sweeps.append(time.monotonic())
        await original(storage)

    monkeypatch.setattr(MemoryStorage, "_MemoryStorage__schedule_expiry", counted)

    async def hits() -> int:
        storage = SweptMemoryStorage()
        for _ in range(50):
            count = await storage.incr("counter", 60)
        await asyncio.sleep(0)  # lets the one sweep run
        return count

    assert asyncio.run(hits()) == 50
    assert len(sweeps) == 1
