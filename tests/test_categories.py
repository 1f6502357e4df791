"""Categories: create, read, replace, update, delete, uniqueness and listing."""

from datetime import datetime
from typing import Any
from uuid import UUID

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, col, select

from backend.fields import CURSOR_MAX_LENGTH
from backend.models import Category, Task, TaskHistory
from tests.conftest import MISSING_ID, AuthFactory, Factory, assert_invalid, assert_problem

CATEGORY_FIELDS = {"id", "name", "color", "created_at", "updated_at", "version"}


def instant(value: str) -> datetime:
    return datetime.fromisoformat(value)


def stored_categories(db: Session) -> list[Category]:
    db.expire_all()
    return list(db.exec(select(Category).order_by(col(Category.name))).all())


def test_create_category_returns_201_with_location(
    client: TestClient, auth: AuthFactory, db: Session
) -> None:
    response = client.post(
        "/api/alice/categories", json={"name": "  Home  ", "color": "#A1B2C3"}, headers=auth()
    )

    assert response.status_code == 201
    category = response.json()
    assert response.headers["location"] == f"/api/alice/categories/{category['id']}"
    assert category.keys() == CATEGORY_FIELDS
    assert UUID(category["id"])
    assert (category["name"], category["color"], category["version"]) == ("Home", "#A1B2C3", 1)
    assert category["created_at"] == category["updated_at"]
    [stored] = stored_categories(db)
    assert (stored.user_id, str(stored.id), stored.name, stored.color) == (
        "alice",
        category["id"],
        "Home",
        "#A1B2C3",
    )


@pytest.mark.parametrize(
    "fields",
    [
        {"name": "H"},
        {"name": "n" * 50},
        {"name": "Home", "color": None},
        {"name": "Home", "color": "#00ff7f"},
        {"name": "Çà et là 🏠"},
    ],
    ids=["name-1", "name-50", "color-null", "color-lowercase", "unicode"],
)
def test_create_category_accepts_values_at_the_limits(
    client: TestClient, auth: AuthFactory, db: Session, fields: dict[str, Any]
) -> None:
    response = client.post("/api/alice/categories", json=fields, headers=auth())

    assert response.status_code == 201, response.text
    assert response.json()["name"] == fields["name"]
    assert response.json()["color"] == fields.get("color")
    [stored] = stored_categories(db)
    assert (stored.name, stored.color) == (fields["name"], fields.get("color"))


def test_create_category_counts_name_length_after_trimming(
    client: TestClient, auth: AuthFactory, db: Session
) -> None:
    response = client.post("/api/alice/categories", json={"name": f" {'n' * 50} "}, headers=auth())

    assert response.status_code == 201, response.text
    assert response.json()["name"] == "n" * 50
    assert [row.name for row in stored_categories(db)] == ["n" * 50]


INVALID = {
    "name-missing": ({}, "name"),
    "name-null": ({"name": None}, "name"),
    "name-empty": ({"name": ""}, "name"),
    "name-whitespace": ({"name": "   "}, "name"),
    "name-51": ({"name": "n" * 51}, "name"),
    "name-nul": ({"name": "nul\x00"}, "name"),
    "name-newline": ({"name": "two\nlines"}, "name"),
    "name-int": ({"name": 7}, "name"),
    "color-word": ({"name": "Home", "color": "red"}, "color"),
    "color-short": ({"name": "Home", "color": "#FFF"}, "color"),
    "color-not-hex": ({"name": "Home", "color": "#GGGGGG"}, "color"),
    "color-no-hash": ({"name": "Home", "color": "A1B2C3"}, "color"),
    "color-long": ({"name": "Home", "color": "#A1B2C3D"}, "color"),
    "color-trailing-newline": ({"name": "Home", "color": "#A1B2C3\n"}, "color"),
    "color-int": ({"name": "Home", "color": 16777215}, "color"),
    "unknown-field": ({"name": "Home", "icon": "house"}, "icon"),
    "id": ({"name": "Home", "id": MISSING_ID}, "id"),
    "user_id": ({"name": "Home", "user_id": "bob"}, "user_id"),
    "version": ({"name": "Home", "version": 3}, "version"),
    "created_at": ({"name": "Home", "created_at": "2030-01-01T00:00:00Z"}, "created_at"),
}


@pytest.mark.parametrize(("body", "field"), INVALID.values(), ids=INVALID.keys())
def test_create_category_rejects_invalid_body(
    client: TestClient, auth: AuthFactory, db: Session, body: dict[str, Any], field: str
) -> None:
    response = client.post("/api/alice/categories", json=body, headers=auth())

    assert_invalid(response, field)
    assert stored_categories(db) == []


def test_get_category_returns_the_category(
    client: TestClient, auth: AuthFactory, make_category: Factory
) -> None:
    category = make_category(name="Work", color="#112233")

    response = client.get(f"/api/alice/categories/{category['id']}", headers=auth())

    assert response.status_code == 200
    assert response.json() == category


def test_replace_category_resets_absent_color(
    client: TestClient, auth: AuthFactory, make_category: Factory, db: Session
) -> None:
    category = make_category(name="Work", color="#112233")

    response = client.put(
        f"/api/alice/categories/{category['id']}", json={"name": " Job "}, headers=auth()
    )

    assert response.status_code == 200
    replaced = response.json()
    assert (replaced["id"], replaced["name"], replaced["color"]) == (category["id"], "Job", None)
    assert (replaced["version"], replaced["created_at"]) == (2, category["created_at"])
    assert instant(replaced["updated_at"]) > instant(category["updated_at"])
    [stored] = stored_categories(db)
    assert (stored.name, stored.color, stored.version) == ("Job", None, 2)


def test_update_category_changes_only_given_fields(
    client: TestClient, auth: AuthFactory, make_category: Factory, db: Session
) -> None:
    category = make_category(name="Work", color="#112233")
    path = f"/api/alice/categories/{category['id']}"

    recolored = client.patch(path, json={"color": "#445566"}, headers=auth())
    unchanged = client.patch(path, json={"name": "Work"}, headers=auth())
    cleared = client.patch(path, json={"color": None}, headers=auth())

    assert (recolored.status_code, unchanged.status_code, cleared.status_code) == (200, 200, 200)
    assert (recolored.json()["name"], recolored.json()["color"]) == ("Work", "#445566")
    assert recolored.json()["version"] == 2
    assert unchanged.json() == recolored.json()
    assert (cleared.json()["color"], cleared.json()["version"]) == (None, 3)
    [stored] = stored_categories(db)
    assert (stored.name, stored.color, stored.version) == ("Work", None, 3)


INVALID_UPDATES = {
    "name-null": ({"name": None}, "name"),
    "name-whitespace": ({"name": "   "}, "name"),
    "name-51": ({"name": "n" * 51}, "name"),
    "color-word": ({"color": "blue"}, "color"),
    "version": ({"version": 5}, "version"),
    "unknown-field": ({"icon": "house"}, "icon"),
}


@pytest.mark.parametrize(("body", "field"), INVALID_UPDATES.values(), ids=INVALID_UPDATES.keys())
def test_update_category_rejects_invalid_body(
    client: TestClient,
    auth: AuthFactory,
    make_category: Factory,
    db: Session,
    body: dict[str, Any],
    field: str,
) -> None:
    category = make_category(name="Work", color="#112233")

    response = client.patch(f"/api/alice/categories/{category['id']}", json=body, headers=auth())

    assert_invalid(response, field)
    [stored] = stored_categories(db)
    assert (stored.name, stored.color, stored.version) == ("Work", "#112233", 1)


def test_delete_category_returns_204_then_404(
    client: TestClient, auth: AuthFactory, make_category: Factory, db: Session
) -> None:
    category = make_category(name="Old")
    kept = make_category(name="Kept")
    path = f"/api/alice/categories/{category['id']}"

    response = client.delete(path, headers=auth())

    assert response.status_code == 204
    assert response.content == b""
    assert_problem(client.get(path, headers=auth()), 404, "not_found")
    assert_problem(client.delete(path, headers=auth()), 404, "not_found")
    assert [str(row.id) for row in stored_categories(db)] == [kept["id"]]


def test_create_category_with_duplicate_name_ignoring_case_conflicts(
    client: TestClient, auth: AuthFactory, make_category: Factory, db: Session
) -> None:
    make_category(name="Home")

    response = client.post("/api/alice/categories", json={"name": " home "}, headers=auth())

    assert_problem(response, 409, "conflict")
    assert [row.name for row in stored_categories(db)] == ["Home"]


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_rename_category_to_existing_name_ignoring_case_conflicts(
    client: TestClient, auth: AuthFactory, make_category: Factory, db: Session, method: str
) -> None:
    make_category(name="Home")
    work = make_category(name="Work")

    response = client.request(
        method, f"/api/alice/categories/{work['id']}", json={"name": "HOME"}, headers=auth()
    )

    assert_problem(response, 409, "conflict")
    assert [(row.name, row.version) for row in stored_categories(db)] == [("Home", 1), ("Work", 1)]


def test_rename_category_to_its_own_name_in_other_case_is_allowed(
    client: TestClient, auth: AuthFactory, make_category: Factory, db: Session
) -> None:
    category = make_category(name="Home")

    response = client.patch(
        f"/api/alice/categories/{category['id']}", json={"name": "HOME"}, headers=auth()
    )

    assert response.status_code == 200
    assert (response.json()["name"], response.json()["version"]) == ("HOME", 2)
    assert [row.name for row in stored_categories(db)] == ["HOME"]


def test_create_category_same_name_for_two_users_is_allowed(
    client: TestClient, auth: AuthFactory, make_category: Factory, db: Session
) -> None:
    make_category("bob", name="Home")

    response = client.post("/api/alice/categories", json={"name": "Home"}, headers=auth())

    assert response.status_code == 201
    assert sorted(row.user_id for row in stored_categories(db)) == ["alice", "bob"]


def test_list_categories_pages_by_name_ignoring_case(
    client: TestClient, auth: AuthFactory, make_category: Factory
) -> None:
    for name in ("cherry", "Apple", "elderberry", "banana", "Date"):
        make_category(name=name)
    make_category("bob", name="Avocado")

    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        response = client.get("/api/alice/categories", params=params, headers=auth())
        assert response.status_code == 200
        page = response.json()
        assert page.keys() == {"items", "next_cursor"}
        pages.append([item["name"] for item in page["items"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert pages == [["Apple", "banana"], ["cherry", "Date"], ["elderberry"]]


def test_delete_category_uncategorizes_its_tasks_with_history(
    client: TestClient, auth: AuthFactory, make_category: Factory, make_task: Factory, db: Session
) -> None:
    home = make_category(name="Home")
    work = make_category(name="Work")
    chores = [make_task(title=title, category_id=home["id"]) for title in ("Dishes", "Laundry")]
    other = make_task(title="Report", category_id=work["id"])

    response = client.delete(f"/api/alice/categories/{home['id']}", headers=auth())

    assert response.status_code == 204
    change = {"category_id": {"from": home["id"], "to": None}}
    for task in chores:
        fetched = client.get(f"/api/alice/tasks/{task['id']}", headers=auth()).json()
        assert (fetched["category_id"], fetched["version"]) == (None, 2)
        assert instant(fetched["updated_at"]) > instant(task["updated_at"])
        entries = client.get(f"/api/alice/tasks/{task['id']}/history", headers=auth()).json()
        newest = entries["items"][0]
        assert (newest["action"], newest["changes"], newest["title"]) == (
            "updated",
            change,
            task["title"],
        )
    assert client.get(f"/api/alice/tasks/{other['id']}", headers=auth()).json() == other
    db.expire_all()
    rows = {str(row.id): row for row in db.exec(select(Task)).all()}
    assert [(rows[task["id"]].category_id, rows[task["id"]].version) for task in chores] == [
        (None, 2),
        (None, 2),
    ]
    assert str(rows[other["id"]].category_id) == work["id"]
    updates = db.exec(select(TaskHistory).where(TaskHistory.action == "updated")).all()
    assert sorted((str(entry.task_id), entry.title) for entry in updates) == sorted(
        (task["id"], task["title"]) for task in chores
    )
    assert all(entry.changes == change for entry in updates)


CATEGORY_OPERATIONS = [
    ("GET", None),
    ("PUT", {"name": "Taken over"}),
    ("PATCH", {"color": "#000000"}),
    ("DELETE", None),
]


@pytest.mark.parametrize(
    ("method", "body"), CATEGORY_OPERATIONS, ids=["get", "put", "patch", "delete"]
)
def test_category_operation_on_another_users_category_is_not_found(
    client: TestClient,
    auth: AuthFactory,
    make_category: Factory,
    make_task: Factory,
    db: Session,
    method: str,
    body: dict[str, Any] | None,
) -> None:
    theirs = make_category("bob", name="Bob's", color="#123456")
    make_task("bob", title="Filed", category_id=theirs["id"])
    before = [row.model_dump() for row in stored_categories(db)]

    response = client.request(
        method, f"/api/alice/categories/{theirs['id']}", json=body, headers=auth()
    )
    missing = client.request(
        method, f"/api/alice/categories/{MISSING_ID}", json=body, headers=auth()
    )

    assert_problem(response, 404, "not_found")
    assert response.content == missing.content
    assert [row.model_dump() for row in stored_categories(db)] == before
    assert str(db.exec(select(Task)).one().category_id) == theirs["id"]


@pytest.mark.parametrize(
    ("method", "body"), CATEGORY_OPERATIONS, ids=["get", "put", "patch", "delete"]
)
def test_category_operation_rejects_malformed_category_id(
    client: TestClient, auth: AuthFactory, method: str, body: dict[str, Any] | None
) -> None:
    response = client.request(method, "/api/alice/categories/42", json=body, headers=auth())

    assert_invalid(response, "category_id")


def test_list_categories_accepts_its_own_cursor_after_the_longest_names(
    client: TestClient, auth: AuthFactory, make_category: Factory
) -> None:
    """Names of 50 characters that each fold to three code points (`ΐ`): the sort's key."""
    created = {make_category(name="\u0390" * 49 + end)["id"] for end in "ab"}
    first = client.get("/api/alice/categories", params={"limit": 1}, headers=auth()).json()
    cursor = first["next_cursor"]

    response = client.get(
        "/api/alice/categories", params={"limit": 1, "cursor": cursor}, headers=auth()
    )

    assert len(cursor) <= CURSOR_MAX_LENGTH
    assert response.status_code == 200, response.text
    second = response.json()
    assert {item["id"] for item in first["items"] + second["items"]} == created
    assert second["next_cursor"] is None


def test_create_category_with_a_name_equal_once_normalised_is_409(
    client: TestClient, auth: AuthFactory, make_category: Factory
) -> None:
    make_category(name="Café")

    response = client.post("/api/alice/categories", json={"name": "CAFE\u0301"}, headers=auth())

    assert_problem(response, 409, "conflict")
