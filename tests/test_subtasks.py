"""Subtasks: a tree of the user's own tasks, at most 5 deep and without cycles; completing
a task completes its open subtasks, deleting it deletes them, each with its history and
feed entry."""

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from tests.conftest import AuthFactory, Factory, assert_invalid, history


def chain(make_task: Factory, length: int) -> list[dict[str, Any]]:
    """`length` tasks, each a subtask of the one before."""
    tasks = [make_task(title="level 1")]
    for level in range(2, length + 1):
        tasks.append(make_task(title=f"level {level}", parent_id=tasks[-1]["id"]))
    return tasks


def feed(client: TestClient, auth: AuthFactory, since: str) -> list[tuple[str, str]]:
    changes = client.get(f"/api/alice/changes?since={since}", headers=auth()).json()["changes"]
    return [(change["id"], change["op"]) for change in changes]


def head(client: TestClient, auth: AuthFactory) -> str:
    return str(client.get("/api/alice/changes", headers=auth()).json()["next_since"])


def test_create_subtask_names_its_parent(
    client: TestClient, auth: AuthFactory, make_task: Factory
) -> None:
    parent = make_task(title="Trip")
    child = make_task(title="Book flights", parent_id=parent["id"])

    fetched = client.get(f"/api/alice/tasks/{child['id']}", headers=auth()).json()
    assert child["parent_id"] == parent["id"]
    assert fetched["parent_id"] == parent["id"]
    assert parent["parent_id"] is None


@pytest.mark.parametrize("owner", ["bob", "nobody"])
def test_parent_that_is_not_one_of_the_callers_tasks_is_422(
    client: TestClient, auth: AuthFactory, make_task: Factory, owner: str
) -> None:
    parent_id = make_task("bob")["id"] if owner == "bob" else "00000000-0000-7000-8000-000000000009"

    response = client.post(
        "/api/alice/tasks", json={"title": "x", "parent_id": parent_id}, headers=auth()
    )

    [error] = assert_invalid(response, "parent_id")
    assert error["type"] == "parent_not_found"


def test_tree_is_at_most_five_deep(
    client: TestClient, auth: AuthFactory, make_task: Factory
) -> None:
    tasks = chain(make_task, 5)
    other = chain(make_task, 2)

    too_deep = client.post(
        "/api/alice/tasks", json={"title": "six", "parent_id": tasks[-1]["id"]}, headers=auth()
    )
    moved = client.patch(
        f"/api/alice/tasks/{other[0]['id']}", json={"parent_id": tasks[3]["id"]}, headers=auth()
    )
    fits = client.patch(
        f"/api/alice/tasks/{other[0]['id']}", json={"parent_id": tasks[2]["id"]}, headers=auth()
    )

    assert [e["type"] for e in assert_invalid(too_deep, "parent_id")] == ["parent_too_deep"]
    assert [e["type"] for e in assert_invalid(moved, "parent_id")] == ["parent_too_deep"]
    assert fits.status_code == 200
    assert fits.json()["parent_id"] == tasks[2]["id"]


def test_a_task_under_itself_or_its_descendant_is_422(
    client: TestClient, auth: AuthFactory, make_task: Factory
) -> None:
    tasks = chain(make_task, 3)
    path = f"/api/alice/tasks/{tasks[0]['id']}"

    itself = client.patch(path, json={"parent_id": tasks[0]["id"]}, headers=auth())
    below = client.patch(path, json={"parent_id": tasks[2]["id"]}, headers=auth())

    assert [e["type"] for e in assert_invalid(itself, "parent_id")] == ["parent_cycle"]
    assert [e["type"] for e in assert_invalid(below, "parent_id")] == ["parent_cycle"]


def test_list_filters_direct_children_or_top_level(
    client: TestClient, auth: AuthFactory, make_task: Factory
) -> None:
    tasks = chain(make_task, 3)
    make_task(title="sibling", parent_id=tasks[0]["id"])

    def titles(query: str) -> list[str]:
        items = client.get(f"/api/alice/tasks?{query}&sort=title", headers=auth()).json()["items"]
        return [task["title"] for task in items]

    assert titles(f"parent_id={tasks[0]['id']}") == ["level 2", "sibling"]
    assert titles("parent_id=none") == ["level 1"]


def test_completing_a_task_completes_its_open_subtasks_each_recorded(
    client: TestClient, auth: AuthFactory, db: Session, make_task: Factory
) -> None:
    tasks = chain(make_task, 3)
    done = make_task(title="done already", parent_id=tasks[0]["id"])
    client.patch(f"/api/alice/tasks/{done['id']}/complete", headers=auth())
    since = head(client, auth)

    client.patch(f"/api/alice/tasks/{tasks[0]['id']}/complete", headers=auth())
    client.patch(f"/api/alice/tasks/{tasks[0]['id']}/incomplete", headers=auth())

    states = {
        t["title"]: (t["completed"], t["version"])
        for t in client.get("/api/alice/tasks", headers=auth()).json()["items"]
    }
    assert states == {
        "level 1": (False, 3),  # reopened: nothing else is
        "level 2": (True, 2),
        "level 3": (True, 2),
        "done already": (True, 2),  # untouched
    }
    assert sorted(feed(client, auth, since)) == sorted((t["id"], "upsert") for t in tasks)
    assert history(db).count("completed") == 4


def test_deleting_a_task_deletes_its_subtasks_each_recorded(
    client: TestClient, auth: AuthFactory, db: Session, make_task: Factory
) -> None:
    tasks = chain(make_task, 4)
    kept = make_task(title="kept")
    since = head(client, auth)

    response = client.delete(f"/api/alice/tasks/{tasks[1]['id']}", headers=auth())

    remaining = [t["title"] for t in client.get("/api/alice/tasks", headers=auth()).json()["items"]]
    assert response.status_code == 204
    assert sorted(remaining) == ["kept", "level 1"]
    assert sorted(feed(client, auth, since)) == sorted((t["id"], "delete") for t in tasks[1:])
    assert history(db).count("deleted") == 3
    assert kept["id"] not in {change for change, _ in feed(client, auth, since)}
