"""Conditional requests on tasks and categories: ETags, If-None-Match reads, If-Match writes."""

from dataclasses import dataclass
from typing import Any

import httpx2
import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, col, select

from backend.models import Category, Task, TaskHistory
from tests.conftest import AuthFactory, Headers, assert_problem

KINDS = ("tasks", "categories")
NEW = {"tasks": {"title": "A task"}, "categories": {"name": "Home"}}
BUMP = {"tasks": {"description": "Bumped"}, "categories": {"color": "#112233"}}
MODELS: dict[str, type[Task] | type[Category]] = {"tasks": Task, "categories": Category}


@dataclass(frozen=True, slots=True)
class Write:
    kind: str
    method: str
    suffix: str = ""
    body: dict[str, Any] | None = None

    def __str__(self) -> str:
        return f"{self.method} {self.kind}{self.suffix}"


WRITES = [
    Write("tasks", "PUT", body={"title": "Replaced"}),
    Write("tasks", "PATCH", body={"title": "Renamed"}),
    Write("tasks", "DELETE"),
    Write("tasks", "PATCH", "/complete"),
    Write("tasks", "PATCH", "/incomplete"),
    Write("categories", "PUT", body={"name": "Work"}),
    Write("categories", "PATCH", body={"name": "Work"}),
    Write("categories", "DELETE"),
]
EDITS = [write for write in WRITES if write.method != "DELETE"]


def create(client: TestClient, auth: AuthFactory, kind: str, user: str = "alice") -> str:
    """A new resource of `kind` (version 1); its path."""
    response = client.post(f"/api/{user}/{kind}", json=NEW[kind], headers=auth(user))
    assert response.status_code == 201, response.text
    return f"/api/{user}/{kind}/{response.json()['id']}"


def arrange(client: TestClient, auth: AuthFactory, write: Write, user: str = "alice") -> str:
    """A resource at version 2 that `write` can change; its path (without the suffix).

    The second version comes from completing the task for `/incomplete`, so that reopening
    it changes something; from an unrelated field otherwise.
    """
    path = create(client, auth, write.kind, user)
    if write.suffix == "/incomplete":
        bumped = client.patch(f"{path}/complete", headers=auth(user))
    else:
        bumped = client.patch(path, json=BUMP[write.kind], headers=auth(user))
    assert bumped.status_code == 200, bumped.text
    assert bumped.headers["etag"] == '"2"'
    return path


def send(
    client: TestClient, write: Write, path: str, headers: Headers, if_match: str | None
) -> httpx2.Response:
    condition = {} if if_match is None else {"If-Match": if_match}
    return client.request(
        write.method, f"{path}{write.suffix}", json=write.body, headers=headers | condition
    )


def stored(db: Session, kind: str) -> list[dict[str, Any]]:
    """Every stored row of `kind`, as plain values."""
    db.expire_all()
    model = MODELS[kind]
    return [row.model_dump() for row in db.exec(select(model).order_by(col(model.id))).all()]


def history(db: Session) -> list[tuple[str, dict[str, Any]]]:
    db.expire_all()
    entries = db.exec(select(TaskHistory).order_by(col(TaskHistory.id))).all()
    return [(entry.action, entry.changes) for entry in entries]


# Tags past MAX_CONDITION_LENGTH, though they name version 2: If-Match malformed (412),
# If-None-Match matching nothing.
TOO_LONG = ", ".join(f'"{n}"' for n in range(1000, 1300)) + ', "2"'


@pytest.mark.parametrize("kind", KINDS)
def test_create_sets_etag_of_version(client: TestClient, auth: AuthFactory, kind: str) -> None:
    response = client.post(f"/api/alice/{kind}", json=NEW[kind], headers=auth("alice"))

    assert response.status_code == 201
    assert response.headers["etag"] == '"1"'
    assert response.json()["version"] == 1


@pytest.mark.parametrize("kind", KINDS)
def test_get_sets_etag_of_version(client: TestClient, auth: AuthFactory, kind: str) -> None:
    path = create(client, auth, kind)
    client.patch(path, json=BUMP[kind], headers=auth("alice"))

    response = client.get(path, headers=auth("alice"))

    assert response.status_code == 200
    assert response.headers["etag"] == '"2"'
    assert response.json()["version"] == 2


@pytest.mark.parametrize("kind", KINDS)
def test_list_has_no_etag(client: TestClient, auth: AuthFactory, kind: str) -> None:
    create(client, auth, kind)

    response = client.get(f"/api/alice/{kind}", headers=auth("alice"))

    assert response.status_code == 200
    assert len(response.json()["items"]) == 1
    assert "etag" not in response.headers


@pytest.mark.parametrize("if_none_match", ['"1"', "*", 'W/"1"', '"7", "1"'])
@pytest.mark.parametrize("kind", KINDS)
def test_get_with_current_if_none_match_is_304(
    client: TestClient, auth: AuthFactory, kind: str, if_none_match: str
) -> None:
    path = create(client, auth, kind)

    response = client.get(path, headers=auth("alice") | {"If-None-Match": if_none_match})

    assert response.status_code == 304
    assert response.headers["etag"] == '"1"'
    assert response.content == b""


@pytest.mark.parametrize("if_none_match", ['"1"', TOO_LONG])
@pytest.mark.parametrize("kind", KINDS)
def test_get_with_old_if_none_match_is_200(
    client: TestClient, auth: AuthFactory, kind: str, if_none_match: str
) -> None:
    path = create(client, auth, kind)
    client.patch(path, json=BUMP[kind], headers=auth("alice"))

    response = client.get(path, headers=auth("alice") | {"If-None-Match": if_none_match})

    assert response.status_code == 200
    assert response.headers["etag"] == '"2"'
    assert response.json()["version"] == 2


@pytest.mark.parametrize("if_match", [None, '"2"', "*", '"7", "2"', ' "1" , "2" '])
@pytest.mark.parametrize("write", EDITS, ids=str)
def test_edit_with_matching_or_no_if_match_bumps_etag(
    client: TestClient, auth: AuthFactory, db: Session, write: Write, if_match: str | None
) -> None:
    path = arrange(client, auth, write)

    response = send(client, write, path, auth("alice"), if_match)

    assert response.status_code == 200, response.text
    assert response.headers["etag"] == '"3"'
    assert response.json()["version"] == 3
    assert [row["version"] for row in stored(db, write.kind)] == [3]


@pytest.mark.parametrize("if_match", ['"2"', "*", '"7", "2"'])
@pytest.mark.parametrize("kind", KINDS)
def test_delete_with_matching_if_match_deletes(
    client: TestClient, auth: AuthFactory, db: Session, kind: str, if_match: str
) -> None:
    path = arrange(client, auth, Write(kind, "DELETE"))

    response = client.delete(path, headers=auth("alice") | {"If-Match": if_match})

    assert response.status_code == 204
    assert client.get(path, headers=auth("alice")).status_code == 404
    assert stored(db, kind) == []


@pytest.mark.parametrize("if_match", ['"1"', '"3"', '"7", "1"'])
@pytest.mark.parametrize("write", WRITES, ids=str)
def test_write_with_stale_if_match_is_412_and_changes_nothing(
    client: TestClient, auth: AuthFactory, db: Session, write: Write, if_match: str
) -> None:
    path = arrange(client, auth, write)
    rows, entries = stored(db, write.kind), history(db)

    response = send(client, write, path, auth("alice"), if_match)

    assert_problem(response, 412, "precondition_failed")
    assert response.headers["etag"] == '"2"'
    assert stored(db, write.kind) == rows
    assert history(db) == entries
    assert client.get(path, headers=auth("alice")).json()["version"] == 2


@pytest.mark.parametrize("if_match", ["abc", "2", 'W/"2"', '"2', "", "W/*", TOO_LONG])
@pytest.mark.parametrize("write", WRITES, ids=str)
def test_write_with_malformed_or_weak_if_match_is_412(
    client: TestClient, auth: AuthFactory, db: Session, write: Write, if_match: str
) -> None:
    path = arrange(client, auth, write)
    rows, entries = stored(db, write.kind), history(db)

    response = send(client, write, path, auth("alice"), if_match)

    assert_problem(response, 412, "precondition_failed")
    assert response.headers["etag"] == '"2"'
    assert stored(db, write.kind) == rows
    assert history(db) == entries


@pytest.mark.parametrize("write", WRITES, ids=str)
def test_write_with_if_match_on_another_users_resource_is_404(
    client: TestClient, auth: AuthFactory, db: Session, write: Write
) -> None:
    path = arrange(client, auth, write, user="bob")
    rows = stored(db, write.kind)
    alices_path = path.replace("/api/bob/", "/api/alice/")

    response = send(client, write, alices_path, auth("alice"), '"2"')

    assert_problem(response, 404, "not_found")
    assert "etag" not in response.headers
    assert stored(db, write.kind) == rows


@pytest.mark.parametrize("kind", KINDS)
def test_patch_without_if_match_last_writer_wins(
    client: TestClient, auth: AuthFactory, db: Session, kind: str
) -> None:
    path = create(client, auth, kind)
    field = "title" if kind == "tasks" else "name"

    first = client.patch(path, json={field: "First"}, headers=auth("alice"))
    second = client.patch(path, json={field: "Second"}, headers=auth("alice"))

    assert (first.status_code, second.status_code) == (200, 200)
    assert (first.headers["etag"], second.headers["etag"]) == ('"2"', '"3"')
    assert second.json()[field] == "Second"
    [row] = stored(db, kind)
    assert (row[field], row["version"]) == ("Second", 3)


@pytest.mark.parametrize("kind", KINDS)
def test_noop_patch_with_current_if_match_keeps_version(
    client: TestClient, auth: AuthFactory, db: Session, kind: str
) -> None:
    path = create(client, auth, kind)
    entries = history(db)

    response = client.patch(path, json=NEW[kind], headers=auth("alice") | {"If-Match": '"1"'})

    assert response.status_code == 200
    assert response.headers["etag"] == '"1"'
    assert response.json()["version"] == 1
    assert [row["version"] for row in stored(db, kind)] == [1]
    assert history(db) == entries


@pytest.mark.parametrize("kind", KINDS)
def test_second_writer_with_same_if_match_is_412(
    client: TestClient, auth: AuthFactory, db: Session, kind: str
) -> None:
    path = create(client, auth, kind)
    field = "title" if kind == "tasks" else "name"
    condition = auth("alice") | {"If-Match": '"1"'}

    first = client.patch(path, json={field: "First"}, headers=condition)
    second = client.patch(path, json={field: "Second"}, headers=condition)

    assert first.status_code == 200
    assert first.headers["etag"] == '"2"'
    assert_problem(second, 412, "precondition_failed")
    assert second.headers["etag"] == '"2"'
    [row] = stored(db, kind)
    assert (row[field], row["version"]) == ("First", 2)


@pytest.mark.parametrize("kind", KINDS)
def test_patch_ten_times_bumps_version_once_per_change(
    client: TestClient, auth: AuthFactory, db: Session, kind: str
) -> None:
    path = create(client, auth, kind)
    field = "title" if kind == "tasks" else "name"
    names = [f"Name {n // 2}" for n in range(10)]  # every second PATCH repeats the last
    versions = []

    for name in names:
        response = client.patch(path, json={field: name}, headers=auth("alice"))
        assert response.status_code == 200, response.text
        assert response.headers["etag"] == f'"{response.json()["version"]}"'
        versions.append(response.json()["version"])

    assert versions == [2, 2, 3, 3, 4, 4, 5, 5, 6, 6]
    [row] = stored(db, kind)
    assert (row[field], row["version"]) == ("Name 4", 6)
    if kind == "tasks":
        updates = [changes for action, changes in history(db) if action == "updated"]
        previous = ["A task", *names[::2]]
        assert updates == [
            {"title": {"from": before, "to": after}}
            for before, after in zip(previous, names[::2], strict=False)
        ]
