"""History: one immutable entry per change, served newest first, also after deletion."""

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from backend.fields import HistoryAction
from backend.models import Task, TaskHistory
from tests.conftest import AuthFactory, Factory, assert_problem


def _task_history(client: TestClient, auth: AuthFactory, task_id: str) -> list[dict[str, Any]]:
    response = client.get(f"/api/alice/tasks/{task_id}/history", headers=auth())
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def _actions(entries: list[dict[str, Any]]) -> list[str]:
    return [entry["action"] for entry in entries]


def _stored(db: Session) -> list[TaskHistory]:
    db.expire_all()
    return list(db.exec(select(TaskHistory)).all())


def test_create_task_records_a_created_entry_with_a_snapshot(
    client: TestClient, auth: AuthFactory, make_task: Factory, db: Session
) -> None:
    task = make_task(title="Buy milk", description="oat", priority="high")

    entries = _task_history(client, auth, task["id"])

    assert len(entries) == 1
    entry = entries[0]
    assert entry["action"] == "created"
    assert entry["task_id"] == task["id"]
    assert entry["title"] == "Buy milk"
    assert entry["changes"] == task
    assert entry["occurred_at"] == task["created_at"]
    assert [row.action for row in _stored(db)] == [HistoryAction.created]


def test_update_task_records_only_the_changed_fields(
    client: TestClient, auth: AuthFactory, make_task: Factory
) -> None:
    task = make_task(title="Old", description="same", priority="low")

    body = {"title": "New", "description": "same", "priority": "low", "due_at": "2030-01-01T09:00Z"}

    response = client.patch(f"/api/alice/tasks/{task['id']}", json=body, headers=auth())

    assert response.status_code == 200
    entries = _task_history(client, auth, task["id"])
    assert _actions(entries) == ["updated", "created"]
    assert entries[0]["title"] == "New"
    assert entries[0]["changes"] == {
        "title": {"from": "Old", "to": "New"},
        "due_at": {"from": None, "to": response.json()["due_at"]},
    }
    assert entries[0]["occurred_at"] == response.json()["updated_at"]


def test_replace_task_records_the_fields_put_back_to_defaults(
    client: TestClient, auth: AuthFactory, make_task: Factory
) -> None:
    task = make_task(title="Keep", priority="high", description="gone soon")

    response = client.put(f"/api/alice/tasks/{task['id']}", json={"title": "Keep"}, headers=auth())

    assert response.status_code == 200
    entries = _task_history(client, auth, task["id"])
    assert entries[0]["action"] == "updated"
    assert entries[0]["changes"] == {
        "description": {"from": "gone soon", "to": None},
        "priority": {"from": "high", "to": "none"},
    }


@pytest.mark.parametrize(
    ("reopen", "path", "body", "action"),
    [
        (False, "/complete", None, "completed"), (False, "", {"completed": True}, "completed"),
        (True, "/incomplete", None, "reopened"), (True, "", {"completed": False}, "reopened"),
    ],
)  # fmt: skip
def test_set_completion_records_a_completed_or_reopened_entry(
    client: TestClient,
    auth: AuthFactory,
    make_task: Factory,
    reopen: bool,
    path: str,
    body: Any,
    action: str,
) -> None:
    task = make_task(title="Finish")
    if reopen:
        client.patch(f"/api/alice/tasks/{task['id']}/complete", headers=auth())

    response = client.patch(f"/api/alice/tasks/{task['id']}{path}", json=body, headers=auth())

    assert response.status_code == 200
    entries = _task_history(client, auth, task["id"])
    assert _actions(entries) == [action, *(["completed"] if reopen else []), "created"]
    assert entries[0]["changes"] == {"completed": {"from": reopen, "to": not reopen}}
    assert entries[0]["occurred_at"] == response.json()["updated_at"]


@pytest.mark.parametrize("path", ["/complete", "/incomplete"])
def test_set_completion_twice_records_one_entry(
    client: TestClient, auth: AuthFactory, make_task: Factory, db: Session, path: str
) -> None:
    task = make_task(title="Idempotent")
    if path == "/incomplete":
        client.patch(f"/api/alice/tasks/{task['id']}/complete", headers=auth())
    client.patch(f"/api/alice/tasks/{task['id']}{path}", headers=auth())
    before = _task_history(client, auth, task["id"])

    response = client.patch(f"/api/alice/tasks/{task['id']}{path}", headers=auth())

    assert response.status_code == 200
    assert _task_history(client, auth, task["id"]) == before
    assert len(_stored(db)) == len(before)


@pytest.mark.parametrize(
    "body", [{}, {"title": "Same"}, {"title": "  Same  ", "priority": "none"}, {"due_at": None}]
)
def test_update_task_records_nothing_for_a_no_op(
    client: TestClient, auth: AuthFactory, make_task: Factory, db: Session, body: dict[str, Any]
) -> None:
    task = make_task(title="Same")

    response = client.patch(f"/api/alice/tasks/{task['id']}", json=body, headers=auth())

    assert response.status_code == 200
    assert response.json() == task
    assert _actions(_task_history(client, auth, task["id"])) == ["created"]
    assert len(_stored(db)) == 1


def test_delete_task_records_a_deleted_entry_with_a_snapshot(
    client: TestClient, auth: AuthFactory, make_task: Factory, db: Session
) -> None:
    task = make_task(title="Doomed")
    updated = client.patch(f"/api/alice/tasks/{task['id']}", json={"title": "Gone"}, headers=auth())

    response = client.delete(f"/api/alice/tasks/{task['id']}", headers=auth())

    assert response.status_code == 204
    entries = _task_history(client, auth, task["id"])
    assert _actions(entries) == ["deleted", "updated", "created"]
    assert entries[0]["changes"] == updated.json()
    assert entries[0]["title"] == "Gone"
    assert db.exec(select(Task)).all() == []
    assert len(_stored(db)) == 3


def test_get_history_entry_returns_the_entry(
    client: TestClient, auth: AuthFactory, make_task: Factory
) -> None:
    task = make_task(title="Look")
    entry = _task_history(client, auth, task["id"])[0]

    response = client.get(f"/api/alice/history/{entry['id']}", headers=auth())

    assert response.status_code == 200
    assert response.json() == entry


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE", "POST"])
@pytest.mark.parametrize("path", ["/history/{entry}", "/history", "/tasks/{task}/history"])
def test_change_history_is_not_allowed(
    client: TestClient, auth: AuthFactory, make_task: Factory, db: Session, method: str, path: str
) -> None:
    task = make_task(title="Fixed")
    entry = _task_history(client, auth, task["id"])[0]
    url = "/api/alice" + path.format(entry=entry["id"], task=task["id"])

    response = client.request(method, url, json={"action": "deleted"}, headers=auth())

    assert_problem(response, 405, "method_not_allowed")
    assert "GET" in response.headers["allow"]
    stored = _stored(db)
    assert [(str(row.id), row.action) for row in stored] == [(entry["id"], HistoryAction.created)]


def test_create_task_with_a_foreign_category_records_nothing(
    client: TestClient, auth: AuthFactory, make_category: Factory, db: Session
) -> None:
    theirs = make_category("bob", name="Bob's")

    response = client.post(
        "/api/alice/tasks", json={"title": "Sneaky", "category_id": theirs["id"]}, headers=auth()
    )

    assert_problem(response, 422, "validation_error")
    assert db.exec(select(Task)).all() == []
    assert _stored(db) == []


def test_update_task_with_a_foreign_category_records_nothing(
    client: TestClient,
    auth: AuthFactory,
    make_task: Factory,
    make_category: Factory,
    db: Session,
) -> None:
    task = make_task(title="Mine")
    theirs = make_category("bob", name="Bob's")

    response = client.patch(
        f"/api/alice/tasks/{task['id']}",
        json={"title": "Changed", "category_id": theirs["id"]},
        headers=auth(),
    )

    assert_problem(response, 422, "validation_error")
    assert client.get(f"/api/alice/tasks/{task['id']}", headers=auth()).json() == task
    assert [row.action for row in _stored(db)] == [HistoryAction.created]


def test_delete_category_records_an_updated_entry_on_its_tasks(
    client: TestClient, auth: AuthFactory, make_task: Factory, make_category: Factory
) -> None:
    category = make_category(name="Errands")
    task = make_task(title="Post office", category_id=category["id"])

    response = client.delete(f"/api/alice/categories/{category['id']}", headers=auth())

    assert response.status_code == 204
    entries = _task_history(client, auth, task["id"])
    assert _actions(entries) == ["updated", "created"]
    assert entries[0]["changes"] == {"category_id": {"from": category["id"], "to": None}}
    assert entries[0]["title"] == "Post office"
