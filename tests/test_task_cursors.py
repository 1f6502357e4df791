"""Task lists: cursors of another sort, malformed, tampered or another user's, refused; the
server's own always accepted, however long the position they hold."""

from typing import Any

import pytest
from fastapi.testclient import TestClient

from backend.fields import CURSOR_MAX_LENGTH
from tests.conftest import AuthFactory, Factory, assert_problem


def _first_cursor(client: TestClient, auth: AuthFactory, user: str, **params: Any) -> str:
    response = client.get(f"/api/{user}/tasks", params={"limit": 1, **params}, headers=auth(user))
    assert response.status_code == 200, response.text
    cursor: str = response.json()["next_cursor"]
    assert cursor is not None
    return cursor


def _assert_bad_cursor(response: Any) -> None:
    body = assert_problem(response, 422, "validation_error")
    assert [error["loc"] for error in body["errors"]] == [["query", "cursor"]]


@pytest.mark.parametrize(
    ("issued_for", "used_for"),
    [("title", "-title"), ("title", "priority"), ("-created_at", "created_at"), ("due_at", None)],
)
def test_list_tasks_refuses_a_cursor_of_another_sort(
    client: TestClient,
    auth: AuthFactory,
    make_task: Factory,
    issued_for: str,
    used_for: str | None,
) -> None:
    make_task(title="one")
    make_task(title="two")
    cursor = _first_cursor(client, auth, "alice", sort=issued_for)
    params = {"cursor": cursor, **({"sort": used_for} if used_for else {})}

    response = client.get("/api/alice/tasks", params=params, headers=auth())

    _assert_bad_cursor(response)


@pytest.mark.parametrize(
    "cursor",
    ["x", "!!!", "", "é", "Z2FyYmFnZWdhcmJhZ2VnYXJiYWdlZ2FyYmFnZQ", "a" * 1025],
)
def test_list_tasks_refuses_a_malformed_cursor(
    client: TestClient, auth: AuthFactory, make_task: Factory, cursor: str
) -> None:
    make_task(title="one")

    response = client.get("/api/alice/tasks", params={"cursor": cursor}, headers=auth())

    _assert_bad_cursor(response)


@pytest.mark.parametrize("index", [0, 7, -10])
def test_list_tasks_refuses_a_tampered_cursor(
    client: TestClient, auth: AuthFactory, make_task: Factory, index: int
) -> None:
    make_task(title="one")
    make_task(title="two")
    cursor = _first_cursor(client, auth, "alice")
    tampered = cursor[:index] + ("B" if cursor[index] == "A" else "A") + cursor[index:][1:]
    assert len(tampered) == len(cursor)
    assert tampered != cursor

    response = client.get("/api/alice/tasks", params={"cursor": tampered}, headers=auth())

    _assert_bad_cursor(response)


def test_list_tasks_refuses_another_users_cursor(
    client: TestClient, auth: AuthFactory, make_task: Factory
) -> None:
    for user in ("alice", "bob"):
        make_task(user, title="one")
        make_task(user, title="two")
    cursor = _first_cursor(client, auth, "alice")

    response = client.get("/api/bob/tasks", params={"cursor": cursor}, headers=auth("bob"))

    _assert_bad_cursor(response)


# The longest positions a cursor can hold: 200 characters of 4 bytes each in UTF-8, 200
# that JSON escapes, 200 that fold to three code points each in a case-insensitive sort.
LONGEST_TITLES = {"emoji": "\U0001f600" * 200, "quotes": '"' * 200, "folding": "\u0390" * 200}


@pytest.mark.parametrize("title", LONGEST_TITLES.values(), ids=LONGEST_TITLES.keys())
@pytest.mark.parametrize("sort", ["title", "-title"])
def test_list_tasks_accepts_its_own_cursor_after_the_longest_titles(
    client: TestClient, auth: AuthFactory, make_task: Factory, title: str, sort: str
) -> None:
    created = {make_task(title=title)["id"], make_task(title=title)["id"]}
    params: dict[str, str | int] = {"sort": sort, "limit": 1}
    first = client.get("/api/alice/tasks", params=params, headers=auth()).json()
    cursor = first["next_cursor"]

    response = client.get("/api/alice/tasks", params={**params, "cursor": cursor}, headers=auth())

    assert len(cursor) <= CURSOR_MAX_LENGTH
    assert response.status_code == 200, response.text
    second = response.json()
    assert {item["id"] for item in first["items"] + second["items"]} == created
    assert second["next_cursor"] is None
