"""`todo-api worker`: what runs outside requests. Reminders that fall due (each fired
once: `reminders.service`), webhook deliveries from the outbox, and pruning what is no
longer kept (change-feed deletions, idempotency keys, event tickets, finished
deliveries, fired reminders). Several workers may run at once, on several hosts: a delivery is
claimed with a lease, so none is sent twice at once, and one whose worker died is sent
again, with the same `webhook-id`, once its lease ends (decision 33).

It wakes at each change's commit (PostgreSQL: `NOTIFY`, as event streams do; SQLite,
inside `todo-api serve --with-worker`: the app's broker) and at least every
`WORKER_POLL_SECONDS` for reminders and retries that come due. SIGTERM finishes the deliveries in
flight, then stops.
"""

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from backend import db
from backend.changes.service import PRUNE_MARGIN_SECONDS, prune_changes
from backend.config import Settings
from backend.dispatch import sender
from backend.dispatch import service as dispatch
from backend.errors import DATABASE_ERRORS
from backend.events.broker import Broker, listen
from backend.events.service import prune_tickets
from backend.idempotency.service import prune_keys
from backend.reminders.service import fire_due, prune_reminders

logger = logging.getLogger("todo_api")

LEASE_MARGIN_SECONDS = 50
"""A claim is held this long past the attempt's own timeout: only a worker that died
loses its deliveries to another."""


PRUNE_MARGIN = timedelta(seconds=PRUNE_MARGIN_SECONDS)
REMINDERS_PER_PASS = 500
"""Reminders fired in one transaction: a pass fires every due one, this many at a time."""


@dataclass(frozen=True, slots=True)
class Pruned:
    changes: int
    keys: int
    tickets: int
    deliveries: int
    reminders: int


async def prune(connection: AsyncConnection, settings: Settings, now: datetime) -> Pruned:
    """Forget, for every user, what is no longer kept, on a connection made for
    maintenance (`db.for_maintenance`); committed."""
    retention = timedelta(days=settings.changes_retention_days)
    kept_since = now - timedelta(days=settings.webhook_delivery_retention_days)
    pruned = Pruned(
        changes=await prune_changes(connection, retention=retention, now=now),
        keys=await prune_keys(connection, now=now),
        tickets=await prune_tickets(connection, now=now),
        deliveries=await dispatch.prune_deliveries(connection, before=kept_since),
        reminders=await prune_reminders(connection, before=now - retention - PRUNE_MARGIN),
    )
    await connection.commit()
    return pruned


class Worker:
    """Claims due deliveries, sends them (at most `WORKER_CONCURRENCY` at once), records
    how each went; prunes every `WORKER_PRUNE_SECONDS`. Its engine is its own: its
    connections lift row-level security, which must never reach a request's."""

    def __init__(self, settings: Settings, *, broker: Broker | None = None) -> None:
        self.settings = settings
        self.engine: AsyncEngine = db.create_engine(settings)
        self.broker = broker or Broker()
        self._listens = broker is None and not settings.is_sqlite
        self._lease = timedelta(seconds=settings.webhook_timeout_seconds + LEASE_MARGIN_SECONDS)
        self._http = sender.client(settings.webhook_timeout_seconds)

    async def close(self) -> None:
        await self._http.aclose()
        await self.engine.dispose()

    async def run(self, stop: asyncio.Event) -> None:
        """Work until `stop` is set, then finish the deliveries in flight."""
        listener = None
        if self._listens:
            listener = asyncio.create_task(listen(self.broker, self.settings.driver_conninfo))
        in_flight: set[asyncio.Task[None]] = set()
        next_prune = next_reminders = time.monotonic()
        with self.broker.subscribe_all() as woken:
            while not stop.is_set():
                woken.clear()
                try:
                    if time.monotonic() >= next_prune:
                        await self.prune()
                        next_prune = time.monotonic() + self.settings.worker_prune_seconds
                    if time.monotonic() >= next_reminders:  # they come due by the clock
                        await self.fire_reminders()
                        next_reminders = time.monotonic() + self.settings.worker_poll_seconds
                    room = self.settings.worker_concurrency - len(in_flight)
                    for claimed in await self.claim(limit=room) if room > 0 else ():
                        in_flight.add(asyncio.create_task(self.attempt(claimed)))
                except DATABASE_ERRORS as exc:
                    logger.warning("worker: the database failed: %s", type(exc).__name__)
                except Exception:  # a bug must not stop every delivery (serve --with-worker)
                    logger.exception("worker: a pass failed")
                await _first_of(woken, stop, in_flight, self.settings.worker_poll_seconds)
                in_flight = {task for task in in_flight if not task.done()}
            if in_flight:
                await asyncio.wait(in_flight)
        if listener is not None:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener

    async def deliver_due(self, *, now: datetime | None = None) -> int:
        """Send everything due at `now`, in order, until nothing is; how many attempts
        (tests and benchmarks drive the worker with it)."""
        attempts = 0
        while claimed := await self.claim(limit=self.settings.worker_concurrency, now=now):
            await asyncio.gather(*(self.attempt(each) for each in claimed))
            attempts += len(claimed)
        return attempts

    async def fire_reminders(self, *, now: datetime | None = None) -> int:
        """Fire every reminder due at `now`; how many. Each batch commits with its feed
        entries and webhook deliveries, which this pass then sends."""
        fired = 0
        while True:
            async with self._connection() as connection:
                count, users = await fire_due(
                    connection, now=now or db.utcnow(), limit=REMINDERS_PER_PASS
                )
            for user_id in users:  # SQLite, in the app's process (PostgreSQL: NOTIFY)
                self.broker.wake(user_id)
            fired += count
            if count < REMINDERS_PER_PASS:
                return fired

    async def claim(self, *, limit: int, now: datetime | None = None) -> list[dispatch.Claimed]:
        async with self._connection() as connection:
            return await dispatch.claim(
                connection, now=now or db.utcnow(), lease=self._lease, limit=limit
            )

    async def attempt(self, claimed: dispatch.Claimed) -> None:
        """Send one claimed delivery and record how it went."""
        started = db.utcnow()
        try:
            status, error, kept = await sender.send(
                self._http,
                claimed,
                now=started,
                allowed_hosts=self.settings.webhook_allowed_hosts,
                time_limit=self.settings.webhook_timeout_seconds,
            )
        except Exception as exc:  # recorded as a failed attempt, not sent again at once
            logger.exception("worker: delivery %s failed unexpectedly", claimed.id)
            status, error, kept = None, f"The attempt failed: {type(exc).__name__}.", None
        result = sender.outcome(claimed, status, error, kept, db.utcnow())
        try:
            async with self._connection() as connection:
                written = await dispatch.record(connection, claimed, result, db.utcnow())
        except Exception as exc:  # the lease ends, and the delivery is sent again
            logger.warning("worker: cannot record a delivery: %s", type(exc).__name__)
            return
        logger.info(
            "webhook delivery %s attempt %d: %s%s",
            claimed.id,
            claimed.attempt,
            result.status,
            "" if error is None else f" ({error})",
            extra={"webhook_id": str(claimed.webhook_id), "status": status},
        )
        if written and result.disable:
            logger.warning("webhook %s disabled: %s", claimed.webhook_id, result.disable)

    async def prune(self) -> Pruned:
        async with self._connection() as connection:
            return await prune(connection, self.settings, db.utcnow())

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as connection:
            await db.for_maintenance(connection)
            yield connection


async def _first_of(
    woken: asyncio.Event, stop: asyncio.Event, in_flight: set["asyncio.Task[None]"], seconds: float
) -> None:
    """Until a wake-up, the stop, the end of a delivery in flight, or `seconds`."""
    waits = {asyncio.create_task(woken.wait()), asyncio.create_task(stop.wait())}
    await asyncio.wait(waits | in_flight, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    for wait in waits:
        wait.cancel()


def run_worker(settings: Settings) -> None:
    """`todo-api worker`: work until SIGTERM or SIGINT, then finish what is in flight."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        worker = Worker(settings)
        logger.info("worker started")
        try:
            await worker.run(stop)
        finally:
            await worker.close()
        logger.info("worker stopped")

    asyncio.run(main())
