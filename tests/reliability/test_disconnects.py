"""Case 38: a client that disconnects mid-write leaves the task stored whole (with its
history entry) or not at all."""

import json
import socket
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from urllib.parse import urlsplit

import httpx2
import pytest

from tests.reliability.conftest import (
    STATEMENT_TIMEOUT_MS,
    Cluster,
    Server,
    assert_no_leaks,
    created_entries,
    describe,
    report,
    stored_tasks,
)

REQUESTS = 4
SETTLE_GIVE_UP_SECONDS = 5.0


def _post(server: Server, user: str, title: str, *, whole: bool) -> bytes:
    """A raw POST creating `title`; `whole=False` sends only half of its body."""
    body = json.dumps({"title": title}).encode()
    head = (
        f"POST /api/{user}/tasks HTTP/1.1\r\nHost: {urlsplit(server.url).netloc}\r\n"
        f"Authorization: {server.headers(user)['Authorization']}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head + (body if whole else body[: len(body) // 2])


def _connect(server: Server) -> socket.socket:
    address = urlsplit(server.url)
    return socket.create_connection((address.hostname, address.port), timeout=5)


def _abort(sock: socket.socket) -> None:
    """Close with a reset, as a client that crashes or is killed does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _sessions(cluster: Cluster, condition: str) -> int:
    with cluster.connect() as connection:
        row = connection.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"  # noqa: S608
            f" AND pid <> pg_backend_pid() AND {condition}"
        ).fetchone()
    return int(row[0]) if row else 0


def _wait_for(cluster: Cluster, condition: str, count: int) -> int:
    """Until `count` other sessions match `condition` (or the wait gives up); how many do."""
    give_up = time.monotonic() + SETTLE_GIVE_UP_SECONDS
    while (found := _sessions(cluster, condition)) != count and time.monotonic() < give_up:
        time.sleep(0.05)
    return found


@contextmanager
def _history_locked(cluster: Cluster) -> Iterator[None]:
    """Writes of history entries wait: a create is caught inside its transaction."""
    with cluster.connect() as connection, connection.transaction():
        connection.execute("LOCK TABLE task_history IN EXCLUSIVE MODE")
        yield


SCENARIOS = {
    # name: (the lock holds the writes, seconds it is held after the disconnect, whole body)
    "inside-the-transaction-then-committed": (True, 0.0, True),
    "inside-the-transaction-then-timed-out": (True, STATEMENT_TIMEOUT_MS / 1000 + 0.5, True),
    "right-after-sending": (False, 0.0, True),
    "halfway-through-the-body": (False, 0.0, False),
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_disconnect_mid_write_stores_whole_or_nothing(
    server: Server, healthy: Cluster, scenario: str
) -> None:
    held, hold_after, whole = SCENARIOS[scenario]
    user = f"gone-{scenario}"[:60]
    mark = server.log_mark()
    with httpx2.Client(base_url=server.url, headers=server.headers(user)) as client:
        known = client.get(f"/api/{user}/me")  # the user row exists before the race
    assert known.status_code == 200, describe(known)
    titles = [f"{scenario} {n}" for n in range(REQUESTS)]

    with _history_locked(healthy) if held else nullcontext():
        sockets = [_connect(server) for _ in titles]
        for sock, title in zip(sockets, titles, strict=True):
            sock.sendall(_post(server, user, title, whole=whole))
        waiting = _wait_for(healthy, "wait_event_type = 'Lock'", REQUESTS) if held else 0
        for sock in sockets:
            _abort(sock)
        time.sleep(hold_after)
    time.sleep(0.2)  # the server notices the resets, or finishes reading what it had
    busy = _wait_for(healthy, "state <> 'idle'", 0)

    stored = stored_tasks(healthy, user)
    entries = created_entries(healthy, user)
    figures = report(
        f"disconnect {scenario}: {waiting} writes caught waiting; {len(stored)} of "
        f"{REQUESTS} tasks stored, {len(entries)} created entries"
    )
    assert busy == 0, f"sessions still busy: {figures}"
    assert set(stored.values()) <= set(titles), figures
    assert entries == {task_id: (title, 1) for task_id, title in stored.items()}, figures
    if held:
        assert waiting == REQUESTS, figures
    if not whole:
        assert not stored, figures
    assert_no_leaks(server, mark, [])
