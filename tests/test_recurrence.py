"""Recurring tasks: RFC 5545 rules on the wall clock of a zone; completing one records
that occurrence and moves the same task on to the next (decision 35)."""

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import AuthFactory, Factory, assert_invalid

WEEKLY_PARIS = {"rule": "FREQ=WEEKLY;BYDAY=MO", "tz": "Europe/Paris"}


def entries_of(client: TestClient, auth: AuthFactory, task_id: str) -> list[dict[str, Any]]:
    """The task's history, newest first."""
    response = client.get(f"/api/alice/history?task_id={task_id}", headers=auth())
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def complete(client: TestClient, auth: AuthFactory, task: dict[str, Any], **headers: str) -> Any:
    response = client.patch(f"/api/alice/tasks/{task['id']}/complete", headers=auth() | headers)
    assert response.status_code == 200, response.text
    return response


def test_create_recurring_task_shows_its_rule(
    client: TestClient, auth: AuthFactory, make_task: Factory
) -> None:
    task = make_task(due_at="2027-01-04T08:00:00Z", recurrence=WEEKLY_PARIS)

    fetched = client.get(f"/api/alice/tasks/{task['id']}", headers=auth()).json()
    assert task["recurrence"] == WEEKLY_PARIS | {"from": "due"}
    assert fetched["recurrence"] == task["recurrence"]  # where its series stands is not shown


def test_complete_recurring_task_moves_it_to_its_next_occurrence(
    client: TestClient, auth: AuthFactory, make_task: Factory
) -> None:
    task = make_task(due_at="2027-01-04T08:00:00Z", recurrence=WEEKLY_PARIS)

    moved = complete(client, auth, task).json()

    assert moved["id"] == task["id"]
    assert moved["completed"] is False
    assert moved["completed_at"] is None
    assert moved["due_at"] == "2027-01-11T08:00:00Z"
    assert moved["version"] == task["version"] + 2
    entries = entries_of(client, auth, task["id"])
    assert [entry["action"] for entry in entries][:2] == ["rescheduled", "completed"]
    assert entries[1]["changes"]["occurrence_due_at"] == "2027-01-04T08:00:00Z"
    assert entries[0]["changes"]["due_at"] == {
        "from": "2027-01-04T08:00:00Z",
        "to": "2027-01-11T08:00:00Z",
    }
    tasks = client.get("/api/alice/tasks", headers=auth()).json()["items"]
    assert len(tasks) == 1  # the same task, never another


def test_weekly_completions_for_a_year_keep_the_local_hour(
    client: TestClient, auth: AuthFactory, make_task: Factory
) -> None:
    task = make_task(due_at="2027-01-04T08:00:00Z", recurrence=WEEKLY_PARIS)
    seen = set()
    for _ in range(52):
        task = complete(client, auth, task).json()
        seen.add(task["due_at"][11:16])

    assert task["due_at"] == "2028-01-03T08:00:00Z"
    assert seen == {"08:00", "07:00"}  # 09:00 in Paris, in winter then in summer
