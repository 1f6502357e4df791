"""The request's session: opened on first use, ended once the answer is sent, its
connection always back in the pool; a read that succeeded commits, anything else that
did not commit rolls back."""

from collections.abc import Iterator
from uuid import uuid4

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import AuthFactory


@pytest.fixture
def ended(client: TestClient) -> Iterator[list[str]]:
    """How each transaction of the app's engine ended, in order."""
    engine: AsyncEngine = client.app.state.sessionmaker.kw["bind"]  # type: ignore[attr-defined]
    endings: list[str] = []

    def commit(_connection: object) -> None:
        endings.append("commit")

    def rollback(_connection: object) -> None:
        endings.append("rollback")

    event.listen(engine.sync_engine, "commit", commit)
    event.listen(engine.sync_engine, "rollback", rollback)
    yield endings
    event.remove(engine.sync_engine, "commit", commit)
    event.remove(engine.sync_engine, "rollback", rollback)


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "ending"),
    [
        ("GET", "/api/alice/tasks", None, 200, "commit"),
        ("GET", f"/api/alice/tasks/{uuid4()}", None, 404, "rollback"),
        ("POST", "/api/alice/tasks", {"title": "kept"}, 201, "commit"),
        ("POST", "/api/alice/tasks", {"title": "x", "category_id": str(uuid4())}, 422, "rollback"),
        ("DELETE", f"/api/alice/tasks/{uuid4()}", None, 404, "rollback"),
    ],
)
def test_each_request_ends_its_transaction_and_returns_its_connection(
    client: TestClient,
    auth: AuthFactory,
    ended: list[str],
    method: str,
    path: str,
    body: dict[str, str] | None,
    status: int,
    ending: str,
) -> None:
    engine: AsyncEngine = client.app.state.sessionmaker.kw["bind"]  # type: ignore[attr-defined]
    assert client.get("/api/alice/me", headers=auth("alice")).status_code == 200  # the user
    ended.clear()

    response = client.request(method, path, json=body, headers=auth("alice"))

    assert response.status_code == status, response.text
    assert ended[-1:] == [ending], ended
    assert engine.sync_engine.pool.checkedout() == 0  # type: ignore[attr-defined]


def test_a_request_that_needs_no_database_opens_no_transaction(
    client: TestClient, ended: list[str]
) -> None:
    response = client.get("/api/alice/tasks")  # refused before the guard reads anything

    assert response.status_code == 401
    assert ended == []
