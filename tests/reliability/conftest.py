"""Fixtures of the reliability tests: a PostgreSQL cluster of their own (stop, start,
restart, freeze), the real service serving on it, and the checks every fault test shares.

They run wherever `initdb` and `pg_ctl` exist; on a PostgreSQL run without them they fail,
on a SQLite run without them they are not collected.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from glob import glob
from pathlib import Path
from typing import Any

import httpx2
import psycopg
import pytest

from backend import migrate
from backend.config import Settings
from tests.conftest import SECRET, free_port, make_token

PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"
DATABASE = "todo_reliability"
DEADLINE_SECONDS = 2.0
"""The service's request deadline in these tests (`REQUEST_DEADLINE_SECONDS`)."""
STATEMENT_TIMEOUT_MS = 1000
SERVER_ENV = {
    "ENVIRONMENT": "test",
    "JWT_SECRET": SECRET,
    "DB_CONNECT_TIMEOUT_SECONDS": "2",
    "DB_POOL_TIMEOUT_SECONDS": "1",
    "DB_STATEMENT_TIMEOUT_MS": str(STATEMENT_TIMEOUT_MS),
    "REQUEST_DEADLINE_SECONDS": str(DEADLINE_SECONDS),
    "RATE_LIMIT_ENABLED": "false",  # these suites send load on purpose; faults are the subject
}


def find_pg_bin() -> Path | None:
    """The newest PostgreSQL `bin` directory holding `initdb` and `pg_ctl`, else PATH's."""

    def version(path: str) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", path))

    for candidate in sorted(glob(PG_BIN_GLOB), key=version, reverse=True):
        if all((Path(candidate) / tool).is_file() for tool in ("initdb", "pg_ctl")):
            return Path(candidate)
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl and (Path(pg_ctl).resolve().parent / "initdb").is_file():
        return Path(pg_ctl).resolve().parent
    return None


def _postgres_run() -> bool:
    return os.environ.get("TEST_DATABASE_URL", "").startswith("postgres")


if find_pg_bin() is None and not _postgres_run():
    # The SQLite run collects these only where they can run; the PostgreSQL run fails.
    collect_ignore_glob = ["test_*.py"]


@dataclass
class Cluster:
    """A PostgreSQL cluster in `root`, on `port`, owned by the tests alone."""

    bin: Path
    root: Path
    port: int
    as_postgres: bool
    frozen: list[int] = field(default_factory=list)

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{DATABASE}"

    def pg(self, tool: str, *args: str) -> str:
        command = [str(self.bin / tool), *args]
        if self.as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(  # noqa: S603  (fixed tools, arguments of ours)
            command, cwd=self.root, capture_output=True, text=True, timeout=60, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"{tool} {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
        return done.stdout

    def start(self) -> float:
        """Start and wait until it accepts connections; when that was (monotonic)."""
        self.pg("pg_ctl", "-D", str(self.data), "-l", str(self.root / "postgres.log"), "-w",
                "-t", "30", "start")  # fmt: skip
        return time.monotonic()

    def stop(self, mode: str = "fast") -> None:
        self.pg("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop")

    def restart(self) -> float:
        """Restart (fast shutdown) and wait until it accepts connections; when that was."""
        self.pg("pg_ctl", "-D", str(self.data), "-l", str(self.root / "postgres.log"), "-m",
                "fast", "-w", "-t", "30", "restart")  # fmt: skip
        return time.monotonic()

    def postmaster_pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def _processes(self) -> list[int]:
        """The postmaster and its children (backends, checkpointer, ...), postmaster first."""
        postmaster = self.postmaster_pid()
        children = []
        for stat in glob("/proc/[0-9]*/stat"):
            with suppress(OSError):
                # The command name, in parentheses, may hold spaces: the ppid follows its end.
                fields = Path(stat).read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == postmaster:
                    children.append(int(Path(stat).parent.name))
        return [postmaster, *children]

    def freeze(self) -> None:
        """SIGSTOP this cluster's processes: alive, connectable by TCP, answering nothing."""
        os.kill(self.postmaster_pid(), signal.SIGSTOP)  # first: it forks no new backend
        for pid in self._processes():
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
            self.frozen.append(pid)

    def thaw(self) -> None:
        """SIGCONT what was frozen (a no-op for processes that are not stopped)."""
        for pid in {*self.frozen, *(self._processes() if self.running() else [])}:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        self.frozen.clear()

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def connect(self) -> psycopg.Connection[tuple[Any, ...]]:
        """A direct connection, for holding locks and reading what is stored."""
        return psycopg.connect(self.url, autocommit=True, connect_timeout=3)


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    pg_bin = find_pg_bin()
    if pg_bin is None:
        pytest.fail(
            "the reliability tests start their own PostgreSQL cluster and need initdb and "
            f"pg_ctl (looked in {PG_BIN_GLOB} and on PATH); install PostgreSQL's server package",
            pytrace=False,
        )
    as_postgres = os.geteuid() == 0  # PostgreSQL refuses to run as root
    root = Path(tempfile.mkdtemp(prefix="todo-reliability-"))
    sockets = root / "run"
    sockets.mkdir()
    if as_postgres:
        shutil.chown(root, "postgres", "postgres")
        shutil.chown(sockets, "postgres", "postgres")
    made = Cluster(pg_bin, root, free_port(), as_postgres)
    try:
        made.pg("initdb", "-D", str(made.data), "-U", "postgres", "-A", "trust", "--no-sync",
                "--no-instructions")  # fmt: skip
        with (made.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"port = {made.port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{sockets}'\nfsync = off\n"
            )  # fsync: the machine does not crash here; PostgreSQL's own shutdowns lose nothing
        made.start()
        admin = made.url.rsplit("/", 1)[0] + "/postgres"
        with psycopg.connect(admin, autocommit=True, connect_timeout=3) as connection:
            connection.execute(f'CREATE DATABASE "{DATABASE}"')
        migrate.upgrade(
            Settings(_env_file=None, environment="test", database_url=made.url, jwt_secret=SECRET)
        )
        yield made
    finally:
        with suppress(Exception):
            made.thaw()
        with suppress(Exception):
            if made.running():
                made.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class Server:
    """The service, served by `todo-api serve` in a process of its own."""

    url: str
    log: Path
    tokens: set[str] = field(default_factory=set)

    def headers(self, user: str) -> dict[str, str]:
        token = make_token(user)
        self.tokens.add(token)
        return {"Authorization": f"Bearer {token}"}

    def log_mark(self) -> int:
        return self.log.stat().st_size

    def log_since(self, mark: int) -> str:
        with self.log.open("rb") as log:
            log.seek(mark)
            return log.read().decode(errors="replace")


@contextmanager
def serve(cluster: Cluster, **settings: str) -> Iterator[Server]:
    """`todo-api serve --no-migrate` on a free port, its output in a log file."""
    executable = Path(sys.executable).parent / "todo-api"
    workdir = Path(tempfile.mkdtemp(prefix="todo-reliability-serve-"))
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(workdir),
        "PYTHONUNBUFFERED": "1",
        "DATABASE_URL": cluster.url,
        **SERVER_ENV,
        **settings,
    }
    server = Server(f"http://127.0.0.1:{port}", workdir / "server.log")
    with server.log.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603
            [str(executable), "serve", "--no-migrate", "--port", str(port)],
            cwd=workdir,  # no `.env` but ours
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_healthy(server, process)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def _wait_healthy(server: Server, process: subprocess.Popen[bytes]) -> None:
    give_up = time.monotonic() + 30
    while time.monotonic() < give_up:
        if process.poll() is not None:
            pytest.fail(f"todo-api serve exited:\n{server.log_since(0)}", pytrace=False)
        with suppress(httpx2.TransportError):
            if httpx2.get(f"{server.url}/healthz", timeout=1).status_code == 200:
                return
        time.sleep(0.05)
    pytest.fail(f"todo-api serve did not answer /healthz:\n{server.log_since(0)}", pytrace=False)


@pytest.fixture(scope="session")
def server(cluster: Cluster) -> Iterator[Server]:
    """The service with its default pool (10 + 10) and short timeouts."""
    with serve(cluster) as running:
        yield running


@pytest.fixture(scope="session")
def narrow_server(cluster: Cluster) -> Iterator[Server]:
    """The service with a pool of one connection: a request that waits holds it."""
    with serve(cluster, DB_POOL_SIZE="1", DB_MAX_OVERFLOW="0") as running:
        yield running


@pytest.fixture
def healthy(cluster: Cluster) -> Iterator[Cluster]:
    """The cluster, left running and thawed for the next test whatever this one does."""
    try:
        yield cluster
    finally:
        cluster.thaw()
        if not cluster.running():
            cluster.start()


def is_unavailable(response: httpx2.Response) -> bool:
    """A 503 problem the service means: `db_unavailable` or `timeout`, with `Retry-After`."""
    if response.status_code != 503 or "retry-after" not in response.headers:
        return False
    try:
        return response.json().get("code") in {"db_unavailable", "timeout"}
    except ValueError:
        return False


def describe(response: httpx2.Response) -> str:
    return f"{response.status_code} {response.headers.get('retry-after')!r} {response.text[:200]}"


LEAKS = {
    "a traceback": re.compile(r'Traceback|File "'),
    "SQL text": re.compile(
        r"\bSELECT\b.*\bFROM\b|\bINSERT\b.*\bINTO\b|\bUPDATE\b.*\bSET\b|\bDELETE\b.*\bFROM\b"
        r"|\[SQL: |\[parameters: "
    ),
    "a DSN": re.compile(r"postgres(?:ql)?(?:\+\w+)?://|password", re.IGNORECASE),
}


def leaks(text: str, secrets: Iterable[str]) -> list[str]:
    """The lines of `text` holding a trace, SQL, a DSN, or one of `secrets`."""
    found = []
    for line in text.splitlines():
        for what, pattern in LEAKS.items():
            if pattern.search(line):
                found.append(f"{what}: {line[:200]}")
        if any(secret in line for secret in secrets):
            found.append(f"a secret or token fragment: {line[:120]}...")
    return found


def assert_no_leaks(server: Server, log_mark: int, bodies: Iterable[str]) -> None:
    """Case 39: no response body and no log line since `log_mark` gives anything away."""
    secrets = {SECRET, *(token.rsplit(".", 1)[1] for token in server.tokens)}
    in_bodies = leaks("\n".join(bodies), secrets)
    in_log = leaks(server.log_since(log_mark), secrets)
    assert not in_bodies, f"response bodies leak: {in_bodies[:5]}"
    assert not in_log, f"the server log leaks: {in_log[:5]}"


def report(figures: str) -> str:
    """Print measured figures (seen with -s or on failure) and return them for messages."""
    print(f"\n[reliability] {figures}")
    return figures


@dataclass
class Outcome:
    """One request as the client saw it: when it started and ended, and its answer."""

    started: float
    ended: float
    response: httpx2.Response | None = None
    error: str | None = None

    @property
    def elapsed(self) -> float:
        return self.ended - self.started


async def timed(client: httpx2.AsyncClient, method: str, url: str, **kwargs: Any) -> Outcome:
    started = time.monotonic()
    try:
        response = await client.request(method, url, **kwargs)
    except httpx2.TransportError as exc:
        return Outcome(started, time.monotonic(), error=type(exc).__name__)
    return Outcome(started, time.monotonic(), response)


def stored_tasks(cluster: Cluster, user: str) -> dict[str, str]:
    """The user's tasks as stored: id to title."""
    with cluster.connect() as connection:
        rows = connection.execute(
            "SELECT id::text, title FROM tasks WHERE user_id = %s", [user]
        ).fetchall()
    return {str(task_id): str(title) for task_id, title in rows}


def created_entries(cluster: Cluster, user: str) -> dict[str, tuple[str, int]]:
    """The user's `created` history entries: task id to (title, how many)."""
    with cluster.connect() as connection:
        rows = connection.execute(
            "SELECT task_id::text, min(title), count(*) FROM task_history"
            " WHERE user_id = %s AND action = 'created' GROUP BY task_id",
            [user],
        ).fetchall()
    return {task_id: (title, count) for task_id, title, count in rows}
