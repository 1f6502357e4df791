"""Tasks: replace, update and delete, with versions and history."""

from datetime import datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from backend.models import Task, TaskHistory
from tests.conftest import MISSING_ID, AuthFactory, Factory, assert_invalid, history, stored_task

FULL = {
    "title": "Full",
    "description": "Every field",
    "priority": "high",
    "due_at": "2030-01-01T09:00:00Z",
}
DEFAULTS = {
    "description": None,
    "priority": "none",
    "due_at": None,
    "category_id": None,
    "completed": False,
    "completed_at": None,
}


def test_replace_task_resets_absent_fields_to_defaults(
    client: TestClient, auth: AuthFactory, make_task: Factory, make_category: Factory, db: Session
) -> None:
    category = make_category(name="Home")
    task = make_task(**FULL, category_id=category["id"])
    client.patch(f"/api/alice/tasks/{task['id']}/complete", headers=auth("alice"))

    response = client.put(
        f"/api/alice/tasks/{task['id']}", json={"title": "  Bare  "}, headers=auth("alice")
    )

    assert response.status_code == 200
    replaced = response.json()
    assert replaced == {
        **task,
        **DEFAULTS,
        "title": "Bare",
        "version": 3,
        "updated_at": replaced["updated_at"],
    }
    stored = stored_task(db)
    assert {field: getattr(stored, field) for field in DEFAULTS} == DEFAULTS
    assert stored.title == "Bare"


def test_replace_task_sets_every_given_field(
    client: TestClient, auth: AuthFactory, make_task: Factory, make_category: Factory, db: Session
) -> None:
    category = make_category(name="Work")
    task = make_task(title="Sparse")

    response = client.put(
        f"/api/alice/tasks/{task['id']}",
        json={**FULL, "category_id": category["id"], "completed": True},
        headers=auth("alice"),
    )

    assert response.status_code == 200
    replaced = response.json()
    assert {field: replaced[field] for field in FULL} == FULL
    assert (replaced["category_id"], replaced["completed"]) == (category["id"], True)
    assert replaced["completed_at"] is not None
    assert replaced["version"] == 2
    stored = stored_task(db)
    assert (stored.title, stored.completed) == ("Full", True)
    assert str(stored.category_id) == category["id"]
    assert stored.completed_at == datetime.fromisoformat(replaced["completed_at"])


INVALID_REPLACEMENTS = {
    "title-missing": ({"description": "No title"}, "title"),
    "title-null": ({"title": None}, "title"),
    "title-whitespace": ({"title": "   "}, "title"),
    "version": ({"title": "ok", "version": 9}, "version"),
    "completed_at": ({"title": "ok", "completed_at": "2030-01-01T00:00:00Z"}, "completed_at"),
    "unknown-field": ({"title": "ok", "owner": "bob"}, "owner"),
    "completed-text": ({"title": "ok", "completed": "maybe"}, "completed"),
}


@pytest.mark.parametrize(
    ("body", "field"), INVALID_REPLACEMENTS.values(), ids=INVALID_REPLACEMENTS.keys()
)
def test_replace_task_rejects_invalid_body(
    client: TestClient,
    auth: AuthFactory,
    make_task: Factory,
    db: Session,
    body: dict[str, Any],
    field: str,
) -> None:
    task = make_task(**FULL)

    response = client.put(f"/api/alice/tasks/{task['id']}", json=body, headers=auth("alice"))

    assert_invalid(response, field)
    stored = stored_task(db)
    assert (stored.title, stored.description, stored.version) == ("Full", "Every field", 1)
    assert history(db) == ["created"]


def test_update_task_changes_only_given_fields(
    client: TestClient, auth: AuthFactory, make_task: Factory, db: Session
) -> None:
    task = make_task(**FULL)

    response = client.patch(
        f"/api/alice/tasks/{task['id']}", json={"priority": "low"}, headers=auth("alice")
    )

    assert response.status_code == 200
    updated = response.json()
    assert updated == {
        **task,
        "priority": "low",
        "version": 2,
        "updated_at": updated["updated_at"],
    }
    assert stored_task(db).priority == "low"
    entry = db.exec(select(TaskHistory).where(TaskHistory.action == "updated")).one()
    assert entry.changes == {"priority": {"from": "high", "to": "low"}}


@pytest.mark.parametrize("field", ["description", "due_at", "category_id"])
def test_update_task_clears_nullable_field_with_null(
    client: TestClient,
    auth: AuthFactory,
    make_task: Factory,
    make_category: Factory,
    db: Session,
    field: str,
) -> None:
    task = make_task(**FULL, category_id=make_category(name="Home")["id"])

    response = client.patch(
        f"/api/alice/tasks/{task['id']}", json={field: None}, headers=auth("alice")
    )

    assert response.status_code == 200
    assert response.json()[field] is None
    assert getattr(stored_task(db), field) is None


INVALID_UPDATES = {
    "title-null": ({"title": None}, "title"),
    "priority-null": ({"priority": None}, "priority"),
    "completed-null": ({"completed": None}, "completed"),
    "title-empty": ({"title": ""}, "title"),
    "title-whitespace": ({"title": "   "}, "title"),
    "title-201": ({"title": "x" * 201}, "title"),
    "title-tab": ({"title": "tab\there"}, "title"),
    "description-5001": ({"description": "d" * 5001}, "description"),
    "due_at-naive": ({"due_at": "2030-01-01T09:00:00"}, "due_at"),
    "priority-unknown": ({"priority": "asap"}, "priority"),
    "version": ({"version": 2}, "version"),
    "id": ({"id": MISSING_ID}, "id"),
    "user_id": ({"user_id": "bob"}, "user_id"),
    "updated_at": ({"updated_at": "2030-01-01T00:00:00Z"}, "updated_at"),
    "unknown-field": ({"done": True}, "done"),
}


@pytest.mark.parametrize(("body", "field"), INVALID_UPDATES.values(), ids=INVALID_UPDATES.keys())
def test_update_task_rejects_invalid_body(
    client: TestClient,
    auth: AuthFactory,
    make_task: Factory,
    db: Session,
    body: dict[str, Any],
    field: str,
) -> None:
    task = make_task(**FULL)

    response = client.patch(f"/api/alice/tasks/{task['id']}", json=body, headers=auth("alice"))

    assert_invalid(response, field)
    stored = stored_task(db)
    assert (stored.title, stored.priority, stored.version) == ("Full", "high", 1)
    assert history(db) == ["created"]
    assert client.get(f"/api/alice/tasks/{task['id']}", headers=auth("alice")).json() == task


@pytest.mark.parametrize(
    "body",
    [{}, {"title": "  Full "}, FULL],
    ids=["empty", "same-title-untrimmed", "same-values"],
)
def test_update_task_without_change_writes_nothing(
    client: TestClient, auth: AuthFactory, make_task: Factory, db: Session, body: dict[str, Any]
) -> None:
    task = make_task(**FULL)

    response = client.patch(f"/api/alice/tasks/{task['id']}", json=body, headers=auth("alice"))

    assert response.status_code == 200
    assert response.json() == task
    assert (stored_task(db).version, history(db)) == (1, ["created"])


def test_update_task_bumps_version_once_per_change(
    client: TestClient, auth: AuthFactory, make_task: Factory, db: Session
) -> None:
    task = make_task(title="Draft")
    path = f"/api/alice/tasks/{task['id']}"

    versions = [
        client.patch(path, json=body, headers=auth("alice")).json()["version"]
        for body in ({"title": "Second"}, {"priority": "low", "description": "both"}, {})
    ]

    assert versions == [2, 3, 3]
    assert stored_task(db).version == 3
    assert history(db) == ["created", "updated", "updated"]


def test_update_task_moves_updated_at_only(
    client: TestClient, auth: AuthFactory, make_task: Factory, db: Session
) -> None:
    task = make_task(title="Clock")

    response = client.patch(
        f"/api/alice/tasks/{task['id']}", json={"title": "Tock"}, headers=auth("alice")
    )

    assert response.status_code == 200
    updated = response.json()
    assert updated["created_at"] == task["created_at"]
    assert datetime.fromisoformat(updated["updated_at"]) > datetime.fromisoformat(
        task["updated_at"]
    )
    stored = stored_task(db)
    assert stored.updated_at == datetime.fromisoformat(updated["updated_at"])


@pytest.mark.parametrize(
    ("method", "body"),
    [("PATCH", {}), ("PUT", {"title": "Categorized"})],
    ids=["patch", "put"],
)
def test_update_task_accepts_own_category(
    client: TestClient,
    auth: AuthFactory,
    make_task: Factory,
    make_category: Factory,
    db: Session,
    method: str,
    body: dict[str, Any],
) -> None:
    task = make_task(title="Categorized")
    category = make_category(name="Home")

    response = client.request(
        method,
        f"/api/alice/tasks/{task['id']}",
        json={**body, "category_id": category["id"]},
        headers=auth("alice"),
    )

    assert response.status_code == 200
    assert (response.json()["category_id"], response.json()["version"]) == (category["id"], 2)
    assert str(stored_task(db).category_id) == category["id"]


@pytest.mark.parametrize("method", ["PATCH", "PUT"])
@pytest.mark.parametrize("owner", ["bob", None], ids=["other-users", "never-existed"])
def test_update_task_rejects_category_not_owned(
    client: TestClient,
    auth: AuthFactory,
    make_task: Factory,
    make_category: Factory,
    db: Session,
    method: str,
    owner: str | None,
) -> None:
    task = make_task(title="Mine")
    category_id = make_category("bob", name="Bob's")["id"] if owner else MISSING_ID

    response = client.request(
        method,
        f"/api/alice/tasks/{task['id']}",
        json={"title": "Mine", "category_id": category_id},
        headers=auth("alice"),
    )

    assert_invalid(response, "category_id")
    stored = stored_task(db)
    assert (stored.category_id, stored.version) == (None, 1)
    assert history(db) == ["created"]


def test_delete_task_returns_204_then_404(
    client: TestClient, auth: AuthFactory, make_task: Factory, db: Session
) -> None:
    task = make_task(title="Doomed")
    kept = make_task(title="Kept")
    path = f"/api/alice/tasks/{task['id']}"

    response = client.delete(path, headers=auth("alice"))

    assert response.status_code == 204
    assert response.content == b""
    assert client.get(path, headers=auth("alice")).status_code == 404
    assert client.delete(path, headers=auth("alice")).status_code == 404
    db.expire_all()
    assert [str(row.id) for row in db.exec(select(Task)).all()] == [kept["id"]]
    deleted = db.exec(select(TaskHistory).where(TaskHistory.action == "deleted")).one()
    assert (str(deleted.task_id), deleted.changes) == (task["id"], task)
