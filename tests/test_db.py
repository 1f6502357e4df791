"""The engine's connection parameters: the URL's libpq options, prepared statements, limits."""

import asyncio
from typing import Any

import psycopg
import pytest
from sqlalchemy import event

from backend import db
from backend.config import Settings

MANAGED_URL = (
    "postgresql://todo:secret@ep-example-pooler.eu-central-1.aws.neon.tech/todo"
    "?sslmode=require&sslrootcert=system&application_name=todo-api&channel_binding=require"
)


PSYCOPG_OWN = {"autocommit", "prepare_threshold", "context", "row_factory", "cursor_factory"}
"""The arguments of psycopg's `connect` that are not libpq connection parameters."""


class Captured(Exception):
    """Stops the connection attempt once the driver's parameters are known."""


def _connect_parameters(**config: Any) -> dict[str, Any]:
    """The keyword arguments the engine hands to psycopg's `AsyncConnection.connect`."""
    settings = Settings(_env_file=None, environment="test", **config)
    engine = db.create_engine(settings)
    captured: dict[str, Any] = {}

    @event.listens_for(engine.sync_engine, "do_connect")
    def capture(_dialect: Any, _record: Any, _args: Any, params: dict[str, Any]) -> None:
        captured.update(params)
        raise Captured

    async def connect() -> None:
        try:
            async with engine.connect():
                pass
        finally:
            await engine.dispose()

    with pytest.raises(Captured):
        asyncio.run(connect())
    return captured


def _conninfo(params: dict[str, Any]) -> dict[str, Any]:
    """What libpq receives: psycopg keeps its own arguments and builds a conninfo of the rest."""
    libpq = {name: value for name, value in params.items() if name not in PSYCOPG_OWN}
    return psycopg.conninfo.conninfo_to_dict(psycopg.conninfo.make_conninfo("", **libpq))


def test_url_query_parameters_reach_the_conninfo() -> None:
    conninfo = _conninfo(_connect_parameters(database_url=MANAGED_URL))

    assert conninfo["host"] == "ep-example-pooler.eu-central-1.aws.neon.tech"
    assert conninfo["dbname"] == "todo"
    assert conninfo["user"] == "todo"
    assert conninfo["sslmode"] == "require"
    assert conninfo["sslrootcert"] == "system"
    assert conninfo["channel_binding"] == "require"
    assert conninfo["application_name"] == "todo-api"
    assert conninfo["connect_timeout"] == "2"


def test_postgres_scheme_from_a_provider_keeps_its_query() -> None:
    url = "postgres://todo:secret@db.example:6543/todo?sslmode=verify-full"

    conninfo = _conninfo(_connect_parameters(database_url=url))

    assert (conninfo["port"], conninfo["sslmode"]) == ("6543", "verify-full")


def test_limits_are_start_up_options_by_default() -> None:
    params = _connect_parameters(database_url=MANAGED_URL)

    assert "prepare_threshold" not in params
    assert params["options"] == (
        "-c timezone=UTC -c plan_cache_mode=force_custom_plan -c statement_timeout=5000 "
        "-c lock_timeout=2000 -c idle_in_transaction_session_timeout=10000"
    )


def test_prepared_statements_off_sends_no_start_up_options() -> None:
    params = _connect_parameters(database_url=MANAGED_URL, db_prepared_statements=False)

    assert params["prepare_threshold"] is None
    assert "options" not in params
    assert _conninfo(params)["sslmode"] == "require"


def test_prepared_statements_off_moves_the_limits_into_each_transaction() -> None:
    settings = Settings(
        _env_file=None, environment="test", database_url=MANAGED_URL, db_prepared_statements=False
    )
    engine = db.create_engine(settings)

    sessions = db.create_sessionmaker(engine, settings)

    assert sessions.kw["info"][db.TRANSACTION_LIMITS] == {
        "timezone": "UTC",
        "plan_cache_mode": "force_custom_plan",
        "statement_timeout": "5000",
        "lock_timeout": "2000",
        "idle_in_transaction_session_timeout": "10000",
    }
    asyncio.run(engine.dispose())


def test_prepared_statements_setting_reads_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DB_PREPARED_STATEMENTS", "false")

    assert Settings(_env_file=None, environment="test").db_prepared_statements is False
