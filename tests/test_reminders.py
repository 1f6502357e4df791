"""Reminders: kept with the task's writes, moved with its due time and its recurrence,
dropped when it completes or goes; fired once by the worker (also with two workers, and
after one died half way) into the feed, the event stream and `task.reminder` webhooks."""

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2
import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, col, select

from backend.config import Settings
from backend.main import create_app
from backend.models import ScheduledReminder
from backend.unit_of_work import UnitOfWork
from backend.worker import Worker
from tests.conftest import AuthFactory, Factory, assert_invalid
from tests.live import Receiver, Stream, serving
from tests.webhook_client import deliver, make_hook, verified

DUE = "2027-01-04T09:00:00Z"


def pending(db: Session) -> list[tuple[str, datetime]]:
    """(task id, when it falls) of each reminder yet to fire, earliest first."""
    db.expire_all()
    rows = db.exec(
        select(ScheduledReminder)
        .where(col(ScheduledReminder.fired_at).is_(None))
        .order_by(col(ScheduledReminder.fire_at))
    ).all()
    return [(str(row.task_id), row.fire_at) for row in rows]


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def fire(settings: Settings, *workers: int, now: datetime | None = None) -> list[int]:
    """How many reminders each of that many workers, running at once, fired by `now`."""

    async def run() -> list[int]:
        started = [Worker(settings) for _ in workers or (1,)]
        try:
            moment = now or datetime.now(UTC) + timedelta(days=3650)
            return await asyncio.gather(*(w.fire_reminders(now=moment) for w in started))
        finally:
            for worker in started:
                await worker.close()

    return asyncio.run(run())


def reminders_in_feed(client: TestClient, auth: AuthFactory, user: str = "alice") -> list[Any]:
    """The reminder entries of a sync that starts over, every page of it."""
    page: dict[str, Any] = {"has_more": True, "changes": [], "next_since": None}
    changes: list[Any] = []
    while page["has_more"]:
        since: dict[str, str] = {} if page["next_since"] is None else {"since": page["next_since"]}
        page = client.get(f"/api/{user}/changes", params=since, headers=auth(user)).json()
        changes += page["changes"]
    return [change for change in changes if change["entity"] == "reminder"]


def test_reminders_are_kept_as_set_and_fall_before_the_due_time(
    client: TestClient, auth: AuthFactory, make_task: Factory, db: Session
) -> None:
    reminders = [{"before": "PT15M"}, {"at": "2027-01-03T20:00:00+01:00"}]

    task = make_task(due_at=DUE, reminders=reminders)

    assert task["reminders"] == [{"before": "PT15M"}, {"at": "2027-01-03T19:00:00Z"}]
    assert pending(db) == [
        (task["id"], at("2027-01-03T19:00:00Z")),
        (task["id"], at("2027-01-04T08:45:00Z")),
    ]


@pytest.mark.parametrize(
    ("reminders", "field"),
    [
        ([{"before": "PT5M"}] * 6, "reminders"),
        ([{"before": "P1M"}], "before"),
        ([{"before": "P1000D"}], "before"),
        ([{"before": "-PT5M"}], "before"),
        ([{"at": "tomorrow"}], "at"),
        ([{"before": "PT5M", "at": DUE}], "reminders"),
        ([{}], "reminders"),
    ],
)
def test_a_reminder_outside_the_rules_is_422(
    client: TestClient, auth: AuthFactory, reminders: list[Any], field: str
) -> None:
    body = {"title": "x", "due_at": DUE, "reminders": reminders}

    response = client.post("/api/alice/tasks", json=body, headers=auth())

    errors = assert_invalid(response)
    assert any(field in error["loc"] for error in errors), errors


def test_a_reminder_before_the_due_time_needs_one(client: TestClient, auth: AuthFactory) -> None:
    body = {"title": "x", "reminders": [{"before": "PT15M"}]}

    response = client.post("/api/alice/tasks", json=body, headers=auth())

    [error] = assert_invalid(response, "due_at")
    assert error["type"] == "recurrence_needs_due_at"


def test_reminders_move_with_the_due_time_and_go_with_the_task(
    client: TestClient, auth: AuthFactory, make_task: Factory, db: Session
) -> None:
    task = make_task(due_at=DUE, reminders=[{"before": "PT1H"}])
    url = f"/api/alice/tasks/{task['id']}"

    client.patch(url, json={"due_at": "2027-01-05T09:00:00Z"}, headers=auth())
    moved = pending(db)
    client.patch(f"{url}/complete", headers=auth())
    completed = pending(db)
    client.patch(f"{url}/incomplete", headers=auth())
    reopened = pending(db)
    client.delete(url, headers=auth())

    assert moved == [(task["id"], at("2027-01-05T08:00:00Z"))]
    assert completed == []
    assert reopened == moved
    assert pending(db) == []


def test_a_recurring_tasks_reminders_follow_it_to_the_next_occurrence(
    client: TestClient, auth: AuthFactory, make_task: Factory, db: Session
) -> None:
    recurrence = {"rule": "FREQ=WEEKLY", "tz": "Europe/Paris"}
    task = make_task(due_at=DUE, recurrence=recurrence, reminders=[{"before": "PT15M"}])

    client.patch(f"/api/alice/tasks/{task['id']}/complete", headers=auth())

    assert pending(db) == [(task["id"], at("2027-01-11T08:45:00Z"))]


def test_a_reminder_in_the_past_is_kept_but_never_fires(
    client: TestClient, auth: AuthFactory, make_task: Factory, db: Session, settings: Settings
) -> None:
    task = make_task(due_at="2020-01-01T09:00:00Z", reminders=[{"before": "PT15M"}])

    assert task["reminders"] == [{"before": "PT15M"}]
    assert pending(db) == []
    assert fire(settings) == [0]


def test_a_due_reminder_fires_once_into_the_feed_and_task_reminder_webhooks(
    api: TestClient, auth: AuthFactory, hook_settings: Settings, receiver: Receiver
) -> None:
    hook = make_hook(api, auth, receiver.url, events=["task.reminder"])
    task = api.post(
        "/api/alice/tasks",
        json={"title": "Call mum", "due_at": DUE, "reminders": [{"before": "PT10M"}]},
        headers=auth(),
    ).json()

    fired = fire(hook_settings, now=at("2027-01-04T08:50:00Z"))
    again = fire(hook_settings, now=at("2027-01-04T08:55:00Z"))
    deliver(hook_settings, later=(at(DUE) - datetime.now(UTC)).total_seconds())

    assert (fired, again) == ([1], [0])
    [change] = reminders_in_feed(api, auth)
    reminder = change["data"]
    assert (change["op"], reminder["task_id"], reminder["title"]) == (
        "upsert",
        task["id"],
        "Call mum",
    )
    assert (reminder["due_at"], reminder["fire_at"]) == (DUE, "2027-01-04T08:50:00Z")
    [request] = receiver.requests
    body = verified(hook, request)
    assert body["type"] == "task.reminder"
    assert body["data"] == reminder


def test_two_workers_fire_each_reminder_once(
    client: TestClient, auth: AuthFactory, make_task: Factory, settings: Settings
) -> None:
    for n in range(40):
        make_task(title=f"Task {n}", due_at=DUE, reminders=[{"before": "PT5M"}, {"before": "PT1H"}])

    counts = fire(settings, 1, 2)

    assert sum(counts) == 80
    feed = reminders_in_feed(client, auth)
    assert len({change["id"] for change in feed}) == len(feed) == 80


def test_a_worker_that_dies_half_way_leaves_its_reminders_to_the_next(
    client: TestClient,
    auth: AuthFactory,
    make_task: Factory,
    settings: Settings,
    db: Session,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    make_task(due_at=DUE, reminders=[{"before": "PT5M"}])

    def dies(self: UnitOfWork, connection: Any, *, taken: int = 0) -> int:
        raise ConnectionResetError("the worker's connection dropped")

    with monkeypatch.context() as patched:
        patched.setattr(UnitOfWork, "write", dies)
        with pytest.raises(ConnectionResetError):
            fire(settings)
    left = pending(db)
    restarted = fire(settings)

    assert len(left) == 1
    assert restarted == [1]
    assert len(reminders_in_feed(client, auth)) == 1
    assert fire(settings) == [0]


def test_another_users_reminders_never_reach_the_caller(
    client: TestClient, auth: AuthFactory, make_task: Factory, settings: Settings
) -> None:
    make_task("bob", due_at=DUE, reminders=[{"before": "PT5M"}])

    fire(settings)

    assert reminders_in_feed(client, auth) == []
    assert len(reminders_in_feed(client, auth, "bob")) == 1


def test_a_deleted_tasks_fired_reminder_leaves_the_feed_as_a_deletion(
    client: TestClient, auth: AuthFactory, make_task: Factory, settings: Settings
) -> None:
    task = make_task(due_at=DUE, reminders=[{"before": "PT5M"}])
    since = client.get("/api/alice/changes", headers=auth()).json()["next_since"]
    fire(settings)

    client.delete(f"/api/alice/tasks/{task['id']}", headers=auth())

    changes = client.get("/api/alice/changes", params={"since": since}, headers=auth()).json()
    assert sorted((c["entity"], c["op"]) for c in changes["changes"]) == [
        ("reminder", "delete"),
        ("task", "delete"),
    ]
    assert reminders_in_feed(client, auth) == []  # a sync that starts over needs neither


def test_the_event_stream_tells_a_reminder_as_it_fires(
    settings: Settings, auth: AuthFactory, db: Session
) -> None:
    app = create_app(
        settings.model_copy(
            update={"run_worker": True, "worker_poll_seconds": 0.1, "events_max_stream_seconds": 30}
        )
    )
    with serving(app) as base:
        stream = Stream(f"{base}/api/alice/events", auth())
        try:
            soon = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
            body = {"title": "Stand-up", "reminders": [{"at": soon}]}
            task = httpx2.post(f"{base}/api/alice/tasks", json=body, headers=auth()).json()
            deadline = datetime.now(UTC) + timedelta(seconds=15)
            while not _reminders(stream) and datetime.now(UTC) < deadline:
                stream.ended.wait(0.1)
        finally:
            stream.close()

    [event] = _reminders(stream)
    assert (event["data"]["task_id"], event["data"]["title"]) == (task["id"], "Stand-up")
    assert event["id"]  # a feed token: a stream resumed after it does not tell it again


def _reminders(stream: Stream) -> list[dict[str, Any]]:
    return [event for event in stream.events if event.get("event") == "reminder"]
