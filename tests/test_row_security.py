"""PostgreSQL row-level security: an unscoped query sees only the caller's rows."""

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session

from backend import db as database
from backend.config import Settings
from backend.main import create_app
from backend.owned import OWNER
from backend.tasks.service import SEARCH_LISTINGS, TABLE_LISTINGS
from tests.conftest import AuthFactory, explain, sync_url

ROLE = "todo_rls_app"
OWNED_TABLES = (
    "users",
    "categories",
    "tasks",
    "task_history",
    "personal_tokens",
    "idempotency_keys",
    "webhooks",
    "webhook_deliveries",
    "tags",
    "task_tags",
    "reminders",
)
OWNED_VIEWS = ("task_search",)


@pytest.fixture(scope="module")
def restricted_url(engine: Engine) -> str:
    """The test database as a plain role: no superuser, no BYPASSRLS, only table rights."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        exists = connection.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": ROLE})
        if exists.first() is None:
            connection.execute(text(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{ROLE}'"))
        connection.execute(text(f"GRANT USAGE ON SCHEMA public TO {ROLE}"))
        connection.execute(
            text(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {ROLE}")
        )
    url = make_url(engine.url).set(username=ROLE, password=ROLE)
    return url.render_as_string(hide_password=False)


@pytest.fixture
def restricted(restricted_url: str) -> Iterator[Engine]:
    engine = create_engine(sync_url(restricted_url))
    yield engine
    engine.dispose()


@pytest.fixture
def restricted_client(settings: Settings, restricted_url: str, db: Session) -> Iterator[TestClient]:
    app = create_app(settings.model_copy(update={"database_url": restricted_url}))
    with TestClient(app) as client:
        yield client


def _rows(engine: Engine, sql: str, user: str | None) -> list[Any]:
    with engine.begin() as connection:
        if user is not None:
            connection.execute(text("SELECT set_config('app.user_id', :u, true)"), {"u": user})
        return list(connection.execute(text(sql)))


def _use_the_api_as(client: TestClient, auth: AuthFactory, user: str) -> None:
    """Every kind of write and read, so that any path that forgets its scope fails."""
    headers = auth(user, email=f"{user}@example.com")
    base = f"/api/{user}"
    hook = client.post(
        f"{base}/webhooks", json={"url": f"https://hooks.example.com/{user}"}, headers=headers
    )
    assert hook.status_code == 201, hook.text
    hook_path = f"{base}/webhooks/{hook.json()['id']}"
    assert client.post(f"{hook_path}/ping", headers=headers).status_code == 202
    assert (
        client.patch(
            hook_path, json={"events": ["task.*", "category.*"]}, headers=headers
        ).status_code
        == 200
    )
    kept = client.post(f"{base}/categories", json={"name": "Home"}, headers=headers)
    category = client.post(f"{base}/categories", json={"name": "Work"}, headers=headers)
    assert (kept.status_code, category.status_code) == (201, 201), category.text
    task = client.post(
        f"{base}/tasks",
        json={
            "title": f"{user} task",
            "category_id": category.json()["id"],
            "tags": ["a", "b"],
            "due_at": "2027-01-04T09:00:00Z",
            "recurrence": {"rule": "FREQ=WEEKLY", "tz": "Europe/Paris"},
            "reminders": [{"before": "PT1H"}],
        },
        headers={**headers, "Idempotency-Key": f"{user}-1"},
    )
    assert task.status_code == 201, task.text
    task_path = f"{base}/tasks/{task.json()['id']}"
    assert client.patch(task_path, json={"title": "renamed"}, headers=headers).status_code == 200
    assert client.patch(f"{task_path}/complete", headers=headers).status_code == 200
    tags = client.get(f"{base}/tags", headers=headers).json()["items"]
    renamed = client.patch(f"{base}/tags/{tags[0]['id']}", json={"name": "A2"}, headers=headers)
    assert renamed.status_code == 200, renamed.text
    assert client.delete(f"{base}/tags/{tags[1]['id']}", headers=headers).status_code == 204
    assert client.get(f"{base}/tasks?tag=a2", headers=headers).json()["items"][0]["tags"] == ["A2"]
    category_path = f"{base}/categories/{category.json()['id']}"
    assert client.delete(category_path, headers=headers).status_code == 204
    token = client.post(f"{base}/tokens", json={"name": "cli", "scope": "write"}, headers=headers)
    assert token.status_code == 201, token.text
    pat = {"Authorization": f"Bearer {token.json()['token']}"}
    assert client.post(f"{base}/tasks", json={"title": "via pat"}, headers=pat).status_code == 201
    for path in (
        "tasks",
        "tasks?q=renamed",
        "history",
        "stats/weekly",
        "me",
        "tokens",
        "categories",
        f"webhooks/{hook.json()['id']}/deliveries",
    ):
        response = client.get(f"{base}/{path}", headers=headers)
        assert response.status_code == 200, (path, response.text)
    queued = client.get(f"{hook_path}/deliveries", headers=headers).json()["items"]
    assert {"webhook.ping", "task.created", "category.deleted"} <= {d["type"] for d in queued}


def test_service_works_as_a_role_without_bypass(
    restricted_client: TestClient, auth: AuthFactory, restricted: Engine
) -> None:
    _use_the_api_as(restricted_client, auth, "alice")
    _use_the_api_as(restricted_client, auth, "bob")

    tasks = restricted_client.get("/api/alice/tasks", headers=auth("alice")).json()["items"]
    assert {task["title"] for task in tasks} == {"renamed", "via pat"}


def test_unscoped_query_sees_only_the_callers_rows(
    restricted_client: TestClient, auth: AuthFactory, restricted: Engine
) -> None:
    _use_the_api_as(restricted_client, auth, "alice")
    _use_the_api_as(restricted_client, auth, "bob")

    for table in OWNED_TABLES + OWNED_VIEWS:
        owner = "id" if table == "users" else "user_id"
        seen = {row[0] for row in _rows(restricted, f"SELECT {owner} FROM {table}", "alice")}  # noqa: S608
        assert seen == {"alice"}, table
        assert _rows(restricted, f"SELECT * FROM {table}", None) == [], table  # noqa: S608


def test_write_for_another_user_is_refused_by_the_database(
    restricted_client: TestClient, auth: AuthFactory, restricted: Engine
) -> None:
    _use_the_api_as(restricted_client, auth, "bob")

    with pytest.raises(DBAPIError, match="row-level security"):
        _rows(
            restricted,
            "INSERT INTO categories (user_id, id, name, name_key, created_at, updated_at, version)"
            " VALUES ('bob', gen_random_uuid(), 'x', 'x', now(), now(), 1)",
            "alice",
        )
    updated = _rows(restricted, "UPDATE tasks SET title = 'taken' RETURNING id", "alice")
    assert updated == []


def test_search_can_use_the_trigram_index_under_row_security(
    restricted_client: TestClient, auth: AuthFactory, restricted: Engine, engine: Engine
) -> None:
    _use_the_api_as(restricted_client, auth, "alice")
    with engine.begin() as connection:  # 5,000 tasks, where a rare word is best found by index
        connection.execute(
            text(
                "INSERT INTO tasks (user_id, id, title, priority, completed, created_at,"
                " updated_at, version) SELECT 'alice', gen_random_uuid(), 'chore ' || n, 0,"
                " false, now(), now(), 1 FROM generate_series(1, 5000) AS n"
            )
        )
        connection.execute(
            text("SELECT gin_clean_pending_list('ix_tasks_search')")
        )  # as vacuum would
        connection.execute(text("ANALYZE tasks"))
    search = {"q": "xylophone", OWNER: "alice"}
    listing = frozenset({"q"})

    through_view = explain(restricted, SEARCH_LISTINGS.statement(listing), search, as_user="alice")
    through_table = explain(restricted, TABLE_LISTINGS.statement(listing), search, as_user="alice")

    assert "ix_tasks_search" in through_view, through_view
    assert "ix_tasks_search" not in through_table, through_table  # ILIKE waits for the policy


def test_a_transaction_begins_with_its_settings_in_one_statement(
    restricted_client: TestClient, auth: AuthFactory
) -> None:
    app_engine = restricted_client.app.state.sessionmaker.kw["bind"]  # type: ignore[attr-defined]
    sent: list[str] = []

    def record(*args: Any) -> None:
        sent.append(args[2])  # (connection, cursor, statement, ...)

    event.listen(app_engine.sync_engine, "before_cursor_execute", record)
    try:
        response = restricted_client.get("/api/o'brien/tasks", headers=auth("o'brien"))
    finally:
        event.remove(app_engine.sync_engine, "before_cursor_execute", record)

    assert response.status_code == 200, response.text
    begins = [statement for statement in sent if statement.startswith("BEGIN")]
    assert begins, sent
    assert set(begins) == {"BEGIN; SET LOCAL app.user_id = 'o''brien'"}
    assert sent[0] in begins
    assert not any("set_config" in statement for statement in sent)


def test_a_setting_with_nul_is_refused_rather_than_cut_short(restricted: Engine) -> None:
    with restricted.connect() as connection:
        quote = database._Quoter(connection.connection.driver_connection)

        assert quote("o'brien") == "'o''brien'"
        with pytest.raises(ValueError, match="NUL"):
            quote("alice\x00bob")
