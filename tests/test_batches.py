"""Batches: many operations in one request, each answered as its single request is; all
or nothing by default; references to ids created earlier."""

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlmodel import Session

from backend.config import Settings
from backend.main import create_app
from tests.conftest import AuthFactory, Factory, assert_invalid, history, make_token


def batch(
    client: TestClient, auth: AuthFactory, operations: list[dict[str, Any]], **fields: Any
) -> dict[str, Any]:
    response = client.post(
        "/api/alice/batch",
        json={"operations": operations, **fields},
        headers=auth() | fields.pop("headers", {}),
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def count(db: Session, table: str) -> int:
    return int(db.exec(text(f"SELECT count(*) FROM {table}")).one()[0])  # type: ignore[call-overload]  # noqa: S608


def test_atomic_batch_runs_each_operation_as_its_single_request(
    client: TestClient, auth: AuthFactory, db: Session
) -> None:
    answer = batch(
        client,
        auth,
        [
            {"id": "cat", "method": "POST", "path": "/categories", "body": {"name": "Home"}},
            {
                "id": "task",
                "method": "POST",
                "path": "/tasks",
                "body": {"title": "Sweep", "category_id": "$cat", "tags": ["chores"]},
            },
            {"id": "done", "method": "PATCH", "path": "/tasks/$task/complete"},
            {"id": "read", "method": "GET", "path": "/tasks/$task"},
        ],
    )

    created, task, done, read = answer["results"]
    single = client.get(f"/api/alice/tasks/{task['body']['id']}", headers=auth())
    assert answer["committed"] is True
    assert [r["status"] for r in answer["results"]] == [201, 201, 200, 200]
    assert task["body"]["category_id"] == created["body"]["id"]
    assert task["headers"]["Location"].endswith(f"/api/alice/tasks/{task['body']['id']}")
    assert done["headers"]["ETag"] == '"2"'
    assert read["body"] == single.json() == done["body"]
    assert history(db) == ["created", "completed"]
    assert count(db, "changes") == 2


def test_atomic_batch_stores_nothing_when_one_operation_fails(
    client: TestClient, auth: AuthFactory, db: Session
) -> None:
    answer = batch(
        client,
        auth,
        [
            {"id": "a", "method": "POST", "path": "/tasks", "body": {"title": "Kept?"}},
            {"id": "b", "method": "POST", "path": "/tasks", "body": {"title": ""}},
            {"id": "c", "method": "POST", "path": "/tasks", "body": {"title": "Never"}},
        ],
    )

    first, failed, skipped = answer["results"]
    assert answer["committed"] is False
    assert first["status"] == 201
    assert failed["status"] == 422
    assert failed["body"]["code"] == "validation_error"
    assert skipped["status"] == 424
    assert skipped["body"]["code"] == "failed_dependency"
    assert count(db, "tasks") == 0
    assert count(db, "task_history") == 0
    assert count(db, "changes") == 0


def test_non_atomic_batch_commits_each_success_on_its_own(
    client: TestClient, auth: AuthFactory, db: Session, make_task: Factory
) -> None:
    task = make_task(title="Old")

    answer = batch(
        client,
        auth,
        [
            {"id": "a", "method": "POST", "path": "/tasks", "body": {"title": "Stored"}},
            {
                "id": "stale",
                "method": "PATCH",
                "path": f"/tasks/{task['id']}",
                "body": {"title": "Lost"},
                "headers": {"If-Match": '"9"'},
            },
            {
                "id": "gone",
                "method": "DELETE",
                "path": "/tasks/00000000-0000-7000-8000-000000000001",
            },
            {"id": "b", "method": "PATCH", "path": "/tasks/$a", "body": {"priority": "high"}},
        ],
        atomic=False,
    )

    assert [r["status"] for r in answer["results"]] == [201, 412, 404, 200]
    assert answer["committed"] is True
    titles = {
        t["title"]: t["priority"]
        for t in client.get("/api/alice/tasks", headers=auth()).json()["items"]
    }
    assert titles == {"Stored": "high", "Old": "none"}


@pytest.mark.parametrize(
    ("operation", "error"),
    [
        ({"id": "x", "method": "GET", "path": "/tasks/$later"}, "batch_reference_unknown"),
        ({"id": "x", "method": "GET", "path": "/../../healthz"}, "batch_path_unknown"),
        ({"id": "x", "method": "GET", "path": "/nowhere"}, "batch_path_unknown"),
        ({"id": "x", "method": "POST", "path": "/batch", "body": {}}, "batch_path_unknown"),
        ({"id": "x", "method": "GET", "path": "/events"}, "batch_path_unknown"),
        (
            {"id": "x", "method": "POST", "path": "/tasks", "headers": {"Idempotency-Key": "k"}},
            "batch_header_refused",
        ),
        ({"id": "first", "method": "GET", "path": "/tasks"}, "batch_id_repeated"),
    ],
)
def test_batch_refuses_what_it_cannot_run_before_running_anything(
    client: TestClient, auth: AuthFactory, db: Session, operation: dict[str, Any], error: str
) -> None:
    operations = [
        {"id": "first", "method": "POST", "path": "/tasks", "body": {"title": "Not stored"}},
        operation,
    ]

    response = client.post("/api/alice/batch", json={"operations": operations}, headers=auth())

    [found] = assert_invalid(response)
    assert found["type"] == error
    assert count(db, "tasks") == 0


def test_batch_with_an_idempotency_key_runs_once(
    client: TestClient, auth: AuthFactory, db: Session
) -> None:
    operations = [{"id": "a", "method": "POST", "path": "/tasks", "body": {"title": "Once"}}]
    headers = auth() | {"Idempotency-Key": "batch-1"}

    first = client.post("/api/alice/batch", json={"operations": operations}, headers=headers)
    again = client.post("/api/alice/batch", json={"operations": operations}, headers=headers)

    assert first.status_code == again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert count(db, "tasks") == 1


def test_batch_reaches_only_the_callers_own_rows(
    client: TestClient, auth: AuthFactory, make_task: Factory
) -> None:
    bobs = make_task("bob")

    answer = batch(
        client,
        auth,
        [{"id": "a", "method": "PATCH", "path": f"/tasks/{bobs['id']}", "body": {"title": "x"}}],
        atomic=False,
    )

    assert answer["results"][0]["status"] == 404
    assert (
        client.get(f"/api/bob/tasks/{bobs['id']}", headers=auth("bob")).json()["title"]
        == bobs["title"]
    )


def test_each_operation_counts_against_the_rate_budget(settings: Settings, db: Session) -> None:
    app = create_app(settings.model_copy(update={"rate_limit_user": "4/minute"}))
    operations = [{"id": f"r{n}", "method": "GET", "path": "/tasks"} for n in range(4)]

    with TestClient(app) as client:
        response = client.post(
            "/api/alice/batch",
            json={"operations": operations, "atomic": False},
            headers={"Authorization": f"Bearer {make_token('alice')}"},
        )

    statuses = [result["status"] for result in response.json()["results"]]
    assert statuses == [200, 200, 200, 429]  # the batch itself was the first of four
