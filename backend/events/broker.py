"""Wake-ups of a user's open event streams when the user's change feed grows.

Streams read what changed from the feed itself; the broker only tells them when to look.
On PostgreSQL, one `LISTEN todo_changes` connection per worker hears every write's
`NOTIFY` (a trigger on `changes` sends the user's id at the write's commit), so a write on
any worker wakes the streams on every worker. While that connection is down, streams poll
the feed every second. On SQLite, which has one process, a commit wakes the streams at
once (`_wake_after_commit`).
"""

import asyncio
import contextlib
import logging
import signal
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator
from types import FrameType

import psycopg
from sqlalchemy import event
from sqlalchemy.orm import Session

from backend.db import ScopedSession

logger = logging.getLogger("todo_api")

CHANNEL = "todo_changes"
BROKER = "events.broker"
"""Key in `Session.info`: the app's `Broker`, given to each of its sessions."""
CHANGED = "events.changed"
"""Key in `Session.info`: the user whose feed this transaction wrote (`UnitOfWork`)."""
RECONNECT_SECONDS = 1.0


class Broker:
    """The open streams of this process, by user, and whether wake-ups arrive."""

    def __init__(self) -> None:
        self._streams: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._everyone: set[asyncio.Event] = set()
        self.listening = True
        """False while wake-ups may be lost (the listener is down): streams then poll."""
        self.closing = False
        """True once the server stops: every stream ends at once."""

    @contextlib.contextmanager
    def subscribe(self, user_id: str) -> Iterator[asyncio.Event]:
        """An event set whenever `user_id`'s feed may have grown, for one stream."""
        wake = asyncio.Event()
        self._streams[user_id].add(wake)
        try:
            yield wake
        finally:
            self._streams[user_id].discard(wake)
            if not self._streams[user_id]:
                del self._streams[user_id]

    @contextlib.contextmanager
    def subscribe_all(self) -> Iterator[asyncio.Event]:
        """An event set whenever any user's feed may have grown (the worker's outbox)."""
        wake = asyncio.Event()
        self._everyone.add(wake)
        try:
            yield wake
        finally:
            self._everyone.discard(wake)

    def streams_of(self, user_id: str) -> int:
        return len(self._streams.get(user_id, ()))

    @property
    def streams(self) -> int:
        return sum(len(wakes) for wakes in self._streams.values())

    def wake(self, user_id: str) -> None:
        for wake in (*self._streams.get(user_id, ()), *self._everyone):
            wake.set()

    def wake_everyone(self) -> None:
        for wake in (*(w for wakes in self._streams.values() for w in wakes), *self._everyone):
            wake.set()

    def close(self) -> None:
        """End every stream, now and from now on."""
        self.closing = True
        self.wake_everyone()


def end_streams_on_exit(broker: Broker) -> Callable[[], None]:
    """In a server process (`todo-api serve`), end every open stream at SIGTERM or SIGINT,
    then let the server's own handler stop it: a server waits for open connections to
    close, and a stream keeps one open for as long as its client stays. Returns what puts
    the handlers back. Elsewhere (a test client's thread) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    loop = asyncio.get_running_loop()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def handle(sig: int, frame: FrameType | None) -> None:
        loop.call_soon_threadsafe(broker.close)
        handler = previous[signal.Signals(sig)]
        if callable(handler):
            handler(sig, frame)
        else:  # no server's handler: what the signal would have done
            signal.signal(sig, handler)
            signal.raise_signal(sig)

    for sig in previous:
        signal.signal(sig, handle)

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore


@event.listens_for(ScopedSession, "after_commit")
def _wake_after_commit(session: Session) -> None:
    """Wake this process's streams of a user once a transaction that wrote the user's
    feed commits (SQLite: the app's sessions carry its broker in `Session.info`)."""
    user_id = session.info.pop(CHANGED, None)
    broker: Broker | None = session.info.get(BROKER)
    if user_id is not None and broker is not None:
        broker.wake(user_id)


async def listen(broker: Broker, conninfo: str) -> None:
    """PostgreSQL: hear every `NOTIFY` of the feed and wake the user's streams, until
    cancelled; reconnect when the connection drops, with the streams polling meanwhile."""
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
                await conn.execute(f"LISTEN {CHANNEL}")
                broker.listening = True
                broker.wake_everyone()  # what was written while nobody listened
                async for notify in conn.notifies():
                    broker.wake(notify.payload)
        except psycopg.Error as exc:
            logger.warning("event listener lost its connection: %s", type(exc).__name__)
        broker.listening = False
        await asyncio.sleep(RECONNECT_SECONDS)
