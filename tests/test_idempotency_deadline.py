"""Idempotency-Key and the request deadline: a request cut off at any point is settled, and
its retry never writes a second time (SECURITY-CASES #33, #35); a settle the database
fails leaves the answer and the logs whole (#39)."""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, select

from backend.config import Settings
from backend.idempotency import service as idempotency
from backend.main import create_app
from backend.models import IdempotencyRecord, Task
from backend.unit_of_work import UnitOfWork
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


def test_create_task_cut_off_after_its_commit_is_not_written_again(
    hurried: TestClient, auth: AuthFactory, db: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    headers = auth("alice") | {"Idempotency-Key": "rent-1"}
    monkeypatch.setattr(UnitOfWork, "commit", _slowed(UnitOfWork.commit, before=False))
    first = hurried.post(TASKS, json=BODY, headers=headers)
    monkeypatch.undo()

    retry = hurried.post(TASKS, json=BODY, headers=headers)

    assert_problem(first, 503, "timeout")
    body = assert_problem(retry, 409, "conflict")
    assert "may have been stored" in body["detail"]
    assert retry.headers["idempotent-replayed"] == "true"
    stored, keys = _stored(db)
    assert [task.title for task in stored] == ["Pay rent"]
    assert [key.status_code for key in keys] == [409]


def test_create_task_cut_off_before_its_commit_runs_again_on_retry(
    hurried: TestClient, auth: AuthFactory, db: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    headers = auth("alice") | {"Idempotency-Key": "rent-1"}
    monkeypatch.setattr(UnitOfWork, "commit", _slowed(UnitOfWork.commit, before=True))
    first = hurried.post(TASKS, json=BODY, headers=headers)
    monkeypatch.undo()

    retry = hurried.post(TASKS, json=BODY, headers=headers)

    assert_problem(first, 503, "timeout")
    assert retry.status_code == 201, retry.text
    assert "idempotent-replayed" not in retry.headers
    stored, keys = _stored(db)
    assert [str(task.id) for task in stored] == [retry.json()["id"]]
    assert [key.status_code for key in keys] == [201]


def test_create_task_cut_off_while_its_answer_is_recorded_is_replayed(
    hurried: TestClient, auth: AuthFactory, db: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    headers = auth("alice") | {"Idempotency-Key": "rent-1"}
    monkeypatch.setattr(
        idempotency, "record_response", _slowed(idempotency.record_response, before=True)
    )
    first = hurried.post(TASKS, json=BODY, headers=headers)
    monkeypatch.undo()

    retry = hurried.post(TASKS, json=BODY, headers=headers)

    assert_problem(first, 503, "timeout")
    assert retry.status_code == 201, retry.text
    assert retry.headers["idempotent-replayed"] == "true"
    stored, keys = _stored(db)
    assert [str(task.id) for task in stored] == [retry.json()["id"]]
    assert [key.status_code for key in keys] == [201]


def test_create_task_whose_settle_the_database_fails_still_answers_and_logs_no_sql(
    client: TestClient,
    auth: AuthFactory,
    db: Session,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def failing(*_args: Any, **_kwargs: Any) -> None:
        raise OperationalError(
            "UPDATE idempotency_keys SET body=...", {"body": "secret"}, OSError()
        )

    monkeypatch.setattr(idempotency, "record_response", failing)
    headers = auth("alice") | {"Idempotency-Key": "rent-1"}

    with caplog.at_level(logging.WARNING):
        response = client.post(TASKS, json=BODY, headers=headers)

    assert response.status_code == 201, response.text
    stored, keys = _stored(db)
    assert [str(task.id) for task in stored] == [response.json()["id"]]
    assert [key.status_code for key in keys] == [None]  # claimed until it expires
    settles = [r for r in caplog.records if "Idempotency-Key" in r.getMessage()]
    assert [r.getMessage() for r in settles] == [
        "could not settle an Idempotency-Key claim: OperationalError"
    ]
    assert all(r.exc_info is None for r in settles)
