"""Behind PgBouncer in transaction mode (as Neon's pooled endpoint): real traffic works with
`DB_PREPARED_STATEMENTS=false`, and both ways it breaks otherwise. PostgreSQL only."""

import asyncio
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import LiteralString

import httpx
import psycopg
import pytest
from sqlalchemy import func
from sqlalchemy.engine import make_url
from sqlmodel import Session, select

from backend import db
from backend.config import Settings
from backend.main import create_app
from backend.models import Task
from tests.conftest import AuthFactory, free_port

SERVER_CONNECTIONS = 2
APP_CONNECTIONS = 4
"""More client connections than server connections: transactions of different client
connections take turns on the same server connection, as on a busy managed pooler."""
USERS = [f"pooled-{index}" for index in range(6)]
ROUNDS = 8
"""More than psycopg's default prepare threshold (5): the same statements would be prepared."""


@pytest.fixture(scope="module")
def pgbouncer(
    settings: Settings, engine: object, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A PgBouncer of this test's own, in transaction mode, in front of the test database;
    yields the URL to reach the same database through it."""
    binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not Path(binary).exists():
        pytest.fail("pgbouncer is not installed: apt-get install -y pgbouncer (.ci/run does)")
    target = make_url(settings.database_url)
    port = free_port()
    folder = tmp_path_factory.mktemp("pgbouncer")
    folder.chmod(0o755)  # readable by `nobody`, whom PgBouncer becomes when started as root
    server = " ".join(
        f"{name}={value}"
        for name, value in {
            "host": target.host or "127.0.0.1",
            "port": target.port or 5432,
            "user": target.username,
            "password": target.password,
            "dbname": target.database,
        }.items()
        if value is not None
    )
    (folder / "users.txt").write_text(f'"{target.username}" ""\n')
    (folder / "pgbouncer.ini").write_text(
        f"[databases]\n{target.database} = {server}\n\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {folder / 'users.txt'}\n"
        f"pool_mode = transaction\ndefault_pool_size = {SERVER_CONNECTIONS}\n"
        "max_client_conn = 200\n"
    )
    for path in folder.iterdir():
        path.chmod(0o644)
    command = [binary, str(folder / "pgbouncer.ini")]
    if os.geteuid() == 0:
        command[1:1] = ["-u", "nobody"]
    log = folder / "output.log"
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=output)  # noqa: S603
    url = target.set(host="127.0.0.1", port=port, password=None)
    plain = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with pytest.MonkeyPatch.context() as environment:
        # libpq sends PGOPTIONS as start-up options, which the pooler refuses.
        environment.delenv("PGOPTIONS", raising=False)
        try:
            _wait_until_up(plain, process, log)
            yield url.render_as_string(hide_password=False)
        finally:
            process.terminate()
            process.wait(timeout=10)


def _wait_until_up(url: str, process: "subprocess.Popen[bytes]", log: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"pgbouncer exited: {log.read_text()}")
        try:
            psycopg.connect(url, connect_timeout=2).close()
        except psycopg.OperationalError:
            time.sleep(0.1)
        else:
            return
    pytest.fail("pgbouncer did not start listening")


def _pooled_settings(settings: Settings, url: str, *, prepared: bool) -> Settings:
    return Settings(
        _env_file=None,
        environment="test",
        database_url=url,
        jwt_secret=settings.jwt_secret,
        db_prepared_statements=prepared,
        db_pool_size=APP_CONNECTIONS,
        db_max_overflow=0,
    )


def test_api_works_through_a_transaction_pooler_without_prepared_statements(
    settings: Settings, pgbouncer: str, db: Session, auth: AuthFactory
) -> None:
    app = create_app(_pooled_settings(settings, pgbouncer, prepared=False))

    async def session_of(user: str, client: httpx.AsyncClient) -> list[int]:
        headers = auth(user)
        statuses = []
        for round_ in range(ROUNDS):
            created = await client.post(
                f"/api/{user}/tasks", json={"title": f"Task {round_}"}, headers=headers
            )
            path = f"/api/{user}/tasks/{created.json()['id']}"
            answers = [
                created,
                await client.patch(f"{path}/complete", headers=headers),
                await client.get(f"{path}/history", headers=headers),
                await client.get(f"/api/{user}/tasks?limit=3", headers=headers),
            ]
            statuses += [answer.status_code for answer in answers]
        statuses.append(
            (await client.get(f"/api/{user}/stats/weekly", headers=headers)).status_code
        )
        return statuses

    async def traffic() -> list[list[int]]:
        """Concurrent requests, so that client connections take turns on server connections."""
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://pooled") as client,
        ):
            return await asyncio.gather(*(session_of(user, client) for user in USERS))

    results = asyncio.run(traffic())

    assert {status for statuses in results for status in statuses} == {200, 201}
    stored = db.exec(select(func.count()).select_from(Task).where(Task.completed)).one()
    assert stored == len(USERS) * ROUNDS


def test_limits_hold_in_each_transaction_and_do_not_leak(
    settings: Settings, pgbouncer: str
) -> None:
    pooled = _pooled_settings(settings, pgbouncer, prepared=False)

    async def in_a_transaction() -> str:
        engine = db.create_engine(pooled)
        try:
            async with db.create_sessionmaker(engine, pooled)() as session:
                timeout = func.current_setting("statement_timeout")
                return str((await session.exec(select(timeout))).one())
        finally:
            await engine.dispose()

    assert asyncio.run(in_a_transaction()) == "5s"
    plain = make_url(pgbouncer).set(drivername="postgresql").render_as_string(False)
    with psycopg.connect(plain, autocommit=True) as other_client:
        leaked = [other_client.execute("SHOW statement_timeout").fetchone() for _ in range(4)]
    assert leaked == [("0",)] * 4


def test_prepared_statements_collide_behind_a_transaction_pooler(pgbouncer: str) -> None:
    """Why the setting exists: psycopg prepares a statement run five times on a connection;
    the pooler gives the next client the same server connection, holding `_pg3_0` already."""
    plain = make_url(pgbouncer).set(drivername="postgresql").render_as_string(False)
    first = psycopg.connect(plain, autocommit=True)
    second = psycopg.connect(plain, autocommit=True)
    try:
        _repeat(first, "SELECT %s::int")
        with pytest.raises(psycopg.errors.DuplicatePreparedStatement):
            _repeat(second, "SELECT %s::int")
    finally:
        first.close()
        second.close()


def _repeat(connection: psycopg.Connection[tuple[int]], query: LiteralString) -> None:
    for round_ in range(ROUNDS):
        connection.execute(query, (round_,)).fetchone()


def test_start_up_options_are_refused_by_a_transaction_pooler(
    settings: Settings, pgbouncer: str
) -> None:
    """The other reason: the limits as start-up options are refused by PgBouncer."""
    pooled = _pooled_settings(settings, pgbouncer, prepared=True)

    async def connect() -> None:
        engine = db.create_engine(pooled)
        try:
            async with engine.connect():
                pass
        finally:
            await engine.dispose()

    with pytest.raises(Exception, match="unsupported startup parameter"):
        asyncio.run(connect())
