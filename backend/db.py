"""The async engine, sessions, and the column types both databases share."""

import asyncio
import select
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import pq
from sqlalchemy import Connection, DateTime, Executable, event, orm
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.types import TypeDecorator
from sqlmodel import Session
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.config import Settings


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on both databases (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None or value.tzinfo is not None:
            return value
        return value.replace(tzinfo=UTC)

    def result_processor(self, dialect: Dialect, coltype: object) -> Any:
        # psycopg already returns aware datetimes for `timestamptz` (in the session's UTC).
        if dialect.name == "postgresql":
            return None
        return super().result_processor(dialect, coltype)


LIKE_ESCAPE = "/"


def like_escape(text: str) -> str:
    """`text` to match literally inside a LIKE pattern escaped with `LIKE_ESCAPE`."""
    for special in (LIKE_ESCAPE, "%", "_"):
        text = text.replace(special, LIKE_ESCAPE + special)
    return text


def utcnow() -> datetime:
    return datetime.now(UTC)


def create_engine(settings: Settings) -> AsyncEngine:
    if settings.is_sqlite:
        engine = create_async_engine(settings.database_url, connect_args={"timeout": 15})
        event.listen(engine.sync_engine, "connect", _configure_sqlite)
        return engine
    connect_args: dict[str, Any] = {"connect_timeout": settings.db_connect_timeout_seconds}
    if settings.db_prepared_statements:
        connect_args["options"] = startup_options(settings)
    else:
        connect_args["prepare_threshold"] = None
    # Query parameters of the URL (sslmode, sslrootcert, application_name, ...) reach
    # libpq's conninfo unchanged.
    engine = create_async_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout_seconds,
        connect_args=connect_args,
        # Sessions begin their transactions themselves, with their settings in the same
        # message (`_begin_scoped`): one round trip fewer than psycopg's own BEGIN.
        isolation_level="AUTOCOMMIT",
    )
    event.listen(engine.sync_engine, "checkout", _discard_if_closed_by_server)
    return engine


def _discard_if_closed_by_server(_dbapi: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
    """The pool's liveness check, without a round trip: an idle pooled connection has
    nothing to read, so a readable socket means the server closed it or said goodbye
    (a restart, a failover, an idle timeout, `pg_terminate_backend`). SQLAlchemy then
    replaces it with a fresh connection before the request uses it. `pool_pre_ping`
    would catch the same cases with a `SELECT 1` per request; a server that vanished
    silently is caught by the timeouts and the request deadline instead."""
    connection = record.driver_connection
    try:
        socket = connection.pgconn.socket  # type: ignore[union-attr]
        readable, _, _ = select.select([socket], [], [], 0)
    except (OSError, ValueError, psycopg.OperationalError):
        readable = [True]
    if readable:
        raise DisconnectionError("the server closed this pooled connection")


def session_limits(settings: Settings) -> dict[str, str]:
    """Server-side limits, so that no statement, lock wait or forgotten transaction holds
    a connection for long; the request deadline (middleware) covers a silent server.

    And plans made for the values at hand: psycopg prepares a statement after a few runs,
    and PostgreSQL may then switch to a generic plan, blind to the owner and the search
    text. One plan for a user of 100 tasks and one of 100,000, or for a common word and an
    absent one, is wrong for one of them (optimisation 15 in specs/performance.md); planning
    these small statements again costs far less than that."""
    return {
        "timezone": "UTC",
        "plan_cache_mode": "force_custom_plan",
        "statement_timeout": str(settings.db_statement_timeout_ms),
        "lock_timeout": str(settings.db_lock_timeout_ms),
        "idle_in_transaction_session_timeout": str(settings.db_idle_in_transaction_timeout_ms),
    }


def startup_options(settings: Settings) -> str:
    """`session_limits` as libpq's `options`: set once, when a connection starts."""
    return " ".join(f"-c {name}={value}" for name, value in session_limits(settings).items())


def _unicode_lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    # SQLite's own lower() folds only ASCII; search must fold case as PostgreSQL does.
    dbapi_connection.create_function("lower", 1, _unicode_lower, deterministic=True)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


class ScopedSession(Session):
    """A session that tells PostgreSQL, in every transaction, whose rows it may see."""


ROW_SECURITY = "row_security"
"""Key in `Session.info`: the `app.*` settings row-level security policies read."""
TRANSACTION_LIMITS = "transaction_limits"
"""Key in `Session.info`: the session limits, when they must be set in every transaction."""


@event.listens_for(ScopedSession, "after_begin")
def _begin_scoped(session: Session, _transaction: Any, connection: Connection) -> None:
    """PostgreSQL: begin the transaction with its settings (the row-security `app.*`
    values, and the limits where they go with each transaction) in one message, one round
    trip. The driver is in autocommit (`create_engine`), so no statement runs before this
    `BEGIN`; psycopg's `commit()` and `rollback()`, which SQLAlchemy still calls, end the
    transaction by the server's state."""
    settings = dict(session.info.get(TRANSACTION_LIMITS, {}))
    for name, value in session.info.get(ROW_SECURITY, {}).items():
        settings[f"app.{name}"] = value
    _set_local(connection, settings, begin=True)


def _set_local(connection: Connection, settings: dict[str, str], *, begin: bool = False) -> None:
    """`SET LOCAL` each setting (PostgreSQL; nothing on SQLite), after a `BEGIN` if asked,
    all in one message."""
    if connection.dialect.name != "postgresql" or not (begin or settings):
        return
    quote = _Quoter(connection.connection.driver_connection)
    statements = ["BEGIN"] if begin else []
    statements += (f"SET LOCAL {name} = {quote(value)}" for name, value in settings.items())
    # No parameters: psycopg sends it by the simple protocol, which takes several statements.
    connection.exec_driver_sql("; ".join(statements), execution_options=_NO_PARAMETERS)


_NO_PARAMETERS = {"no_parameters": True}


class _Quoter:
    """A string as a literal for this connection, by libpq's own escaping."""

    def __init__(self, driver: Any) -> None:
        self._escaping = pq.Escaping(driver.pgconn)
        self._encoding: str = driver.info.encoding

    def __call__(self, value: str) -> str:
        if "\x00" in value:  # libpq would cut the literal short at it
            raise ValueError("a setting's value cannot hold NUL")
        return self._escaping.escape_literal(value.encode(self._encoding)).decode(self._encoding)


async def read_rows(
    session: AsyncSession, statement: Executable, params: Mapping[str, Any]
) -> tuple[tuple[str, ...], Sequence[Sequence[Any]]]:
    """The column names and rows of a Core `statement` run on the session's connection in
    its transaction: plain rows, no ORM entities or identity map.

    The connection and the statement in one call into the sync session, where
    `session.connection()` then `execute` were two: each `AsyncSession` call runs in a
    greenlet of its own (`end_session`)."""

    def read(sync_session: orm.Session) -> tuple[tuple[str, ...], Sequence[Sequence[Any]]]:
        result = sync_session.connection().execute(statement, params)
        return tuple(result.keys()), result.all()

    return await session.run_sync(read)


async def end_session(session: AsyncSession, *, commit: bool) -> None:
    """End a request's session: with `COMMIT` first if `commit` (a read that succeeded),
    then closed, which rolls back whatever is left, also when the commit failed.

    For a transaction that wrote nothing `COMMIT` is the same as the `ROLLBACK` of closing,
    but psycopg forgets a connection's prepared statements at every `ROLLBACK`, so only
    this way do the hot reads get prepared (optimisation 9). Both steps are one call into
    the sync session: every `AsyncSession` call runs in a greenlet of its own, whose fresh
    stack costs system calls (optimisation 4 in specs/performance.md)."""

    def end(sync_session: orm.Session) -> None:
        try:
            if commit and sync_session.in_transaction():
                sync_session.commit()
        finally:
            sync_session.close()

    await session.run_sync(end)


async def scope_to(session: AsyncSession, **settings: str) -> None:
    """Scope this and every later transaction of `session` (`user_id=...`), so that the
    database's row-level security shows only those rows even to a query that forgot its
    owner filter. Nothing happens on SQLite, which has no such policies."""
    session.info.setdefault(ROW_SECURITY, {}).update(settings)
    if session.in_transaction():

        def apply(connection: Connection) -> None:
            _set_local(connection, {f"app.{name}": value for name, value in settings.items()})

        await (await session.connection()).run_sync(apply)


async def for_maintenance(connection: AsyncConnection) -> None:
    """Make `connection` fit for maintenance across users (`todo-api prune`): row-level
    security lifted, so that PostgreSQL refuses any statement a policy would still hold
    (a role that is neither a superuser nor `BYPASSRLS` fails loudly instead of finding
    nothing), and no statement timeout. Nothing on SQLite."""
    if connection.dialect.name == "postgresql":
        await connection.exec_driver_sql("SET row_security = off; SET statement_timeout = 0")


async def begin(connection: AsyncConnection) -> None:
    """Begin a transaction on a connection of `create_engine`'s, for writes that must
    land together: on PostgreSQL its driver is in autocommit, where each statement would
    commit on its own; `commit()` then ends it, and closing the connection without one
    rolls it back. Nothing on SQLite, which begins one at the first write."""
    if connection.dialect.name == "postgresql":
        await connection.exec_driver_sql("BEGIN")


_ABANDONED: set["asyncio.Task[Any]"] = set()
"""Tasks given up on by `wait_or_abandon`, kept referenced until they have wound down."""


async def wait_or_abandon(task: "asyncio.Task[Any]", seconds: float) -> bool:
    """Whether `task` (database work) finished within `seconds`; if not, it is cancelled
    and left to wind down in the background.

    For every bound on a driver call: `asyncio.timeout` and `wait_for` wait for the
    cancelled call to end, and psycopg ends a cancelled query by asking the server to
    cancel it and then waiting for it, up to seconds each on a server that answers
    nothing. Whoever awaits the task's result (`task.result()`) sees its error; a task
    given up on logs nothing of its own."""
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if done:
        return True
    if not task.cancelling():  # a second cancel would cut its winding down short
        task.cancel()
    _ABANDONED.add(task)
    task.add_done_callback(_forget)
    return False


def _forget(task: "asyncio.Task[Any]") -> None:
    _ABANDONED.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved: an error after giving up is no news


def create_sessionmaker(
    engine: AsyncEngine, settings: Settings, **info: Any
) -> async_sessionmaker[AsyncSession]:
    """Sessions of `engine`, each with `info` in its `Session.info`."""
    if not settings.is_sqlite and not settings.db_prepared_statements:
        # No start-up options through a transaction pooler: the limits go with each
        # transaction (SET LOCAL), so they never leak into another client's transaction.
        info[TRANSACTION_LIMITS] = session_limits(settings)
    return async_sessionmaker(
        engine,
        class_=AsyncSession,
        sync_session_class=ScopedSession,
        expire_on_commit=False,
        info=info,
    )
