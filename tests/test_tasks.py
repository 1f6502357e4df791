"""Tasks: create, read, replace, update, complete, delete."""

from fastapi.testclient import TestClient
from sqlmodel import Session, select

from backend.models import Task
from tests.conftest import AuthFactory, Factory


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
