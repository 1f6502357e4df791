"""Fixtures: a migrated database (SQLite by default, `TEST_DATABASE_URL` for PostgreSQL),
an app per test, tokens, and factories that go through the API."""

import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx2
import jwt
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import AliasChoices
from sqlalchemy import Engine, Inspector, create_engine, event, inspect, text
from sqlmodel import Session, col, select

from backend import migrate
from backend.config import Settings
from backend.main import create_app
from backend.models import Task, TaskHistory

SECRET = "test-secret-that-is-long-enough-for-hs256!"
MISSING_ID = "00000000-0000-7000-8000-0000000000aa"


def _settings_variables() -> set[str]:
    """Every environment variable that Settings reads (field names and their aliases)."""
    names = set()
    for name, field in Settings.model_fields.items():
        names.add(name.upper())
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(choice for choice in alias.choices if isinstance(choice, str))
    return names


# The suite is hermetic: a JWT_SECRET, JWKS_URL or REDIS_URL exported in the shell that runs
# it must not change what the tests' apps do (each test that wants a setting says so).
for _name in _settings_variables():
    os.environ.pop(_name, None)

# Rate limits stay on in every suite (each request passes through the limiter), far above
# what the suites send from their one client address; tests/test_rate_limits.py sets its own.
os.environ.setdefault("RATE_LIMIT_IP", "1000000/minute")
os.environ.setdefault("RATE_LIMIT_USER", "1000000/minute")
# An event stream ends by itself this soon, so that a test client reading one whole returns.
os.environ.setdefault("EVENTS_MAX_STREAM_SECONDS", "0.2")
TABLES = (
    "reminders",
    "webhook_deliveries",
    "webhooks",
    "task_tags",
    "tags",
    "event_tickets",
    "changes",
    "idempotency_keys",
    "personal_tokens",
    "task_history",
    "tasks",
    "categories",
    "users",
)

Headers = dict[str, str]
AuthFactory = Callable[..., Headers]
Factory = Callable[..., dict[str, Any]]


pytest_plugins = ["tests.mcp_client", "tests.webhook_client"]
"""The live server and SDK client of the MCP tests; the webhook tests' app and receiver."""

POSTGRES_ONLY = (
    "tests/reliability/",
    "tests/test_row_security.py",
    "tests/test_pool.py",
    "tests/test_pgbouncer.py",
    "tests/test_plans.py",
    "tests/test_migrations_postgres.py",
    "tests/test_changes_postgres.py",
    "tests/test_events_postgres.py",
)
"""Suites that need a PostgreSQL server: run where the tests run on PostgreSQL (CI)."""


def _on_postgres() -> bool:
    return os.environ.get("TEST_DATABASE_URL", "").startswith(("postgres://", "postgresql"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On SQLite, leave out the PostgreSQL-only suites, and say so in the summary."""
    if _on_postgres():
        return
    left_out = [item for item in items if item.nodeid.startswith(POSTGRES_ONLY)]
    if left_out:
        items[:] = [item for item in items if item not in left_out]
        config.hook.pytest_deselected(items=left_out)
        config.stash[_LEFT_OUT] = len(left_out)


_LEFT_OUT = pytest.StashKey[int]()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if left_out := config.stash.get(_LEFT_OUT, 0):
        terminalreporter.write_line(
            f"{left_out} PostgreSQL-only tests (reliability, row security, pool, PgBouncer,"
            " plans, transactional migrations, feed and event workers) left out on SQLite:"
            " they run with TEST_DATABASE_URL=postgresql://... (as CI does)."
        )


def sync_url(async_url: str) -> str:
    """The same database through a synchronous driver, for setting up and asserting rows."""
    return async_url.replace("sqlite+aiosqlite", "sqlite")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No secret or database in the environment: each test sets what it reads."""
    for name in ("JWT_SECRET", "BETTER_AUTH_SECRET", "JWT_ALGORITHMS", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ENVIRONMENT", "test")
    return monkeypatch


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        return url
    return f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    return Settings(
        _env_file=None,
        environment="test",
        database_url=database_url,
        jwt_secret=SECRET,
    )


@pytest.fixture(scope="session")
def engine(settings: Settings) -> Iterator[Engine]:
    migrate.downgrade(settings, "base")
    migrate.upgrade(settings)
    engine = create_engine(sync_url(settings.database_url))
    yield engine
    engine.dispose()


@pytest.fixture
def db(engine: Engine) -> Iterator[Session]:
    """A session for arranging and checking stored rows; every table is emptied after."""
    with Session(engine) as session:
        yield session
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text(f"TRUNCATE {', '.join(TABLES)}"))
        else:
            for table in TABLES:
                connection.execute(text(f"DELETE FROM {table}"))  # noqa: S608


@pytest.fixture(scope="session")
def app(settings: Settings) -> FastAPI:
    """One app for the session (building one costs more than most tests)."""
    return create_app(settings)


@pytest.fixture
def client(app: FastAPI, db: Session) -> Iterator[TestClient]:
    app.state.known_users.clear()  # the tables are emptied between tests
    with TestClient(app) as client:
        yield client


REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def redis_url() -> str:
    """The machine's Redis; the tests that need one are skipped without it, except in CI."""
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=0.5).close()
    except OSError:
        if os.environ.get("CI"):
            raise
        pytest.skip("no Redis on 127.0.0.1:6379 (CI starts one)")
    return REDIS_URL


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now, for a server a test starts."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def make_token(subject: Any = "alice", *, secret: str = SECRET, **claims: Any) -> str:
    now = int(time.time())
    payload = {"sub": subject, "iat": now, "exp": now + 600, **claims}
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, secret)


@pytest.fixture
def auth() -> AuthFactory:
    """`auth("alice")`: the headers of a request made as that user."""

    def headers(user: str = "alice", **claims: Any) -> Headers:
        return {"Authorization": f"Bearer {make_token(user, **claims)}"}

    return headers


def _factory(client: TestClient, auth: AuthFactory, path: str, defaults: dict[str, Any]) -> Factory:
    def create(user: str = "alice", **fields: Any) -> dict[str, Any]:
        response = client.post(f"/api/{user}/{path}", json=defaults | fields, headers=auth(user))
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    return create


@pytest.fixture
def make_task(client: TestClient, auth: AuthFactory) -> Factory:
    """`make_task("alice", title=...)`: a task created through the API."""
    return _factory(client, auth, "tasks", {"title": "A task"})


@pytest.fixture
def make_category(client: TestClient, auth: AuthFactory) -> Factory:
    """`make_category("alice", name=...)`: a category created through the API."""
    return _factory(client, auth, "categories", {"name": "Home"})


def assert_problem(response: Any, status: int, code: str) -> dict[str, Any]:
    """The response is an RFC 9457 problem with that status and code."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert {"type", "title", "detail"} <= body.keys()
    return body


def assert_invalid(response: httpx2.Response, field: str | None = None) -> list[dict[str, Any]]:
    """A 422 problem whose `errors` entries carry loc, msg and type (one naming `field`)."""
    errors: list[dict[str, Any]] = assert_problem(response, 422, "validation_error")["errors"]
    assert errors
    for error in errors:
        assert {"loc", "msg", "type"} <= error.keys()
    if field is not None:
        assert any(error["loc"][-1] == field for error in errors), errors
    return errors


def history(db: Session) -> list[str]:
    """The stored history actions, oldest first."""
    db.expire_all()
    entries = db.exec(select(TaskHistory).order_by(col(TaskHistory.occurred_at))).all()
    return [entry.action for entry in entries]


def stored_task(db: Session) -> Task:
    db.expire_all()
    return db.exec(select(Task)).one()


def migrations_dir() -> Path:
    return migrate.MIGRATIONS


@pytest.fixture
def fresh_settings(engine: Engine, tmp_path: os.PathLike[str]) -> Iterator[Settings]:
    """Settings for an empty database: a new SQLite file, or a throwaway PostgreSQL database."""
    if engine.dialect.name != "postgresql":
        yield Settings(
            _env_file=None,
            environment="test",
            database_url=f"sqlite:///{tmp_path}/fresh.db",
            jwt_secret=SECRET,
        )
        return
    name = f"todo_h3_migrations_{os.getpid()}"
    admin = engine.execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        url = engine.url.set(database=name).render_as_string(hide_password=False)
        yield Settings(_env_file=None, environment="test", database_url=url, jwt_secret=SECRET)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


T = TypeVar("T")


def inspected(settings: Settings, read: Callable[[Inspector], T]) -> T:
    """What `read` finds in the database of `settings`."""
    engine = create_engine(sync_url(settings.database_url))
    try:
        return read(inspect(engine))
    finally:
        engine.dispose()


def table_names(settings: Settings) -> set[str]:
    return set(inspected(settings, Inspector.get_table_names))


def explain(engine: Engine, statement: Any, values: dict[str, Any], *, as_user: str) -> str:
    """PostgreSQL's plan for `statement` with `values`, compiled and bound as the service
    runs it, in a transaction scoped to `as_user` as the service's are."""

    def explain_instead(*args: Any) -> tuple[str, Any]:
        _connection, _cursor, sql, parameters, _context, _many = args
        return f"EXPLAIN {sql}", parameters

    with engine.begin() as connection:
        connection.execute(text("SELECT set_config('app.user_id', :u, true)"), {"u": as_user})
        event.listen(connection, "before_cursor_execute", explain_instead, retval=True)
        return "\n".join(row[0] for row in connection.execute(statement, values))
