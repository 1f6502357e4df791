"""Tasks: create, read, validation, ownership and persistence."""

from datetime import datetime
from typing import Any
from uuid import UUID

import httpx2
import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from backend.conditions import etag_of
from backend.config import Settings
from backend.main import create_app
from backend.models import Category, Task, TaskHistory, TaskPublic
from backend.tasks import service as tasks_service
from tests.conftest import AuthFactory, Factory, assert_problem

MISSING_ID = "00000000-0000-7000-8000-0000000000aa"
TASK_FIELDS = {
    "id", "title", "description", "completed", "completed_at", "priority", "due_at",
    "category_id", "created_at", "updated_at", "version",
}  # fmt: skip


def assert_invalid(response: httpx2.Response, field: str | None = None) -> list[dict[str, Any]]:
    """A 422 problem whose `errors` entries carry loc, msg and type (one naming `field`)."""
    errors: list[dict[str, Any]] = assert_problem(response, 422, "validation_error")["errors"]
    assert errors
    for error in errors:
        assert {"loc", "msg", "type"} <= error.keys()
    if field is not None:
        assert any(error["loc"][-1] == field for error in errors), errors
    return errors


def test_create_task_returns_201_with_location(
    client: TestClient, auth: AuthFactory, db: Session
) -> None:
    response = client.post(
        "/api/alice/tasks",
        json={"title": "  Buy milk  ", "priority": "high", "due_at": "2030-01-01T09:00:00+02:00"},
        headers=auth("alice"),
    )

    assert response.status_code == 201
    task = response.json()
    assert response.headers["location"] == f"/api/alice/tasks/{task['id']}"
    assert task["title"] == "Buy milk"
    assert task["priority"] == "high"
    assert task["due_at"] == "2030-01-01T07:00:00Z"
    assert task["completed"] is False
    assert task["completed_at"] is None
    assert task["version"] == 1
    stored = db.exec(select(Task)).one()
    assert (stored.user_id, str(stored.id), stored.title) == ("alice", task["id"], "Buy milk")


def test_get_task_returns_the_task(
    client: TestClient, auth: AuthFactory, make_task: Factory
) -> None:
    task = make_task(title="Read")

    response = client.get(f"/api/alice/tasks/{task['id']}", headers=auth("alice"))

    assert response.status_code == 200
    assert response.json() == task


def test_create_task_applies_defaults_and_records_creation(
    client: TestClient, auth: AuthFactory, db: Session
) -> None:
    response = client.post("/api/alice/tasks", json={"title": "Read"}, headers=auth("alice"))

    assert response.status_code == 201
    task = response.json()
    assert task.keys() == TASK_FIELDS
    assert UUID(task["id"])
    assert task["description"] is None
    assert task["priority"] == "none"
    assert task["due_at"] is None
    assert task["category_id"] is None
    assert (task["completed"], task["completed_at"], task["version"]) == (False, None, 1)
    assert task["created_at"] == task["updated_at"]
    assert datetime.fromisoformat(task["created_at"]).utcoffset() is not None
    stored = db.exec(select(Task)).one()
    assert (stored.description, stored.completed, stored.version) == (None, False, 1)
    entry = db.exec(select(TaskHistory)).one()
    assert (entry.action, str(entry.task_id), entry.title) == ("created", task["id"], "Read")
    assert entry.changes == task


def test_create_task_answers_the_row_it_stored(
    client: TestClient, auth: AuthFactory, db: Session, make_category: Factory
) -> None:
    category = make_category("alice", name="Home")
    sent = {
        "title": "Pay rent",
        "description": "Before Friday",
        "priority": "high",
        "due_at": "2026-12-10T09:30:00+01:00",
        "category_id": category["id"],
    }

    response = client.post("/api/alice/tasks", json=sent, headers=auth("alice"))

    assert response.status_code == 201, response.text
    stored = TaskPublic.model_validate(db.exec(select(Task)).one()).model_dump(mode="json")
    assert response.json() == stored
    assert stored["due_at"] == "2026-12-10T08:30:00Z"
    assert response.headers["ETag"] == etag_of(1)
    fetched = client.get(response.headers["Location"], headers=auth("alice"))
    assert (fetched.json(), fetched.headers["ETag"]) == (stored, etag_of(1))


def test_create_task_stores_the_token_subject_as_owner(
    client: TestClient, auth: AuthFactory, db: Session
) -> None:
    response = client.post(
        "/api/u_8f3K2pQ/tasks", json={"title": "Mine"}, headers=auth("u_8f3K2pQ")
    )

    assert response.status_code == 201
    assert response.headers["location"] == f"/api/u_8f3K2pQ/tasks/{response.json()['id']}"
    stored = db.exec(select(Task)).one()
    assert stored.user_id == "u_8f3K2pQ"


@pytest.mark.parametrize(
    ("sent", "stored"),
    [("  Buy milk  ", "Buy milk"), ("Buy milk ", "Buy milk"), (" a b ", "a b")],
)
def test_create_task_trims_title(
    client: TestClient, auth: AuthFactory, db: Session, sent: str, stored: str
) -> None:
    response = client.post("/api/alice/tasks", json={"title": sent}, headers=auth("alice"))

    assert response.status_code == 201
    assert response.json()["title"] == stored
    assert db.exec(select(Task)).one().title == stored


ACCEPTED = {
    "title-1": {"title": "x"},
    "title-200": {"title": "x" * 200},
    "description-5000": {"title": "ok", "description": "d" * 5000},
    "description-multiline": {"title": "ok", "description": "line one\nline two\ttabbed\r\n"},
    "description-empty": {"title": "ok", "description": ""},
    "priority-and-due": {"title": "ok", "priority": "medium", "due_at": "2030-06-01T12:00:00Z"},
}


@pytest.mark.parametrize("fields", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_create_task_accepts_values_at_the_limits(
    client: TestClient, auth: AuthFactory, db: Session, fields: dict[str, Any]
) -> None:
    response = client.post("/api/alice/tasks", json=fields, headers=auth("alice"))

    assert response.status_code == 201, response.text
    task = response.json()
    for field, value in fields.items():
        assert task[field] == value
    stored = db.exec(select(Task)).one()
    assert (stored.title, stored.description) == (fields["title"], fields.get("description"))


def test_create_task_counts_title_length_after_trimming(
    client: TestClient, auth: AuthFactory, db: Session
) -> None:
    response = client.post(
        "/api/alice/tasks", json={"title": f"  {'x' * 200}  "}, headers=auth("alice")
    )

    assert response.status_code == 201, response.text
    assert response.json()["title"] == "x" * 200
    assert db.exec(select(Task)).one().title == "x" * 200


INVALID = {
    "title-missing": ({}, "title"),
    "title-null": ({"title": None}, "title"),
    "title-empty": ({"title": ""}, "title"),
    "title-whitespace": ({"title": "   "}, "title"),
    "title-201": ({"title": "x" * 201}, "title"),
    "title-nul": ({"title": "nul\x00byte"}, "title"),
    "title-bell": ({"title": "bell\x07"}, "title"),
    "title-newline": ({"title": "two\nlines"}, "title"),
    "title-escape": ({"title": "escape\x1b[31m"}, "title"),
    "description-5001": ({"title": "ok", "description": "d" * 5001}, "description"),
    "description-nul": ({"title": "ok", "description": "nul\x00byte"}, "description"),
    "unknown-field": ({"title": "ok", "colour": "red"}, "colour"),
    "id": ({"title": "ok", "id": MISSING_ID}, "id"),
    "user_id": ({"title": "ok", "user_id": "bob"}, "user_id"),
    "created_at": ({"title": "ok", "created_at": "2030-01-01T00:00:00Z"}, "created_at"),
    "updated_at": ({"title": "ok", "updated_at": "2030-01-01T00:00:00Z"}, "updated_at"),
    "completed_at": ({"title": "ok", "completed_at": "2030-01-01T00:00:00Z"}, "completed_at"),
    "version": ({"title": "ok", "version": 7}, "version"),
    "title-int": ({"title": 123}, "title"),
    "title-list": ({"title": ["a"]}, "title"),
    "description-int": ({"title": "ok", "description": 5}, "description"),
    "priority-unknown": ({"title": "ok", "priority": "urgent"}, "priority"),
    "priority-int": ({"title": "ok", "priority": 3}, "priority"),
    "priority-null": ({"title": "ok", "priority": None}, "priority"),
    "due_at-text": ({"title": "ok", "due_at": "tomorrow"}, "due_at"),
    "due_at-naive": ({"title": "ok", "due_at": "2030-01-01T09:00:00"}, "due_at"),
    "category_id-text": ({"title": "ok", "category_id": "not-a-uuid"}, "category_id"),
}


@pytest.mark.parametrize(("body", "field"), INVALID.values(), ids=INVALID.keys())
def test_create_task_rejects_invalid_body(
    client: TestClient, auth: AuthFactory, db: Session, body: dict[str, Any], field: str
) -> None:
    response = client.post("/api/alice/tasks", json=body, headers=auth("alice"))

    assert_invalid(response, field)
    assert db.exec(select(Task)).all() == []
    assert db.exec(select(TaskHistory)).all() == []


MALFORMED = {
    "truncated": b'{"title": ',
    "trailing-comma": b'{"title": "ok",}',
    "lone-surrogate-title": b'{"title": "\\ud800"}',
    "lone-surrogate-description": b'{"title": "ok", "description": "a\\udc00b"}',
    "lone-surrogate-key": b'{"title": "ok", "\\ud800": 1}',
    "array": b"[]",
    "string": b'"a title"',
    "null": b"null",
    "empty": b"",
}


@pytest.mark.parametrize("raw", MALFORMED.values(), ids=MALFORMED.keys())
def test_create_task_rejects_malformed_json(
    client: TestClient, auth: AuthFactory, db: Session, raw: bytes
) -> None:
    response = client.post(
        "/api/alice/tasks",
        content=raw,
        headers={**auth("alice"), "content-type": "application/json"},
    )

    assert_invalid(response)
    assert db.exec(select(Task)).all() == []


@pytest.mark.parametrize(
    "text",
    [
        "Café ☕ crème brûlée",
        "👩‍💻 ship it 🚀🇫🇷",
        "שלום עולם مرحبا",
        "\u202eevil\u202c and \u200fmark",
        "e\u0301 is not \u00e9",
        "Z\u0351\u036b\u0343a\u0308\u0324l\u036e\u0312g\u0310o\u0353",
        "漢字かなカナ한국어",
    ],
    ids=["latin", "emoji", "rtl", "bidi-controls", "combining", "zalgo", "cjk"],
)
def test_create_task_keeps_unicode_byte_identical(
    client: TestClient, auth: AuthFactory, db: Session, text: str
) -> None:
    response = client.post(
        "/api/alice/tasks", json={"title": text, "description": text}, headers=auth("alice")
    )

    assert response.status_code == 201, response.text
    task = response.json()
    assert task["title"].encode() == text.encode()
    assert task["description"].encode() == text.encode()
    fetched = client.get(f"/api/alice/tasks/{task['id']}", headers=auth("alice")).json()
    assert fetched["title"].encode() == text.encode()
    stored = db.exec(select(Task)).one()
    assert stored.title.encode() == text.encode()
    assert stored.description is not None
    assert stored.description.encode() == text.encode()


@pytest.mark.parametrize(
    "text",
    [
        "Robert'); DROP TABLE tasks;--",
        "' OR '1'='1",
        '100% of _all_ \\ "tasks"',
        "$1; SELECT pg_sleep(5) /* */",
    ],
    ids=["drop-table", "or-true", "like-wildcards", "placeholder"],
)
def test_create_task_stores_sql_metacharacters_literally(
    client: TestClient, auth: AuthFactory, make_task: Factory, db: Session, text: str
) -> None:
    make_task(title="Earlier")

    response = client.post(
        "/api/alice/tasks", json={"title": text, "description": text}, headers=auth("alice")
    )

    assert response.status_code == 201
    assert (response.json()["title"], response.json()["description"]) == (text, text)
    stored = db.exec(select(Task).where(Task.title == text)).one()
    assert stored.description == text
    assert len(db.exec(select(Task)).all()) == 2


def test_create_task_accepts_own_category(
    client: TestClient, auth: AuthFactory, make_category: Factory, db: Session
) -> None:
    category = make_category(name="Home")

    response = client.post(
        "/api/alice/tasks",
        json={"title": "Water plants", "category_id": category["id"]},
        headers=auth("alice"),
    )

    assert response.status_code == 201
    assert response.json()["category_id"] == category["id"]
    assert str(db.exec(select(Task)).one().category_id) == category["id"]


@pytest.mark.parametrize("owner", ["bob", None], ids=["other-users", "never-existed"])
def test_create_task_rejects_category_not_owned(
    client: TestClient, auth: AuthFactory, make_category: Factory, db: Session, owner: str | None
) -> None:
    category_id = make_category("bob", name="Bob's")["id"] if owner else MISSING_ID

    response = client.post(
        "/api/alice/tasks",
        json={"title": "Sneaky", "category_id": category_id},
        headers=auth("alice"),
    )

    assert_invalid(response, "category_id")
    assert db.exec(select(Task)).all() == []
    assert db.exec(select(TaskHistory)).all() == []
    assert len(db.exec(select(Category)).all()) == (1 if owner else 0)


TASK_OPERATIONS = [
    ("GET", "", None),
    ("PUT", "", {"title": "Taken over"}),
    ("PATCH", "", {"title": "Taken over", "completed": True}),
    ("DELETE", "", None),
    ("PATCH", "/complete", None),
    ("PATCH", "/incomplete", None),
]
OPERATION_IDS = ["get", "put", "patch", "delete", "complete", "incomplete"]


@pytest.mark.parametrize(("method", "suffix", "body"), TASK_OPERATIONS, ids=OPERATION_IDS)
def test_task_operation_rejects_malformed_task_id(
    client: TestClient, auth: AuthFactory, method: str, suffix: str, body: dict[str, Any] | None
) -> None:
    response = client.request(
        method, f"/api/alice/tasks/not-a-uuid{suffix}", json=body, headers=auth("alice")
    )

    assert_invalid(response, "task_id")


@pytest.mark.parametrize(("method", "suffix", "body"), TASK_OPERATIONS, ids=OPERATION_IDS)
def test_task_operation_on_another_users_task_is_not_found(
    client: TestClient,
    auth: AuthFactory,
    make_task: Factory,
    db: Session,
    method: str,
    suffix: str,
    body: dict[str, Any] | None,
) -> None:
    theirs = make_task("bob", title="Bob's secret", description="private")
    before = db.exec(select(Task)).one().model_dump()

    response = client.request(
        method, f"/api/alice/tasks/{theirs['id']}{suffix}", json=body, headers=auth("alice")
    )
    missing = client.request(
        method, f"/api/alice/tasks/{MISSING_ID}{suffix}", json=body, headers=auth("alice")
    )

    assert_problem(response, 404, "not_found")
    assert response.content == missing.content
    assert response.headers["content-type"] == missing.headers["content-type"]
    db.expire_all()
    assert db.exec(select(Task)).one().model_dump() == before
    assert [entry.action for entry in db.exec(select(TaskHistory)).all()] == ["created"]


def test_task_survives_an_app_restart(settings: Settings, auth: AuthFactory, db: Session) -> None:
    with TestClient(create_app(settings)) as first:
        created = first.post(
            "/api/alice/tasks",
            json={"title": "Persist me", "priority": "low", "due_at": "2030-01-01T00:00:00Z"},
            headers=auth("alice"),
        )
    assert created.status_code == 201

    with TestClient(create_app(settings)) as second:
        response = second.get(f"/api/alice/tasks/{created.json()['id']}", headers=auth("alice"))

    assert response.status_code == 200
    assert response.json() == created.json()
    assert db.exec(select(Task)).one().title == "Persist me"


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_category_refused_by_the_database_is_422_and_writes_nothing(
    client: TestClient,
    auth: AuthFactory,
    make_task: Factory,
    db: Session,
    monkeypatch: pytest.MonkeyPatch,
    method: str,
) -> None:
    """A category deleted between the service's check and the write: the database's own
    reference refuses the task's flush, which is a 422 too, and nothing of the write stays
    (neither the task's change nor its history entry)."""
    task = make_task("alice", title="Kept")

    async def category_deleted_since(*_args: Any, **_kwargs: Any) -> None:
        return None

    monkeypatch.setattr(tasks_service, "_check_category", category_deleted_since)
    path = "/api/alice/tasks" + ("" if method == "POST" else f"/{task['id']}")

    response = client.request(
        method, path, json={"title": "Sneaky", "category_id": MISSING_ID}, headers=auth("alice")
    )

    errors = assert_invalid(response, "category_id")
    assert [error["type"] for error in errors] == ["category_not_found"]
    db.expire_all()
    stored = db.exec(select(Task)).one()
    assert (stored.title, stored.category_id) == ("Kept", None)
    assert [entry.action for entry in db.exec(select(TaskHistory)).all()] == ["created"]
