"""Pooled connections the server closed are replaced before a request uses them."""

import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event, text
from sqlmodel import Session

from backend import db as database
from backend.config import Settings
from backend.main import create_app
from tests.conftest import AuthFactory

APPLICATION = "todo-pool-test"
REQUESTS = 20


@pytest.fixture
def pooled_client(settings: Settings, db: Session) -> Iterator[TestClient]:
    """An app whose connections carry their own `application_name`, to find them by."""
    url = f"{settings.database_url}?application_name={APPLICATION}"
    app = create_app(settings.model_copy(update={"database_url": url}))
    with TestClient(app) as client:
        yield client


def _close_pooled_connections(engine: Engine) -> int:
    """What a server restart, a failover or a proxy's idle timeout does to the pool."""
    with engine.connect() as connection:
        closed = connection.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = :name"
            ),
            {"name": APPLICATION},
        ).scalar_one()
    time.sleep(0.2)  # the goodbye reaches the client sockets
    return int(closed)


def _fill_pool(client: TestClient, auth: AuthFactory) -> None:
    for _ in range(REQUESTS):
        assert client.get("/api/alice/tasks", headers=auth("alice")).status_code == 200


def test_requests_after_the_server_closed_pooled_connections_succeed(
    pooled_client: TestClient, auth: AuthFactory, engine: Engine
) -> None:
    _fill_pool(pooled_client, auth)
    assert _close_pooled_connections(engine) >= 1

    statuses = [
        pooled_client.get("/api/alice/tasks", headers=auth("alice")).status_code
        for _ in range(REQUESTS)
    ]

    assert statuses == [200] * REQUESTS


def test_without_the_checkout_check_a_closed_connection_fails_a_request(
    pooled_client: TestClient, auth: AuthFactory, engine: Engine
) -> None:
    """The check is what saves the request above: without it, the first request on a
    closed connection answers 503 (and SQLAlchemy then renews the pool)."""
    app_engine = pooled_client.app.state.sessionmaker.kw["bind"]  # type: ignore[attr-defined]
    check = database._discard_if_closed_by_server
    event.remove(app_engine.sync_engine, "checkout", check)
    _fill_pool(pooled_client, auth)
    assert _close_pooled_connections(engine) >= 1

    response = pooled_client.get("/api/alice/tasks", headers=auth("alice"))

    assert response.status_code == 503
    assert response.json()["code"] == "db_unavailable"


def test_reads_end_with_commit_so_their_statements_get_prepared(
    pooled_client: TestClient, auth: AuthFactory
) -> None:
    """psycopg prepares a statement on its fifth run on a connection, and forgets every
    prepared statement at a ROLLBACK: reads that ended with one never got there."""
    _fill_pool(pooled_client, auth)
    sessionmaker = pooled_client.app.state.sessionmaker  # type: ignore[attr-defined]

    async def prepared_on_a_pooled_connection() -> list[str]:
        async with sessionmaker() as session:
            connection = await session.connection()
            rows = await connection.execute(text("SELECT statement FROM pg_prepared_statements"))
            return [row[0] for row in rows]

    prepared = pooled_client.portal.call(prepared_on_a_pooled_connection)  # type: ignore[union-attr]

    assert any(statement.startswith("SELECT tasks.id") for statement in prepared), prepared
