"""Tasks: create, read, categories, ownership and persistence."""

from datetime import datetime
from typing import Any
from uuid import UUID

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from backend.conditions import etag_of
from backend.config import Settings
from backend.main import create_app
from backend.models import Category, Task, TaskHistory, TaskPublic
from backend.tasks import service as tasks_service
from tests.conftest import MISSING_ID, AuthFactory, Factory, assert_invalid, assert_problem

TASK_FIELDS = {
    "id", "title", "description", "completed", "completed_at", "priority", "due_at",
    "category_id", "parent_id", "tags", "recurrence", "reminders", "created_at", "updated_at",
    "version",
}  # fmt: skip


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
