"""The todo-api command: token and openapi, with a configured or a development secret; serve."""

import gc
import json
import logging.config
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from backend import config
from backend.cli import app
from backend.main import serve_app
from tests.conftest import SECRET

runner = CliRunner()


def _clear_caches() -> None:
    config.get_settings.cache_clear()
    config._development_secret.cache_clear()


@pytest.fixture
def workdir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[pytest.MonkeyPatch]:
    """An empty working directory (no `.env`, no development secret) and fresh settings."""
    monkeypatch.chdir(tmp_path)
    for name in ("JWT_SECRET", "BETTER_AUTH_SECRET", "JWT_ISSUER", "JWT_AUDIENCE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ENVIRONMENT", "development")
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/cli.db")
    _clear_caches()
    yield monkeypatch
    _clear_caches()


def _token(*args: str) -> str:
    result = runner.invoke(app, ["token", *args])
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


def test_token_is_accepted_by_the_app(workdir: pytest.MonkeyPatch, client: TestClient) -> None:
    workdir.setenv("JWT_SECRET", SECRET)

    token = _token("alice", "--email", "a@b.c")
    response = client.get("/api/alice/me", headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 200, response.text
    assert (response.json()["id"], response.json()["email"]) == ("alice", "a@b.c")


def test_token_carries_claims_and_ttl(workdir: pytest.MonkeyPatch) -> None:
    workdir.setenv("JWT_SECRET", SECRET)

    token = _token("bob", "--email", "b@example.com", "--name", "Bob", "--ttl", "120")

    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert (claims["sub"], claims["email"], claims["name"]) == ("bob", "b@example.com", "Bob")
    assert claims["exp"] - claims["iat"] == 120


def test_token_with_wrong_secret_is_refused_by_the_app(
    workdir: pytest.MonkeyPatch, client: TestClient
) -> None:
    workdir.setenv("JWT_SECRET", "a-different-secret-of-more-than-32-bytes")

    token = _token("alice")
    response = client.get("/api/alice/me", headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 401
    assert response.json()["code"] == "invalid_token"


def test_openapi_prints_the_document(workdir: pytest.MonkeyPatch) -> None:
    workdir.setenv("JWT_SECRET", SECRET)

    result = runner.invoke(app, ["openapi"])

    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert "/api/{user_id}/tasks" in document["paths"]
    assert "/api/{user_id}/me" in document["paths"]


def test_token_without_secret_creates_development_secret(
    workdir: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret_file = tmp_path / ".todo-api-dev-secret"
    assert not secret_file.exists()

    token = _token("alice")

    assert secret_file.exists()
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    secret = secret_file.read_text().strip()
    assert len(secret.encode()) >= 32
    assert jwt.decode(token, secret, algorithms=["HS256"])["sub"] == "alice"


def test_token_reuses_an_existing_development_secret(
    workdir: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    first = _token("alice")
    secret = (tmp_path / ".todo-api-dev-secret").read_text().strip()
    _clear_caches()

    second = _token("bob")

    assert (tmp_path / ".todo-api-dev-secret").read_text().strip() == secret
    assert jwt.decode(first, secret, algorithms=["HS256"])["sub"] == "alice"
    assert jwt.decode(second, secret, algorithms=["HS256"])["sub"] == "bob"


def test_token_without_user_id_fails(workdir: pytest.MonkeyPatch) -> None:
    workdir.setenv("JWT_SECRET", SECRET)

    result = runner.invoke(app, ["token"])

    assert result.exit_code != 0


@pytest.mark.parametrize(
    "args", [["", "--ttl", "60"], ["alice", "--ttl", "0"], ["alice", "--ttl", "2592001"]]
)
def test_token_the_service_would_refuse_is_not_printed(
    workdir: pytest.MonkeyPatch, args: list[str]
) -> None:
    """An empty subject, or a lifetime outside 1 s to JWT_MAX_LIFETIME_SECONDS (30 days)."""
    workdir.setenv("JWT_SECRET", SECRET)

    result = runner.invoke(app, ["token", *args])

    assert result.exit_code == 2
    assert result.stdout == ""


def test_short_development_secret_is_refused(workdir: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".todo-api-dev-secret").write_text("abc\n")

    result = runner.invoke(app, ["token", "alice"])

    assert result.exit_code == 2
    assert result.stdout == ""
    assert "fewer than 32 bytes" in result.stderr


def test_serve_with_jwks_and_a_cursor_key_writes_no_development_secret(
    workdir: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    workdir.setenv("JWKS_URL", "https://idp.example.com/.well-known/jwks.json")
    workdir.setenv("SECRET_KEY", SECRET)
    workdir.setattr(uvicorn, "run", lambda app, **options: None)
    workdir.setattr(logging.config, "dictConfig", lambda config: None)

    result = runner.invoke(app, ["serve", "--no-migrate"])

    assert result.exit_code == 0, result.output
    assert not (tmp_path / ".todo-api-dev-secret").exists()


def test_serve_runs_each_worker_on_the_app_that_freezes_its_start_up(
    workdir: pytest.MonkeyPatch,
) -> None:
    workdir.setenv("JWT_SECRET", SECRET)
    served: dict[str, Any] = {}
    workdir.setattr(uvicorn, "run", lambda app, **options: served.update(app=app, **options))
    workdir.setattr(logging.config, "dictConfig", lambda config: None)  # this process's logs

    result = runner.invoke(app, ["serve", "--no-migrate", "--workers", "2"])

    assert result.exit_code == 0, result.output
    assert (served["app"], served["factory"], served["workers"]) == (
        "backend.main:serve_app",
        True,
        2,
    )


def test_the_served_app_is_frozen_out_of_full_collections(workdir: pytest.MonkeyPatch) -> None:
    workdir.setenv("JWT_SECRET", SECRET)
    gc.unfreeze()
    try:
        served = serve_app()

        frozen = gc.get_freeze_count()
        assert isinstance(served, FastAPI)
        assert frozen > 50_000  # the imports and the app: routes, models, schemas
        tracked = {id(obj) for generation in range(3) for obj in gc.get_objects(generation)}
        assert id(served.router.routes) not in tracked  # frozen, no longer walked
    finally:
        gc.unfreeze()  # this process goes on building apps


def test_the_served_app_logs_records_without_fields_no_format_shows(
    workdir: pytest.MonkeyPatch,
) -> None:
    workdir.setenv("JWT_SECRET", SECRET)
    for switch in ("_srcfile", "logThreads", "logProcesses", "logMultiprocessing"):
        workdir.setattr(logging, switch, getattr(logging, switch))  # put back afterwards
    gc.unfreeze()
    try:
        serve_app()
    finally:
        gc.unfreeze()

    record = logging.getLogger("todo_api.access").makeRecord(
        "todo_api.access", logging.INFO, "(unknown file)", 0, "GET", (), None
    )
    assert (record.threadName, record.process, record.processName) == (None, None, None)
    assert logging._srcfile is None  # no stack walk for the caller's file and line


@pytest.mark.parametrize("command", [["migrate"], ["serve"], ["seed", "--users", "1"]])
def test_unreachable_database_is_one_line_naming_it_without_its_password(
    workdir: pytest.MonkeyPatch, command: list[str]
) -> None:
    workdir.setenv("JWT_SECRET", SECRET)
    workdir.setenv("DATABASE_URL", "postgresql://todo:hunter2@127.0.0.1:1/todo")
    workdir.setattr(uvicorn, "run", lambda app, **options: None)
    workdir.setattr(logging.config, "dictConfig", lambda config: None)

    result = runner.invoke(app, command)

    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "todo-api: cannot migrate postgresql+psycopg://todo:***@127.0.0.1:1/todo: OperationalError"
    ]
