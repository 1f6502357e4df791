"""Tasks: writes that lost a race to another writer, retried or refused."""

from uuid import UUID

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.models import Task, TaskPublic
from backend.tasks import service as tasks_service
from tests.conftest import AuthFactory, Factory, assert_problem, history, stored_task


@pytest.fixture
def lost_race(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The first locked read answers a version another writer has since replaced, as if
    it had written between the read and the write-back; later reads are current. The
    versions the write read, in order."""
    get_task = tasks_service.get_task
    versions: list[int] = []

    async def stale_first(
        session: AsyncSession, *, user_id: str, task_id: UUID, for_update: bool = False
    ) -> TaskPublic:
        current = await get_task(session, user_id=user_id, task_id=task_id, for_update=for_update)
        if not for_update:
            return current
        if not versions:
            current = current.model_copy(update={"version": current.version - 1})
        versions.append(current.version)
        return current

    monkeypatch.setattr(tasks_service, "get_task", stale_first)
    return versions


def test_update_task_that_lost_a_race_is_applied_to_the_current_row(
    client: TestClient,
    auth: AuthFactory,
    make_task: Factory,
    db: Session,
    lost_race: list[int],
) -> None:
    task = make_task(title="Before")

    response = client.patch(
        f"/api/alice/tasks/{task['id']}", json={"title": "After"}, headers=auth("alice")
    )

    assert response.status_code == 200, response.text
    assert (response.json()["title"], response.json()["version"]) == ("After", 2)
    assert lost_race == [0, 1]  # the stale write changed nothing; the second applied
    assert (stored_task(db).title, stored_task(db).version) == ("After", 2)
    assert history(db) == ["created", "updated"]


def test_conditional_update_that_lost_a_race_is_412_and_writes_nothing(
    client: TestClient,
    auth: AuthFactory,
    make_task: Factory,
    db: Session,
    lost_race: list[int],
) -> None:
    task = make_task(title="Before")

    response = client.patch(
        f"/api/alice/tasks/{task['id']}",
        json={"title": "After"},
        headers=auth("alice") | {"If-Match": '"0"'},  # the version the stale read shows
    )

    assert_problem(response, 412, "precondition_failed")
    assert response.headers["ETag"] == '"1"'
    assert lost_race == [0]
    assert (stored_task(db).title, stored_task(db).version) == ("Before", 1)
    assert history(db) == ["created"]


def test_delete_task_that_lost_a_race_deletes_the_current_row_once(
    client: TestClient,
    auth: AuthFactory,
    make_task: Factory,
    db: Session,
    lost_race: list[int],
) -> None:
    task = make_task(title="Going")

    response = client.delete(f"/api/alice/tasks/{task['id']}", headers=auth("alice"))

    assert response.status_code == 204, response.text
    assert lost_race == [0, 1]
    assert db.exec(select(Task)).all() == []
    assert history(db) == ["created", "deleted"]
