"""A server process killed (SIGKILL) right before or right after a keyed write's
`COMMIT`: the retry, served by a new process, gets the first answer or writes once."""

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx2
import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from backend.config import Settings
from backend.models import IdempotencyRecord, Task, TaskHistory
from tests.conftest import SECRET, AuthFactory, free_port

TASKS = "/api/alice/tasks"
BODY = {"title": "Pay rent"}
SERVE = """
import os, signal, sys

import uvicorn

from backend.idempotency import guard
from backend.main import create_app

commit_with_answer = guard._commit_with_answer


async def killed(session, key, held):
    if sys.argv[2] == "before":
        os.kill(os.getpid(), signal.SIGKILL)
    answer = await commit_with_answer(session, key, held)
    os.kill(os.getpid(), signal.SIGKILL)
    return answer


guard._commit_with_answer = killed
uvicorn.run(create_app(), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""
"""`todo-api` whose process kills itself at one point of a keyed write."""


@contextmanager
def doomed_server(settings: Settings, when: str, log: Path) -> Iterator[str]:
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DATABASE_URL": settings.database_url,
        "JWT_SECRET": SECRET,
        "ENVIRONMENT": "test",
        "RATE_LIMIT_ENABLED": "false",
    }
    with log.open("wb") as output:
        process = subprocess.Popen(  # noqa: S603
            [sys.executable, "-c", SERVE, str(port), when], env=env, stderr=output
        )
    url = f"http://127.0.0.1:{port}"
    try:
        give_up = time.monotonic() + 30
        while time.monotonic() < give_up:
            with suppress(httpx2.TransportError):
                if httpx2.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            assert process.poll() is None, log.read_text()
            time.sleep(0.05)
        yield url
    finally:
        process.kill()
        process.wait()


def _stored(db: Session) -> tuple[list[Task], list[IdempotencyRecord], list[str]]:
    db.expire_all()
    tasks = list(db.exec(select(Task)).all())
    keys = list(db.exec(select(IdempotencyRecord)).all())
    return tasks, keys, [entry.action for entry in db.exec(select(TaskHistory))]


@pytest.mark.parametrize("when", ["before", "after"])
def test_create_task_killed_around_its_commit_is_written_once(
    settings: Settings,
    client: TestClient,
    auth: AuthFactory,
    db: Session,
    tmp_path: Path,
    when: str,
) -> None:
    headers = auth("alice") | {"Idempotency-Key": "rent-1"}
    assert client.get("/api/alice/me", headers=headers).status_code == 200  # alice exists

    with (
        doomed_server(settings, when, tmp_path / "server.log") as url,
        pytest.raises(httpx2.TransportError),
    ):
        httpx2.post(f"{url}{TASKS}", json=BODY, headers=headers, timeout=10)
    written, _, _ = _stored(db)
    retry = client.post(TASKS, json=BODY, headers=headers)

    assert retry.status_code == 201, retry.text
    assert len(written) == (1 if when == "after" else 0)
    replayed = retry.headers.get("idempotent-replayed")
    assert replayed == ("true" if when == "after" else None)
    tasks, keys, history = _stored(db)
    assert [str(task.id) for task in tasks] == [retry.json()["id"]]
    assert [(key.key, key.status_code, key.body) for key in keys] == [("rent-1", 201, retry.text)]
    assert history == ["created"]
