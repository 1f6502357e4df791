"""Rate limits with `limits`: per client address before authentication, per token subject
after it; counters in process memory, or in Redis shared by every worker and host."""

import asyncio
import logging
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.errors import StorageError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.asgi import route_path
from backend.config import Settings
from backend.db import wait_or_abandon
from backend.errors import RateLimited
from backend.health import HEALTH_PATHS

if TYPE_CHECKING:
    import coredis

logger = logging.getLogger("todo_api")

UNLIMITED_PATHS = HEALTH_PATHS | {"/metrics"}
REDIS_RETRY_SECONDS = 5.0
"""After a Redis failure, how often Redis is tried again (off the request path)."""
SWEEP_SECONDS = 1.0
MAX_REMEMBERED_RESETS = 10_000


@dataclass(frozen=True, slots=True)
class Policy:
    """One budget: a name for the headers and a `limits` rate such as `600/minute`."""

    name: str
    item: RateLimitItem
    header: str

    @classmethod
    def parse(cls, name: str, rate: str) -> "Policy":
        item = parse(rate)
        return cls(name, item, f'"{name}";q={item.amount};w={item.get_expiry()}')


@dataclass(frozen=True, slots=True)
class Verdict:
    policy: Policy
    allowed: bool
    remaining: int
    reset_seconds: int

    def header(self) -> str:
        return f'"{self.policy.name}";r={self.remaining};t={self.reset_seconds}'


class SweptMemoryStorage(MemoryStorage):
    """limits' memory storage, sweeping expired counters at most once a second.

    Upstream starts a sweep of every counter after every hit: O(counters) per request, a
    millisecond each with 10,000 addresses in a window. An expired counter is still reset
    when it is next read, so only the memory of idle counters waits for the sweep. The
    method overridden is private: limits is pinned below 5.9 (pyproject.toml), and
    `tests/test_rate_limit_outages.py` fails if it is renamed or no longer called.
    """

    _next_sweep = 0.0

    # Overrides the private, name-mangled `MemoryStorage.__schedule_expiry`.
    async def _MemoryStorage__schedule_expiry(self) -> None:  # noqa: N802
        now = time.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + SWEEP_SECONDS
            await super()._MemoryStorage__schedule_expiry()  # type: ignore[misc]


class RateLimiter:
    """limits' fixed-window strategy, read through its storage so that one call (one Redis
    round trip) yields the verdict and the remaining count: `incr` is what the strategy's
    `hit` does, and its count is kept instead of being reduced to a boolean. The window's
    end is remembered per counter, so Redis is asked for it once per window.
    """

    def __init__(self, settings: Settings) -> None:
        self.by_address = Policy.parse("ip", settings.rate_limit_ip)
        self.by_user = Policy.parse("user", settings.rate_limit_user)
        self.memory: Storage = SweptMemoryStorage()
        self.shared: Storage | None = None
        self._redis_pool: coredis.ConnectionPool | None = None
        if settings.redis_url is not None:
            from coredis import ConnectionPool  # 13 MB: loaded only where Redis is set up

            timeout = settings.redis_timeout_seconds
            from coredis.retry import NoRetryPolicy

            self._redis_pool = ConnectionPool.from_url(
                settings.redis_url, connect_timeout=timeout, stream_timeout=timeout
            )
            self.shared = RedisStorage(
                f"async+{settings.redis_url}",
                key_prefix=settings.rate_limit_key_prefix,
                wrap_exceptions=True,
                connection_pool=self._redis_pool,  # type: ignore[arg-type]
                retry_policy=NoRetryPolicy(),  # type: ignore[arg-type]  # one try: the bound is ours
            )
        self._redis_timeout = settings.redis_timeout_seconds
        self._reconnecting: asyncio.Task[None] | None = None
        self._resets: dict[str, float] = {}

    async def hit(self, policy: Policy, key: str) -> Verdict:
        """Count one request of `key` (an address, a subject) against `policy`."""
        counter = policy.item.key_for(policy.name, key)
        expiry = policy.item.get_expiry()
        if self.shared is None or self._reconnecting is not None:
            count, reset_at = await self._count(self.memory, counter, expiry)
        else:
            try:
                async with asyncio.timeout(self._redis_timeout):
                    count, reset_at = await self._count(self.shared, counter, expiry)
            except (StorageError, OSError, TimeoutError) as exc:
                self._fail_over(exc)
                count, reset_at = await self._count(self.memory, counter, expiry)
        reset_seconds = max(0, math.ceil(reset_at - time.time()))
        amount = policy.item.amount
        return Verdict(policy, count <= amount, max(0, amount - count), reset_seconds)

    async def _count(self, storage: Storage, counter: str, expiry: int) -> tuple[int, float]:
        count = await storage.incr(counter, expiry)
        now = time.time()
        if count == 1:
            reset_at = now + expiry  # this request opened the window
        else:
            reset_at = self._resets.get(counter, 0.0)
            if reset_at <= now:  # another worker opened it, or it is a new one
                reset_at = await storage.get_expiry(counter)
        self._remember(counter, reset_at, now)
        return count, reset_at

    def _remember(self, counter: str, reset_at: float, now: float) -> None:
        if len(self._resets) >= MAX_REMEMBERED_RESETS and counter not in self._resets:
            self._resets = {key: at for key, at in self._resets.items() if at > now}
            if len(self._resets) >= MAX_REMEMBERED_RESETS:
                self._resets.clear()
        self._resets[counter] = reset_at

    async def close(self) -> None:
        """Stop reconnecting and close the Redis connections, in the event loop that
        opened them."""
        if self._reconnecting is not None:
            self._reconnecting.cancel()
            await asyncio.wait({self._reconnecting})
        if self._redis_pool is not None:
            self._redis_pool.disconnect()
            await asyncio.sleep(0)  # lets the transports finish closing

    def _fail_over(self, exc: Exception) -> None:
        """Count in process memory from now on, until a task of its own finds Redis
        answering again: no request waits on a reconnection. Checks in flight when Redis
        went away fail too; one task reconnects for all of them."""
        if self._reconnecting is not None:
            return
        logger.warning(
            "rate-limit storage unavailable (%s): counting in this process, trying Redis "
            "again every %ss",
            type(exc).__name__,
            REDIS_RETRY_SECONDS,
        )
        self._reconnecting = asyncio.create_task(self._reconnect())

    async def _reconnect(self) -> None:
        assert self.shared is not None
        while True:
            await asyncio.sleep(REDIS_RETRY_SECONDS)
            ping = asyncio.create_task(self.shared.check())
            if await wait_or_abandon(ping, self._redis_timeout) and ping.result():
                break
        logger.warning("rate-limit storage answers again: counting in Redis")
        self._reconnecting = None


def verdicts_of(scope: Scope) -> list[Verdict]:
    """This request's verdicts (`request.state.rate_limits`), which `LimitRate` writes as
    headers: the address's, and the subject's that the owner guard adds."""
    verdicts: list[Verdict] = scope.setdefault("state", {}).setdefault("rate_limits", [])
    return verdicts


def rate_limit_headers(verdicts: list[Verdict]) -> list[tuple[bytes, bytes]]:
    """`RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers-10)."""
    return [
        (b"ratelimit-policy", ", ".join(v.policy.header for v in verdicts).encode()),
        (b"ratelimit", ", ".join(v.header() for v in verdicts).encode()),
    ]


class LimitRate:
    """Count each request against its client address before anything else runs (429 past
    the budget), and put the headers of every budget the request used on its response:
    the address's, and the subject's that the owner guard adds after authentication.
    """

    def __init__(self, app: ASGIApp, limiter: RateLimiter) -> None:
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or route_path(scope) in UNLIMITED_PATHS:
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        verdict = await self.limiter.hit(self.limiter.by_address, client[0] if client else "")
        verdicts = verdicts_of(scope)
        verdicts.append(verdict)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *rate_limit_headers(verdicts)]
            await send(message)

        if verdict.allowed:
            await self.app(scope, receive, send_with_headers)
            return
        await RateLimited(verdict.reset_seconds).response()(scope, receive, send_with_headers)
