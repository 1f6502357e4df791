"""Tasks: complete and reopen, by their routes and by PATCH, with completed_at and history."""

from datetime import datetime

from fastapi.testclient import TestClient
from sqlmodel import Session, select

from backend.models import TaskHistory
from tests.conftest import AuthFactory, Factory, history, stored_task


def test_update_task_completed_sets_and_clears_completed_at(
    client: TestClient, auth: AuthFactory, make_task: Factory, db: Session
) -> None:
    task = make_task(title="Toggle")
    path = f"/api/alice/tasks/{task['id']}"

    done = client.patch(path, json={"completed": True}, headers=auth("alice"))
    stored_done = stored_task(db)
    reopened = client.patch(path, json={"completed": False}, headers=auth("alice"))

    assert (done.status_code, reopened.status_code) == (200, 200)
    assert (done.json()["completed"], done.json()["version"]) == (True, 2)
    assert done.json()["completed_at"] is not None
    assert stored_done.completed_at == datetime.fromisoformat(done.json()["completed_at"])
    assert (reopened.json()["completed"], reopened.json()["completed_at"]) == (False, None)
    assert reopened.json()["version"] == 3
    stored = stored_task(db)
    assert (stored.completed, stored.completed_at) == (False, None)
    assert history(db) == ["created", "completed", "reopened"]


def test_complete_task_sets_completed_at_and_is_idempotent(
    client: TestClient, auth: AuthFactory, make_task: Factory, db: Session
) -> None:
    task = make_task(title="Finish")
    path = f"/api/alice/tasks/{task['id']}/complete"

    first = client.patch(path, headers=auth("alice"))
    again = client.patch(path, headers=auth("alice"))

    assert (first.status_code, again.status_code) == (200, 200)
    done = first.json()
    assert (done["completed"], done["version"]) == (True, 2)
    assert done["completed_at"] is not None
    assert datetime.fromisoformat(done["updated_at"]) > datetime.fromisoformat(task["updated_at"])
    assert again.json() == done
    stored = stored_task(db)
    assert (stored.completed, stored.version) == (True, 2)
    assert stored.completed_at == datetime.fromisoformat(done["completed_at"])
    assert history(db) == ["created", "completed"]
    entry = db.exec(select(TaskHistory).where(TaskHistory.action == "completed")).one()
    assert entry.changes == {"completed": {"from": False, "to": True}}


def test_reopen_task_clears_completed_at_and_is_idempotent(
    client: TestClient, auth: AuthFactory, make_task: Factory, db: Session
) -> None:
    task = make_task(title="Again")
    path = f"/api/alice/tasks/{task['id']}"
    client.patch(f"{path}/complete", headers=auth("alice"))

    first = client.patch(f"{path}/incomplete", headers=auth("alice"))
    again = client.patch(f"{path}/incomplete", headers=auth("alice"))

    assert (first.status_code, again.status_code) == (200, 200)
    body = first.json()
    assert (body["completed"], body["completed_at"], body["version"]) == (False, None, 3)
    assert again.json() == body
    stored = stored_task(db)
    assert (stored.completed, stored.completed_at, stored.version) == (False, None, 3)
    assert history(db) == ["created", "completed", "reopened"]


def test_reopen_task_that_is_open_changes_nothing(
    client: TestClient, auth: AuthFactory, make_task: Factory, db: Session
) -> None:
    task = make_task(title="Open")

    response = client.patch(f"/api/alice/tasks/{task['id']}/incomplete", headers=auth("alice"))

    assert response.status_code == 200
    assert response.json() == task
    assert (stored_task(db).version, history(db)) == (1, ["created"])
