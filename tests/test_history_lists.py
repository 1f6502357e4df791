"""History: lists filtered, paged and kept to the caller; others' entries refused."""

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from backend.fields import HistoryAction
from backend.models import TaskHistory, User
from tests.conftest import AuthFactory, Factory, assert_problem

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
MISSING = "00000000-0000-7000-8000-000000000000"


def _seed(db: Session, rows: list[tuple[str, UUID, HistoryAction, datetime]]) -> list[str]:
    """History rows (user, task, action, occurred_at) written directly; their ids."""
    for user_id in sorted({row[0] for row in rows}):
        db.add(User(id=user_id, created_at=T0, updated_at=T0))
    db.commit()
    entries = [
        TaskHistory(
            user_id=user, task_id=task, action=action, changes={}, title="t", occurred_at=at
        )
        for user, task, action, at in rows
    ]
    db.add_all(entries)
    ids = [str(entry.id) for entry in entries]
    db.commit()
    return ids


@pytest.mark.parametrize("deleted", [False, True])
def test_list_task_history_refuses_another_users_task_like_a_missing_one(
    client: TestClient, auth: AuthFactory, make_task: Factory, deleted: bool
) -> None:
    theirs = make_task("bob", title="Bob's")
    if deleted:
        assert (
            client.delete(f"/api/bob/tasks/{theirs['id']}", headers=auth("bob")).status_code == 204
        )

    foreign = client.get(f"/api/alice/tasks/{theirs['id']}/history", headers=auth())
    missing = client.get(f"/api/alice/tasks/{MISSING}/history", headers=auth())

    assert_problem(foreign, 404, "not_found")
    assert foreign.content == missing.content
    assert foreign.headers["content-type"] == missing.headers["content-type"]


def test_list_history_shows_only_the_callers_entries_newest_first(
    client: TestClient, auth: AuthFactory, make_task: Factory
) -> None:
    first = make_task(title="first")
    make_task("bob", title="bob's")
    second = make_task(title="second")
    client.patch(f"/api/alice/tasks/{first['id']}/complete", headers=auth())

    response = client.get("/api/alice/history", headers=auth())

    assert response.status_code == 200
    body = response.json()
    assert body["next_cursor"] is None
    assert [(entry["action"], entry["task_id"]) for entry in body["items"]] == [
        ("completed", first["id"]),
        ("created", second["id"]),
        ("created", first["id"]),
    ]


TASK_A = UUID("00000000-0000-7000-8000-00000000000a")
TASK_B = UUID("00000000-0000-7000-8000-00000000000b")
HISTORY_ROWS = [
    ("alice", TASK_A, HistoryAction.created, T0),
    ("alice", TASK_A, HistoryAction.updated, T0 + timedelta(hours=1)),
    ("alice", TASK_B, HistoryAction.created, T0 + timedelta(hours=1)),
    ("alice", TASK_A, HistoryAction.completed, T0 + timedelta(hours=2)),
    ("alice", TASK_B, HistoryAction.deleted, T0 + timedelta(hours=3)),
    ("bob", TASK_A, HistoryAction.created, T0 + timedelta(hours=1)),
]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, [4, 3, 2, 1, 0]), ({"task_id": str(TASK_A)}, [3, 1, 0]), ({"task_id": MISSING}, []),
        ({"action": "created"}, [2, 0]), ({"action": "deleted"}, [4]),
        ({"since": "2026-03-01T11:00:00Z"}, [4, 3, 2, 1]),
        ({"since": "2026-03-01T12:00:00+01:00"}, [4, 3, 2, 1]),
        ({"until": "2026-03-01T11:00:00Z"}, [0]),
        ({"since": "2026-03-01T11:00:00Z", "until": "2026-03-01T12:00:00Z"}, [2, 1]),
        ({"since": "2026-03-01T12:00:00Z", "until": "2026-03-01T12:00:00Z"}, []),
        ({"task_id": str(TASK_B), "action": "created"}, [2]),
    ],
)  # fmt: skip
def test_list_history_filters(
    client: TestClient,
    auth: AuthFactory,
    db: Session,
    params: dict[str, str],
    expected: list[int],
) -> None:
    ids = _seed(db, HISTORY_ROWS)

    response = client.get("/api/alice/history", params=params, headers=auth())

    assert response.status_code == 200
    assert [entry["id"] for entry in response.json()["items"]] == [ids[i] for i in expected]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("task_id", "nope"), ("action", "renamed"), ("since", "2026-03-01T11:00:00"),
        ("until", "yesterday"), ("limit", "0"), ("limit", "101"), ("cursor", "x"),
        ("since", "0001-01-01T00:00:00+00:01"), ("until", "9999-12-31T23:59:59-00:01"),
    ],
)  # fmt: skip
def test_list_history_refuses_an_invalid_filter(
    client: TestClient, auth: AuthFactory, name: str, value: str
) -> None:
    response = client.get("/api/alice/history", params={name: value}, headers=auth())

    body = assert_problem(response, 422, "validation_error")
    assert {tuple(error["loc"][:2]) for error in body["errors"]} == {("query", name)}


@pytest.mark.parametrize("limit", [1, 2, 4])
def test_list_history_walks_pages_newest_first(
    client: TestClient, auth: AuthFactory, db: Session, limit: int
) -> None:
    ids = _seed(db, HISTORY_ROWS)
    seen: list[str] = []
    cursor: str | None = None

    for _ in range(10):
        params: dict[str, Any] = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        response = client.get("/api/alice/history", params=params, headers=auth())
        assert response.status_code == 200, response.text
        seen.extend(entry["id"] for entry in response.json()["items"])
        cursor = response.json()["next_cursor"]
        if cursor is None:
            break

    tied = sorted([ids[1], ids[2]], key=UUID, reverse=True)
    assert seen == [ids[4], ids[3], *tied, ids[0]]


def test_list_history_refuses_another_users_cursor(
    client: TestClient, auth: AuthFactory, db: Session
) -> None:
    _seed(db, [*HISTORY_ROWS, ("bob", TASK_B, HistoryAction.updated, T0)])
    page = client.get("/api/alice/history", params={"limit": 1}, headers=auth())

    response = client.get(
        "/api/bob/history", params={"cursor": page.json()["next_cursor"]}, headers=auth("bob")
    )

    body = assert_problem(response, 422, "validation_error")
    assert body["errors"][0]["loc"] == ["query", "cursor"]


def test_get_history_entry_refuses_another_users_entry_like_a_missing_one(
    client: TestClient, auth: AuthFactory, db: Session
) -> None:
    ids = _seed(db, HISTORY_ROWS)
    bobs = ids[-1]

    foreign = client.get(f"/api/alice/history/{bobs}", headers=auth())
    missing = client.get(f"/api/alice/history/{MISSING}", headers=auth())

    assert_problem(foreign, 404, "not_found")
    assert foreign.content == missing.content


def test_list_task_history_pages_newest_first(
    client: TestClient, auth: AuthFactory, make_task: Factory
) -> None:
    task = make_task(title="v0")
    for version in range(1, 4):
        patched = client.patch(
            f"/api/alice/tasks/{task['id']}", json={"title": f"v{version}"}, headers=auth()
        )
        assert patched.status_code == 200
    make_task(title="other")
    path = f"/api/alice/tasks/{task['id']}/history"

    first = client.get(path, params={"limit": 2}, headers=auth())
    second = client.get(
        path, params={"limit": 2, "cursor": first.json()["next_cursor"]}, headers=auth()
    )

    assert first.status_code == 200
    assert second.status_code == 200
    assert [entry["title"] for entry in first.json()["items"]] == ["v3", "v2"]
    assert [entry["title"] for entry in second.json()["items"]] == ["v1", "v0"]
    assert second.json()["next_cursor"] is None
