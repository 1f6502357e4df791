"""Tags: named on tasks (created on first use, one per key), listed, renamed and deleted
with every task that carries them, and filtered on."""

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlmodel import Session

from backend.tags import service as tags_service
from tests.conftest import AuthFactory, Factory, assert_invalid, assert_problem, history


def tag_names(client: TestClient, auth: AuthFactory, user: str = "alice") -> list[str]:
    return [
        tag["name"] for tag in client.get(f"/api/{user}/tags", headers=auth(user)).json()["items"]
    ]


def tag_id(client: TestClient, auth: AuthFactory, name: str) -> str:
    [found] = [
        t
        for t in client.get("/api/alice/tags", headers=auth()).json()["items"]
        if t["name"] == name
    ]
    return str(found["id"])


def titles(client: TestClient, auth: AuthFactory, query: str) -> list[str]:
    response = client.get(f"/api/alice/tasks?{query}&sort=title", headers=auth())
    assert response.status_code == 200, response.text
    return [task["title"] for task in response.json()["items"]]


def test_create_task_with_tags_names_them_once_each_in_order(
    client: TestClient, auth: AuthFactory, make_task: Factory
) -> None:
    first = make_task(tags=["Work", "urgent", " home "])
    second = make_task(tags=["WORK", "Cafe\u0301", "café", "errands"])

    assert first["tags"] == ["home", "urgent", "Work"]
    assert second["tags"] == ["Cafe\u0301", "errands", "Work"]  # an existing tag's spelling
    assert tag_names(client, auth) == ["Cafe\u0301", "errands", "home", "urgent", "Work"]
    fetched = client.get(f"/api/alice/tasks/{second['id']}", headers=auth()).json()
    assert fetched["tags"] == second["tags"]


@pytest.mark.parametrize(
    "tags",
    [
        [""],
        ["   "],
        ["x" * 51],
        ["bad\nname"],
        ["\ufdfa" * 20],  # 20 characters, 360 once normalised
        [f"t{n}" for n in range(21)],
        "not a list",
    ],
)
def test_create_task_refuses_tags_that_are_not_valid(
    client: TestClient, auth: AuthFactory, db: Session, tags: Any
) -> None:
    response = client.post("/api/alice/tasks", json={"title": "x", "tags": tags}, headers=auth())

    assert_invalid(response)
    assert db.exec(text("SELECT count(*) FROM tags")).one()[0] == 0  # type: ignore[call-overload]


def test_tags_past_the_users_limit_are_422(
    client: TestClient, auth: AuthFactory, make_task: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tags_service, "MAX_TAGS_PER_USER", 3)
    make_task(tags=["a", "b"])

    refused = client.post(
        "/api/alice/tasks", json={"title": "x", "tags": ["c", "d"]}, headers=auth()
    )
    reused = client.post(
        "/api/alice/tasks", json={"title": "y", "tags": ["A", "c"]}, headers=auth()
    )

    [error] = assert_invalid(refused, "tags")
    assert error["type"] == "tags_too_many"
    assert reused.status_code == 201


def test_update_task_tags_replaces_the_set_and_records_it(
    client: TestClient, auth: AuthFactory, db: Session, make_task: Factory
) -> None:
    task = make_task(tags=["a", "b"])
    path = f"/api/alice/tasks/{task['id']}"

    untouched = client.patch(path, json={"title": "Renamed"}, headers=auth()).json()
    replaced = client.patch(path, json={"tags": ["b", "c"]}, headers=auth()).json()
    same = client.patch(path, json={"tags": ["C", "B"]}, headers=auth()).json()
    cleared = client.put(path, json={"title": "Renamed"}, headers=auth()).json()

    assert untouched["tags"] == ["a", "b"]
    assert replaced["tags"] == ["b", "c"]
    assert replaced["version"] == 3
    assert same["version"] == 3  # the same tags: nothing written
    assert cleared["tags"] == []
    entries = client.get(f"{path}/history", headers=auth()).json()["items"]
    assert entries[1]["changes"] == {"tags": {"from": ["a", "b"], "to": ["b", "c"]}}
    assert history(db) == ["created", "updated", "updated", "updated"]
    filtered = client.get("/api/alice/tasks?tag=c", headers=auth()).json()["items"]
    assert filtered == []  # the links follow the set


def test_list_filters_by_every_tag_or_any_tag(
    client: TestClient, auth: AuthFactory, make_task: Factory
) -> None:
    make_task(title="both", tags=["red", "blue"])
    make_task(title="red only", tags=["Red"])
    make_task(title="blue only", tags=["blue"], priority="high")
    make_task(title="none")

    assert titles(client, auth, "tag=RED") == ["both", "red only"]
    assert titles(client, auth, "tag=red&tag=blue") == ["both"]
    assert titles(client, auth, "tag=red&tag=blue&tag_mode=any") == [
        "blue only",
        "both",
        "red only",
    ]
    assert titles(client, auth, "tag=blue&priority=high") == ["blue only"]
    assert titles(client, auth, "tag=unknown") == []


def test_tag_filter_pages_by_keyset(
    client: TestClient, auth: AuthFactory, make_task: Factory
) -> None:
    for n in range(5):
        make_task(title=f"tagged {n}", tags=["paged"])
        make_task(title=f"plain {n}")

    first = client.get("/api/alice/tasks?tag=paged&limit=3&sort=title", headers=auth()).json()
    rest = client.get(
        f"/api/alice/tasks?tag=paged&limit=3&sort=title&cursor={first['next_cursor']}",
        headers=auth(),
    ).json()

    seen = [t["title"] for t in first["items"] + rest["items"]]
    assert seen == [f"tagged {n}" for n in range(5)]
    assert rest["next_cursor"] is None


def test_rename_tag_renames_it_on_every_task_with_history_and_feed(
    client: TestClient, auth: AuthFactory, make_task: Factory
) -> None:
    carrier = make_task(tags=["wrk", "zeta"])
    make_task(tags=["other"])
    since = client.get("/api/alice/changes", headers=auth()).json()["next_since"]

    renamed = client.patch(
        f"/api/alice/tags/{tag_id(client, auth, 'wrk')}", json={"name": "Work"}, headers=auth()
    )

    task = client.get(f"/api/alice/tasks/{carrier['id']}", headers=auth()).json()
    changes = client.get(f"/api/alice/changes?since={since}", headers=auth()).json()["changes"]
    entries = client.get(f"/api/alice/tasks/{carrier['id']}/history", headers=auth()).json()
    assert renamed.status_code == 200
    assert renamed.json()["name"] == "Work"
    assert renamed.headers["etag"] == '"2"'
    assert task["tags"] == ["Work", "zeta"]
    assert task["version"] == 2
    assert [(c["id"], c["data"]["tags"]) for c in changes] == [(carrier["id"], ["Work", "zeta"])]
    assert entries["items"][0]["changes"] == {
        "tags": {"from": ["wrk", "zeta"], "to": ["Work", "zeta"]}
    }
    assert titles(client, auth, "tag=work") == [carrier["title"]]


def test_rename_tag_onto_another_tags_name_is_409(
    client: TestClient, auth: AuthFactory, make_task: Factory
) -> None:
    make_task(tags=["home", "work"])

    response = client.patch(
        f"/api/alice/tags/{tag_id(client, auth, 'home')}", json={"name": "WORK"}, headers=auth()
    )

    assert_problem(response, 409, "conflict")
    assert tag_names(client, auth) == ["home", "work"]


def test_delete_tag_removes_it_from_its_tasks(
    client: TestClient, auth: AuthFactory, make_task: Factory
) -> None:
    carrier = make_task(tags=["gone", "kept"])
    target = f"/api/alice/tags/{tag_id(client, auth, 'gone')}"

    stale = client.delete(target, headers=auth() | {"If-Match": '"7"'})
    deleted = client.delete(target, headers=auth())

    task = client.get(f"/api/alice/tasks/{carrier['id']}", headers=auth()).json()
    assert stale.status_code == 412
    assert deleted.status_code == 204
    assert task["tags"] == ["kept"]
    assert task["version"] == 2
    assert tag_names(client, auth) == ["kept"]
    assert titles(client, auth, "tag=gone") == []
    assert client.get(target, headers=auth()).status_code == 404


def test_tags_never_cross_users(client: TestClient, auth: AuthFactory, make_task: Factory) -> None:
    make_task("alice", tags=["Shared"])
    bobs = make_task("bob", tags=["shared"])
    alices_tag = tag_id(client, auth, "Shared")

    assert bobs["tags"] == ["shared"]  # Bob's own spelling: Alice's tag is not his
    assert client.get(f"/api/bob/tags/{alices_tag}", headers=auth("bob")).status_code == 404
    assert [
        t["title"]
        for t in client.get("/api/bob/tasks?tag=shared", headers=auth("bob")).json()["items"]
    ] == [bobs["title"]]


def test_tags_list_pages_by_key(client: TestClient, auth: AuthFactory, make_task: Factory) -> None:
    make_task(tags=["b", "A", "c"])

    first = client.get("/api/alice/tags?limit=2", headers=auth()).json()
    rest = client.get(
        f"/api/alice/tags?limit=2&cursor={first['next_cursor']}", headers=auth()
    ).json()

    assert [t["name"] for t in first["items"] + rest["items"]] == ["A", "b", "c"]
    assert rest["next_cursor"] is None
