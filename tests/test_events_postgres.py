"""Event streams across workers (PostgreSQL): a write on one worker reaches the streams on
another through LISTEN/NOTIFY, also after the listening connection was killed."""

import time
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from sqlalchemy import Engine, text
from sqlmodel import Session

from backend.config import Settings
from backend.main import create_app
from tests.live import Stream, serving
from tests.test_events import STREAM_SETTINGS, _create, _headers


@pytest.fixture(scope="module")
def apps(settings: Settings, engine: Engine) -> Iterator[list[tuple[FastAPI, str]]]:
    """Two apps on the same database, as two workers are, with their base URLs."""
    tuned = settings.model_copy(update=STREAM_SETTINGS)
    first, second = create_app(tuned), create_app(tuned)
    with serving(first) as first_url, serving(second) as second_url:
        yield [(first, first_url), (second, second_url)]


@pytest.fixture
def workers(apps: list[tuple[FastAPI, str]], db: Session) -> tuple[str, str]:
    for app, _ in apps:
        app.state.known_users.clear()  # the tables are emptied between tests
    return apps[0][1], apps[1][1]


def test_a_write_on_one_worker_reaches_a_stream_on_another(
    workers: tuple[str, str], db: Session
) -> None:
    streaming, writing = workers
    stream = Stream(f"{streaming}/api/alice/events", _headers())
    try:
        started = time.monotonic()
        task = _create(writing, "alice", "Written elsewhere")
        events = stream.wait_for(1)
        delay = time.monotonic() - started
    finally:
        stream.close()

    assert [event["data"]["id"] for event in events] == [task["id"]]
    assert delay < 1.0


def test_a_stream_still_delivers_after_its_workers_listener_is_killed(
    workers: tuple[str, str], engine: Engine, db: Session
) -> None:
    streaming, writing = workers
    stream = Stream(f"{streaming}/api/alice/events", _headers())
    try:
        with engine.begin() as connection:
            killed = connection.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE query = 'LISTEN todo_changes'"
                )
            ).scalar_one()
        written = [_create(writing, "alice", f"After the kill {n}") for n in range(3)]
        events = stream.wait_for(3)
        time.sleep(1.5)  # the listener is back: a later write arrives without polling
        written.append(_create(writing, "alice", "After the reconnection"))
        events = stream.wait_for(4)
    finally:
        stream.close()

    assert killed == 2
    assert [event["data"]["id"] for event in events] == [task["id"] for task in written]
