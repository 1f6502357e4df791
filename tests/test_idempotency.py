"""Idempotency-Key on writes: one effect per key and user, the first response replayed."""

import asyncio
from datetime import UTC, datetime, timedelta

import httpx2
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlmodel import Session, col, select

from backend.models import Category, IdempotencyRecord, PersonalToken, Task, TaskHistory
from tests.conftest import AuthFactory, Headers, assert_problem

TASKS = "/api/alice/tasks"
BODY = {"title": "Pay rent"}
REPLAYED = "idempotent-replayed"


def keyed(auth: AuthFactory, key: str, user: str = "alice") -> Headers:
    return auth(user) | {"Idempotency-Key": key}


def records(db: Session) -> list[IdempotencyRecord]:
    db.expire_all()
    return list(db.exec(select(IdempotencyRecord).order_by(col(IdempotencyRecord.key))).all())


def tasks(db: Session) -> list[Task]:
    db.expire_all()
    return list(db.exec(select(Task).order_by(col(Task.id))).all())


def history(db: Session) -> list[str]:
    db.expire_all()
    return [entry.action for entry in db.exec(select(TaskHistory)).all()]


def assert_replay_of(replay: httpx2.Response, first: httpx2.Response) -> None:
    """`replay` is `first` again, byte for byte, marked as a replay."""
    assert replay.status_code == first.status_code
    assert replay.content == first.content
    for header in ("content-type", "location", "etag"):
        assert replay.headers.get(header) == first.headers.get(header), header
    assert replay.headers[REPLAYED] == "true"
    assert REPLAYED not in first.headers


def test_create_task_retried_replays_first_response(
    client: TestClient, auth: AuthFactory, db: Session
) -> None:
    first = client.post(TASKS, json=BODY, headers=keyed(auth, "rent-1"))
    retry = client.post(TASKS, json=BODY, headers=keyed(auth, "rent-1"))

    assert first.status_code == 201
    assert first.headers["location"] == f"{TASKS}/{first.json()['id']}"
    assert first.headers["etag"] == '"1"'
    assert_replay_of(retry, first)
    assert [task.title for task in tasks(db)] == ["Pay rent"]
    assert history(db) == ["created"]
    [record] = records(db)
    assert (record.user_id, record.key, record.status_code) == ("alice", "rent-1", 201)


async def _retry_create(
    app: FastAPI, headers: Headers, path: str = TASKS, body: dict[str, str] = BODY
) -> list[httpx2.Response]:
    """Five retries at once, then five one after the other, through the ASGI app."""
    async with app.router.lifespan_context(app):
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://test") as client:
            together = await asyncio.gather(
                *(client.post(path, json=body, headers=headers) for _ in range(5))
            )
            one_by_one = [await client.post(path, json=body, headers=headers) for _ in range(5)]
    return [*together, *one_by_one]


def test_create_task_retried_concurrently_stores_one_task(
    app: FastAPI, auth: AuthFactory, db: Session
) -> None:
    app.state.known_users.clear()  # the tables are emptied between tests

    responses = asyncio.run(_retry_create(app, keyed(auth, "rent-1")))

    assert {(response.status_code, response.content) for response in responses} == {
        (201, responses[0].content)
    }
    assert sum(REPLAYED not in response.headers for response in responses) == 1
    assert len(tasks(db)) == 1
    assert history(db) == ["created"]
    assert len(records(db)) == 1


def test_create_category_retried_concurrently_answers_the_first_answer(
    app: FastAPI, auth: AuthFactory, db: Session
) -> None:
    """The retries that lose the race fail on the name the first one took: they answer
    the first's answer, not their own 409."""
    app.state.known_users.clear()

    responses = asyncio.run(
        _retry_create(app, keyed(auth, "home-1"), "/api/alice/categories", {"name": "Home"})
    )

    assert {(response.status_code, response.content) for response in responses} == {
        (201, responses[0].content)
    }
    assert sum(REPLAYED not in response.headers for response in responses) == 1
    db.expire_all()
    assert len(db.exec(select(Category)).all()) == 1
    assert [record.status_code for record in records(db)] == [201]


def test_create_task_with_reused_key_and_other_body_is_422(
    client: TestClient, auth: AuthFactory, db: Session
) -> None:
    client.post(TASKS, json=BODY, headers=keyed(auth, "rent-1"))

    response = client.post(TASKS, json={"title": "Pay tax"}, headers=keyed(auth, "rent-1"))

    body = assert_problem(response, 422, "validation_error")
    assert body["errors"][0]["loc"] == ["header", "Idempotency-Key"]
    assert [task.title for task in tasks(db)] == ["Pay rent"]


def test_create_category_with_key_of_a_task_is_422(
    client: TestClient, auth: AuthFactory, db: Session
) -> None:
    client.post(TASKS, json={"title": "Home"}, headers=keyed(auth, "home"))

    response = client.post(
        "/api/alice/categories", json={"name": "Home"}, headers=keyed(auth, "home")
    )

    assert_problem(response, 422, "validation_error")
    assert client.get("/api/alice/categories", headers=auth("alice")).json()["items"] == []
    assert [record.status_code for record in records(db)] == [201]


def test_create_task_with_another_users_key_is_not_a_replay(
    client: TestClient, auth: AuthFactory, db: Session
) -> None:
    alices = client.post(TASKS, json=BODY, headers=keyed(auth, "rent-1"))

    bobs = client.post("/api/bob/tasks", json=BODY, headers=keyed(auth, "rent-1", "bob"))
    bobs_retry = client.post("/api/bob/tasks", json=BODY, headers=keyed(auth, "rent-1", "bob"))

    assert bobs.status_code == 201
    assert REPLAYED not in bobs.headers
    assert bobs.json()["id"] != alices.json()["id"]
    assert bobs.headers["location"].startswith("/api/bob/tasks/")
    assert_replay_of(bobs_retry, bobs)
    assert sorted(task.user_id for task in tasks(db)) == ["alice", "bob"]
    assert sorted((record.user_id, record.key) for record in records(db)) == [
        ("alice", "rent-1"),
        ("bob", "rent-1"),
    ]


def test_create_task_after_invalid_first_attempt_uses_the_key(
    client: TestClient, auth: AuthFactory, db: Session
) -> None:
    invalid = client.post(TASKS, json={"title": ""}, headers=keyed(auth, "rent-1"))
    assert records(db) == []

    response = client.post(TASKS, json=BODY, headers=keyed(auth, "rent-1"))

    assert_problem(invalid, 422, "validation_error")
    assert response.status_code == 201
    assert REPLAYED not in response.headers
    assert len(tasks(db)) == 1
    assert [record.status_code for record in records(db)] == [201]


@pytest.mark.parametrize(
    ("action", "undo"), [("complete", "incomplete"), ("incomplete", "complete")]
)
def test_completion_retried_replays_first_response_after_change(
    client: TestClient, auth: AuthFactory, db: Session, action: str, undo: str
) -> None:
    path = f"{TASKS}/{client.post(TASKS, json=BODY, headers=auth('alice')).json()['id']}"
    if action == "incomplete":
        client.patch(f"{path}/complete", headers=auth("alice"))
    first = client.patch(f"{path}/{action}", headers=keyed(auth, "act-1"))
    client.patch(f"{path}/{undo}", headers=auth("alice"))

    retry = client.patch(f"{path}/{action}", headers=keyed(auth, "act-1"))

    assert first.status_code == 200
    assert first.json()["completed"] is (action == "complete")
    assert_replay_of(retry, first)
    [task] = tasks(db)
    assert task.completed is (action != "complete")
    assert task.version == first.json()["version"] + 1


def test_create_task_with_expired_key_creates_again(
    client: TestClient, auth: AuthFactory, db: Session
) -> None:
    first = client.post(TASKS, json=BODY, headers=keyed(auth, "rent-1"))
    db.exec(update(IdempotencyRecord).values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    db.commit()

    response = client.post(TASKS, json=BODY, headers=keyed(auth, "rent-1"))

    assert response.status_code == 201
    assert REPLAYED not in response.headers
    assert response.json()["id"] != first.json()["id"]
    assert len(tasks(db)) == 2
    [record] = records(db)
    assert record.body == response.text
    assert record.expires_at > datetime.now(UTC) + timedelta(hours=23)


@pytest.mark.parametrize(
    "key", [b"", b"k" * 256, b"two words", "cl\u00e9".encode(), b"tab\there"], ids=repr
)
def test_create_task_with_invalid_key_is_422(
    client: TestClient, auth: AuthFactory, db: Session, key: bytes
) -> None:
    headers = {name.encode(): value.encode() for name, value in auth("alice").items()}

    response = client.post(TASKS, json=BODY, headers=headers | {b"Idempotency-Key": key})

    body = assert_problem(response, 422, "validation_error")
    assert ["header", "Idempotency-Key"] in [error["loc"] for error in body["errors"]]
    assert tasks(db) == []
    assert records(db) == []


def test_create_task_with_longest_key_is_201(
    client: TestClient, auth: AuthFactory, db: Session
) -> None:
    key = "~" * 255

    response = client.post(TASKS, json=BODY, headers=keyed(auth, key))

    assert response.status_code == 201
    assert [record.key for record in records(db)] == [key]


def test_create_task_without_key_stores_no_record(
    client: TestClient, auth: AuthFactory, db: Session
) -> None:
    first = client.post(TASKS, json=BODY, headers=auth("alice"))
    second = client.post(TASKS, json=BODY, headers=auth("alice"))

    assert (first.status_code, second.status_code) == (201, 201)
    assert REPLAYED not in second.headers
    assert first.json()["id"] != second.json()["id"]
    assert len(tasks(db)) == 2
    assert records(db) == []


def test_create_token_with_key_stores_no_record(
    client: TestClient, auth: AuthFactory, db: Session
) -> None:
    headers = keyed(auth, "token-1")

    first = client.post("/api/alice/tokens", json={"name": "CI"}, headers=headers)
    second = client.post("/api/alice/tokens", json={"name": "CI"}, headers=headers)

    assert (first.status_code, second.status_code) == (201, 201)
    assert REPLAYED not in second.headers
    assert first.json()["token"] != second.json()["token"]
    assert records(db) == []
    db.expire_all()
    assert len(db.exec(select(PersonalToken)).all()) == 2
