"""Idempotency-Key and the request deadline: a request cut off at any point either
committed its write with its answer, which a retry gets, or wrote nothing, and a retry
writes once (SECURITY-CASES #33, #35); an answer the database fails to store fails the
write with it, and the log names the error's type only (#39)."""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, select

from backend.config import Settings
from backend.idempotency import guard
from backend.idempotency import service as idempotency
from backend.main import create_app
from backend.models import IdempotencyRecord, Task
from tests.conftest import AuthFactory, assert_problem

TASKS = "/api/alice/tasks"
BODY = {"title": "Pay rent"}
DEADLINE = 0.3


@pytest.fixture
def hurried(settings: Settings) -> Iterator[TestClient]:
    """The app with a short request deadline."""
    with TestClient(
        create_app(settings.model_copy(update={"request_deadline_seconds": DEADLINE}))
    ) as client:
        yield client


def _slowed(call: Callable[..., Awaitable[Any]], *, before: bool) -> Callable[..., Awaitable[Any]]:
    """`call`, with a wait past the deadline before or after it."""

    async def slowed(*args: Any, **kwargs: Any) -> Any:
        if before:
            await asyncio.sleep(DEADLINE * 3)
        result = await call(*args, **kwargs)
        if not before:
            await asyncio.sleep(DEADLINE * 3)
        return result

    return slowed


def _stored(db: Session) -> tuple[list[Task], list[IdempotencyRecord]]:
    db.expire_all()
    return list(db.exec(select(Task)).all()), list(db.exec(select(IdempotencyRecord)).all())


def test_create_task_cut_off_after_its_commit_is_replayed_on_retry(
    hurried: TestClient, auth: AuthFactory, db: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    headers = auth("alice") | {"Idempotency-Key": "rent-1"}
    slowed = _slowed(guard._commit_with_answer, before=False)
    monkeypatch.setattr(guard, "_commit_with_answer", slowed)
    first = hurried.post(TASKS, json=BODY, headers=headers)
    monkeypatch.undo()

    retry = hurried.post(TASKS, json=BODY, headers=headers)

    assert_problem(first, 503, "timeout")
    assert retry.status_code == 201, retry.text
    assert retry.headers["idempotent-replayed"] == "true"
    stored, keys = _stored(db)
    assert [str(task.id) for task in stored] == [retry.json()["id"]]
    assert [key.status_code for key in keys] == [201]


def test_create_task_cut_off_before_its_commit_runs_again_on_retry(
    hurried: TestClient, auth: AuthFactory, db: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    headers = auth("alice") | {"Idempotency-Key": "rent-1"}
    slowed = _slowed(guard._commit_with_answer, before=True)
    monkeypatch.setattr(guard, "_commit_with_answer", slowed)
    first = hurried.post(TASKS, json=BODY, headers=headers)
    monkeypatch.undo()

    retry = hurried.post(TASKS, json=BODY, headers=headers)

    assert_problem(first, 503, "timeout")
    assert retry.status_code == 201, retry.text
    assert "idempotent-replayed" not in retry.headers
    stored, keys = _stored(db)
    assert [str(task.id) for task in stored] == [retry.json()["id"]]
    assert [key.status_code for key in keys] == [201]


def test_create_task_whose_answer_the_database_fails_to_store_is_503_and_not_written(
    client: TestClient,
    auth: AuthFactory,
    db: Session,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def failing(*_args: Any, **_kwargs: Any) -> None:
        raise OperationalError(
            "INSERT INTO idempotency_keys ... body=...", {"body": "secret"}, OSError()
        )

    monkeypatch.setattr(idempotency, "store_answer", failing)
    headers = auth("alice") | {"Idempotency-Key": "rent-1"}

    with caplog.at_level(logging.WARNING):
        response = client.post(TASKS, json=BODY, headers=headers)
    monkeypatch.undo()
    retry = client.post(TASKS, json=BODY, headers=headers)

    assert_problem(response, 503, "db_unavailable")
    assert retry.status_code == 201, retry.text
    assert "idempotent-replayed" not in retry.headers
    stored, keys = _stored(db)
    assert [str(task.id) for task in stored] == [retry.json()["id"]]
    assert [key.status_code for key in keys] == [201]
    failures = [r for r in caplog.records if "OperationalError" in r.getMessage()]
    assert [r.getMessage() for r in failures] == [
        "database error answered db_unavailable: OperationalError"
    ]
    assert all(r.exc_info is None for r in failures)
    assert "secret" not in caplog.text
