"""Event streams on a live server: every change after the resume point, then live ones,
in order and none twice; never another user's; tickets for browsers; limits."""

import contextlib
import gc
import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import httpx2
import pytest
from fastapi import FastAPI
from sqlalchemy import Engine
from sqlmodel import Session, select

from backend.changes.service import FEED_SCOPE
from backend.config import Settings
from backend.main import create_app
from backend.models import EventTicket
from backend.pagination import CursorSigner
from tests.conftest import SECRET, free_port, make_token
from tests.live import Stream, serving

PER_USER = 10
"""Streams a user may hold open here: a hung-up stream counts until the server notices
(within `events_check_seconds`), and one test reconnects many times a second."""
STREAM_SETTINGS = {
    "events_max_stream_seconds": 30.0,
    "events_max_streams_per_user": PER_USER,
    "events_check_seconds": 0.3,
}


@pytest.fixture(scope="module")
def live(settings: Settings, engine: Engine) -> Iterator[tuple[FastAPI, str]]:
    app = create_app(settings.model_copy(update=STREAM_SETTINGS))
    with serving(app) as url:
        yield app, url


@pytest.fixture
def base(live: tuple[FastAPI, str], db: Session) -> str:
    app, url = live
    app.state.known_users.clear()
    return url


@pytest.fixture
def streams() -> Iterator[list[Stream]]:
    opened: list[Stream] = []
    yield opened
    for stream in opened:
        stream.close()


def _headers(user: str = "alice", **claims: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(user, **claims)}"}


def _create(base: str, user: str, title: str) -> dict[str, Any]:
    response = httpx2.post(
        f"{base}/api/{user}/tasks", json={"title": title}, headers=_headers(user)
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def _open(streams: list[Stream], base: str, user: str = "alice", **query: str) -> Stream:
    headers = {} if "ticket" in query else _headers(user)
    headers |= {"Last-Event-ID": query.pop("last_event_id")} if "last_event_id" in query else {}
    suffix = f"?{urlencode(query)}" if query else ""
    stream = Stream(f"{base}/api/{user}/events{suffix}", headers)
    streams.append(stream)
    return stream


def _reopen(streams: list[Stream], base: str, **query: str) -> Stream:
    """A stream opened again, as a client that hung up does: while the server has yet to
    notice the streams it left (`events_check_seconds`), the user's cap may answer 429,
    and the client tries again shortly (what `Retry-After` asks)."""
    deadline = time.monotonic() + 30  # a loaded machine notices late
    while (stream := _open(streams, base, **query)).status == 429:
        assert time.monotonic() < deadline, "the hung-up streams were never noticed"
        stream.close()
        time.sleep(0.1)
    assert stream.status == 200
    return stream


def _since(base: str, user: str = "alice") -> str:
    page = httpx2.get(f"{base}/api/{user}/changes", headers=_headers(user)).json()
    while page["has_more"]:
        page = httpx2.get(
            f"{base}/api/{user}/changes",
            params={"since": page["next_since"]},
            headers=_headers(user),
        ).json()
    token: str = page["next_since"]
    return token


def test_stream_sends_what_changed_after_since_then_live_changes_in_order(
    base: str, streams: list[Stream]
) -> None:
    since = _since(base)
    before = [_create(base, "alice", f"Before {n}") for n in range(2)]
    stream = _open(streams, base, since=since)
    stream.wait_for(2)

    after = _create(base, "alice", "Live")
    started = time.monotonic()
    events = stream.wait_for(3)
    delay = time.monotonic() - started

    assert stream.status == 200
    assert [event["data"] for event in events] == [
        {"entity": "task", "id": task["id"], "op": "upsert", "version": 1}
        for task in (*before, after)
    ]
    assert all(event["id"] for event in events)
    assert delay < 1.0
    assert stream.events[0].get("retry") == "3000" or stream.events[0]["event"] == "change"


def test_stream_resumed_from_last_event_id_loses_nothing_and_repeats_nothing(
    base: str, streams: list[Stream]
) -> None:
    first = _open(streams, base)
    written = [_create(base, "alice", f"Task {n}") for n in range(2)]
    seen = first.wait_for(2)
    first.close()
    written += [_create(base, "alice", f"Task {n}") for n in range(2, 5)]

    resumed = _open(streams, base, last_event_id=seen[-1]["id"])
    rest = resumed.wait_for(3)
    time.sleep(0.3)

    assert [e["data"]["id"] for e in seen + rest] == [task["id"] for task in written]
    assert len(resumed.changes()) == 3


def test_streams_never_show_another_users_changes(base: str, streams: list[Stream]) -> None:
    alice, bob = _open(streams, base, "alice"), _open(streams, base, "bob")

    mine = [_create(base, "alice", "Alice's"), _create(base, "alice", "Alice's too")]
    theirs = [_create(base, "bob", "Bob's")]

    assert [e["data"]["id"] for e in alice.wait_for(2)] == [t["id"] for t in mine]
    assert [e["data"]["id"] for e in bob.wait_for(1)] == [t["id"] for t in theirs]
    time.sleep(0.3)
    assert (len(alice.changes()), len(bob.changes())) == (2, 1)


def test_a_token_older_than_the_feed_keeps_gets_one_reset_and_the_end(
    base: str, streams: list[Stream]
) -> None:
    old = int(time.time()) - 31 * 24 * 3600
    token = CursorSigner(SECRET).encode("alice", FEED_SCOPE, [0, 0, old])

    stream = _open(streams, base, since=token)

    assert stream.ended.wait(5)
    assert stream.status == 200
    assert [e.get("event") for e in stream.events] == ["reset"]
    assert stream.events[0]["data"] == {"code": "sync_expired"}


@pytest.mark.parametrize(
    "since", ["not-a-token", CursorSigner(SECRET).encode("bob", FEED_SCOPE, [0, 0, 0])]
)
def test_a_bad_or_another_users_token_is_422_before_any_stream(base: str, since: str) -> None:
    response = httpx2.get(f"{base}/api/alice/events", params={"since": since}, headers=_headers())

    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["query", "since"]


def test_a_ticket_opens_one_stream_once_and_never_reaches_the_log(
    base: str, streams: list[Stream], db: Session, caplog: pytest.LogCaptureFixture
) -> None:
    created = httpx2.post(f"{base}/api/alice/events/ticket", headers=_headers())
    ticket = created.json()["ticket"]
    stored = db.exec(select(EventTicket)).all()

    with caplog.at_level(logging.INFO):
        stream = _open(streams, base, ticket=ticket)
        task = _create(base, "alice", "Seen through a ticket")
        events = stream.wait_for(1)
        again = httpx2.get(f"{base}/api/alice/events", params={"ticket": ticket})

    assert created.status_code == 201
    assert created.json().keys() == {"ticket", "expires_at"}
    assert [row.digest for row in stored] != [ticket]
    assert len(stored) == 1
    assert stream.status == 200
    assert events[0]["data"]["id"] == task["id"]
    assert again.status_code == 401
    assert again.json()["code"] == "invalid_token"
    server_log = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("todo_api"))
    assert "/events" in server_log
    assert ticket not in server_log


def test_another_users_ticket_is_401(base: str) -> None:
    ticket = httpx2.post(f"{base}/api/bob/events/ticket", headers=_headers("bob")).json()["ticket"]

    response = httpx2.get(f"{base}/api/alice/events", params={"ticket": ticket})

    assert response.status_code == 401


def test_a_user_past_the_stream_limit_is_429(base: str, streams: list[Stream]) -> None:
    for _ in range(PER_USER):
        assert _open(streams, base).status == 200

    refused = httpx2.get(f"{base}/api/alice/events", headers=_headers())
    other = _open(streams, base, "bob")

    assert refused.status_code == 429
    assert refused.json()["code"] == "rate_limited"
    assert other.status == 200


def test_open_streams_hold_no_connection_or_turn(
    live: tuple[FastAPI, str], base: str, streams: list[Stream]
) -> None:
    app, _ = live
    users = [f"user{n}" for n in range(app.state.settings.db_pool_size + 2)]
    for user in users:
        assert _open(streams, base, user).status == 200

    started = time.monotonic()
    task = _create(base, users[0], "Still served")

    assert time.monotonic() - started < 2
    assert streams[0].wait_for(1)[0]["data"]["id"] == task["id"]


def test_a_stream_ends_when_its_personal_token_is_revoked(base: str, streams: list[Stream]) -> None:
    pat = httpx2.post(
        f"{base}/api/alice/tokens", json={"name": "stream"}, headers=_headers()
    ).json()
    stream = Stream(f"{base}/api/alice/events", {"Authorization": f"Bearer {pat['token']}"})
    streams.append(stream)

    revoked = httpx2.delete(f"{base}/api/alice/tokens/{pat['id']}", headers=_headers())

    assert stream.status == 200
    assert revoked.status_code == 204
    assert stream.ended.wait(5)


def test_serve_stops_at_once_with_streams_open(tmp_path: Any) -> None:
    """SIGTERM ends the open streams, so the server's wait for open connections is short:
    a deploy never hangs on a browser tab."""
    port = free_port()
    environment = dict(os.environ, DATABASE_URL=f"sqlite:///{tmp_path}/t.db", JWT_SECRET=SECRET)
    server = subprocess.Popen(  # noqa: S603
        [sys.executable, "-c", "from backend.cli import app; app()", "serve", "--port", str(port)],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx2.HTTPError):
                if httpx2.get(f"{base}/healthz").status_code == 200:
                    break
            time.sleep(0.1)
        streams = [Stream(f"{base}/api/{user}/events", _headers(user)) for user in ("a", "b")]

        started = time.monotonic()
        server.send_signal(signal.SIGTERM)
        returncode = server.wait(timeout=10)
        stopped_in = time.monotonic() - started
    finally:
        server.kill()
        server.wait()

    ended = [stream.ended.wait(5) for stream in streams]
    for stream in streams:
        stream.close()
    assert [stream.status for stream in streams] == [200, 200]
    assert ended == [True, True]
    assert returncode in (0, -signal.SIGTERM)  # uvicorn raises the signal again once stopped
    assert stopped_in < 3


def test_random_disconnects_during_1000_writes_lose_nothing_and_repeat_nothing(
    base: str, streams: list[Stream]
) -> None:
    """A client that drops its connection at random moments and resumes each time from the
    last event it got (as `EventSource` does) ends with every change once, in order."""
    rng = random.Random(26)
    written: list[str] = []

    def write() -> None:
        with httpx2.Client(base_url=base, headers=_headers()) as client:
            for number in range(1000):
                response = client.post("/api/alice/tasks", json={"title": f"Write {number}"})
                assert response.status_code == 201, response.text
                written.append(response.json()["id"])

    writer = threading.Thread(target=write)
    received: list[dict[str, Any]] = []
    stream = _open(streams, base)
    writer.start()
    while writer.is_alive():
        time.sleep(rng.uniform(0.05, 0.2))
        if stream.changes():  # hang up, keep what arrived, resume after it
            stream.close()
            received += stream.changes()
            stream = _reopen(streams, base, last_event_id=received[-1]["id"])
    writer.join()
    received += stream.wait_for(len(written) - len(received))

    assert [event["data"]["id"] for event in received] == written
    assert len(streams) > 10  # it did reconnect, many times


def test_a_stream_hung_up_mid_event_is_released_without_the_garbage_collector(
    live: tuple[FastAPI, str], base: str, streams: list[Stream]
) -> None:
    """A client that hangs up while events flow can leave the stream's generator parked
    at a `yield` that nothing resumes; its subscription must end with the request, not
    when the garbage collector finds the generator (until then it counts against the
    caps, and the user's next streams are refused)."""
    app, _ = live
    gc.disable()
    try:
        for _ in range(5):
            stream = _open(streams, base)
            writer = threading.Thread(
                target=lambda: [_create(base, "alice", f"Flowing {n}") for n in range(30)]
            )
            writer.start()
            time.sleep(0.05)
            stream.close()
            writer.join()
        deadline = time.monotonic() + 5
        while app.state.broker.streams_of("alice") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert app.state.broker.streams_of("alice") == 0
    finally:
        gc.enable()
