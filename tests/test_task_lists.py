"""Task lists: page shape, filters, search, every sort walked page by page, limits, stable pages."""

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from backend.fields import Priority
from backend.models import Task, User
from tests.conftest import AuthFactory, Factory, assert_problem

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
D1 = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)
D2 = datetime(2026, 4, 2, 9, 0, tzinfo=UTC)
D3 = datetime(2026, 4, 3, 9, 0, tzinfo=UTC)

# label: (id number, title, priority, due_at, created minute, updated minute).
# Id order (the tie-breaker) is D B G E A F C, unlike the label order.
SORT_ROWS: dict[str, tuple[int, str, Priority, datetime | None, int, int]] = {
    "A": (5, "pear", Priority.high, D2, 0, 10),
    "B": (2, "apple", Priority.none, None, 1, 8),
    "C": (7, "pear", Priority.high, D1, 1, 12),
    "D": (1, "fig", Priority.low, D2, 2, 8),
    "E": (4, "apple", Priority.medium, None, 3, 9),
    "F": (6, "kiwi", Priority.none, D3, 3, 12),
    "G": (3, "pear", Priority.high, D1, 4, 11),
}

EXPECTED_ORDERS = {
    "created_at": "ABCDEFG",
    "-created_at": "GFEDCBA",
    "updated_at": "DBEAGFC",
    "-updated_at": "CFGAEBD",
    "due_at": "GCDAFBE",
    "-due_at": "FADCGEB",
    "priority": "BFDEGAC",
    "-priority": "CAGEDFB",
    "title": "BEDFGAC",
    "-title": "CAGFDEB",
}


def _uuid(number: int) -> UUID:
    return UUID(f"00000000-0000-7000-8000-{number:012d}")


def _add_user(db: Session, user_id: str) -> None:
    db.add(User(id=user_id, created_at=T0, updated_at=T0))
    db.commit()


def _add_task(db: Session, user_id: str, title: str, created: datetime, **fields: Any) -> UUID:
    task = Task(
        user_id=user_id,
        title=title,
        created_at=created,
        updated_at=fields.pop("updated_at", created),
        **fields,
    )
    task_id = task.id
    db.add(task)
    db.commit()
    return task_id


def _seed_sort_rows(db: Session) -> dict[str, str]:
    _add_user(db, "alice")
    ids = {}
    for label, (number, title, priority, due_at, created, updated) in SORT_ROWS.items():
        ids[str(_uuid(number))] = label
        _add_task(
            db,
            "alice",
            title,
            T0 + timedelta(minutes=created),
            id=_uuid(number),
            priority=priority,
            due_at=due_at,
            updated_at=T0 + timedelta(minutes=updated),
        )
    return ids


def _walk(client: TestClient, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    """Every item of the list, following `next_cursor` until it is null."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(50):
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = client.get("/api/alice/tasks", params=query, headers=headers)
        assert response.status_code == 200, response.text
        page = response.json()
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return items
        assert len(page["items"]) == params["limit"]
    raise AssertionError("the list never ended")


def _titles(response: Any) -> list[str]:
    return [item["title"] for item in response.json()["items"]]


def test_list_tasks_returns_a_page_object(
    client: TestClient, auth: AuthFactory, make_task: Factory
) -> None:
    task = make_task(title="Only")

    response = client.get("/api/alice/tasks", headers=auth("alice"))

    assert response.status_code == 200
    assert response.json() == {"items": [task], "next_cursor": None}


def test_list_tasks_is_empty_for_a_new_user(client: TestClient, auth: AuthFactory) -> None:
    response = client.get("/api/alice/tasks", headers=auth("alice"))

    assert response.status_code == 200
    assert response.json() == {"items": [], "next_cursor": None}


def test_list_tasks_shows_only_the_callers_tasks(
    client: TestClient, auth: AuthFactory, make_task: Factory
) -> None:
    make_task("alice", title="mine")
    make_task("bob", title="theirs")

    response = client.get("/api/alice/tasks", headers=auth("alice"))

    assert response.status_code == 200
    assert _titles(response) == ["mine"]


def test_list_tasks_sorts_newest_first_by_default(
    client: TestClient, auth: AuthFactory, db: Session
) -> None:
    ids = _seed_sort_rows(db)

    response = client.get("/api/alice/tasks", headers=auth("alice"))

    assert response.status_code == 200
    labels = "".join(ids[item["id"]] for item in response.json()["items"])
    assert labels == EXPECTED_ORDERS["-created_at"]


@pytest.mark.parametrize("limit", [1, 2, 3])
@pytest.mark.parametrize("sort", list(EXPECTED_ORDERS))
def test_list_tasks_walks_every_sort_in_order_with_ties_and_nulls(
    client: TestClient, auth: AuthFactory, db: Session, sort: str, limit: int
) -> None:
    ids = _seed_sort_rows(db)

    items = _walk(client, auth("alice"), sort=sort, limit=limit)

    labels = "".join(ids[item["id"]] for item in items)
    assert labels == EXPECTED_ORDERS[sort]


@pytest.mark.parametrize("sort", list(EXPECTED_ORDERS))
def test_list_tasks_walks_every_sort_of_a_search(
    client: TestClient, auth: AuthFactory, db: Session, sort: str
) -> None:
    ids = _seed_sort_rows(db)
    found = {label for label, row in SORT_ROWS.items() if "p" in row[1]}  # pear, apple

    items = _walk(client, auth("alice"), sort=sort, limit=2, q="P")

    labels = "".join(ids[item["id"]] for item in items)
    assert labels == "".join(label for label in EXPECTED_ORDERS[sort] if label in found)


FILTER_CASES: list[tuple[dict[str, str], list[str]]] = [
    ({"completed": "true"}, ["work"]),
    ({"completed": "false"}, ["plain", "loose", "home"]),
    ({"category_id": "HOME"}, ["home"]),
    ({"category_id": "none"}, ["plain", "loose"]),
    ({"category_id": "none", "completed": "false", "priority": "medium"}, ["loose"]),
    ({"q": "O", "completed": "false"}, ["loose", "home"]),
    ({"priority": "none"}, ["plain"]),
    ({"priority": "low"}, ["work"]),
    ({"priority": "medium"}, ["loose"]),
    ({"priority": "high"}, ["home"]),
    ({"due_before": "2026-04-02T09:00:00Z"}, ["home"]),
    ({"due_before": "2026-04-02T11:00:00+02:00"}, ["home"]),
    ({"due_before": "2026-04-01T09:00:00Z"}, []),
    ({"due_after": "2026-04-02T09:00:00Z"}, ["loose", "work"]),
    ({"due_after": "2026-04-02T10:00:00+01:00"}, ["loose", "work"]),
    ({"due_after": "2026-04-03T09:00:00.000001Z"}, []),
    ({"due_after": "2026-04-01T09:00:00Z", "due_before": "2026-04-03T09:00:00Z"}, ["work", "home"]),
]


@pytest.mark.parametrize(("params", "expected"), FILTER_CASES)
def test_list_tasks_filters(
    client: TestClient,
    auth: AuthFactory,
    make_task: Factory,
    make_category: Factory,
    params: dict[str, str],
    expected: list[str],
) -> None:
    home = make_category(name="Home")
    work = make_category(name="Work")
    make_task(title="home", category_id=home["id"], priority="high", due_at=D1.isoformat())
    done = make_task(title="work", category_id=work["id"], priority="low", due_at=D2.isoformat())
    make_task(title="loose", priority="medium", due_at=D3.isoformat())
    make_task(title="plain")
    assert (
        client.patch(f"/api/alice/tasks/{done['id']}/complete", headers=auth()).status_code == 200
    )
    query = {name: home["id"] if value == "HOME" else value for name, value in params.items()}

    response = client.get("/api/alice/tasks", params=query, headers=auth())

    assert response.status_code == 200
    assert _titles(response) == expected


def test_list_tasks_filters_by_another_users_category_to_nothing(
    client: TestClient, auth: AuthFactory, make_task: Factory, make_category: Factory
) -> None:
    theirs = make_category("bob", name="Theirs")
    make_task("bob", title="bob's", category_id=theirs["id"])
    make_task(title="mine")

    response = client.get("/api/alice/tasks", params={"category_id": theirs["id"]}, headers=auth())

    assert response.status_code == 200
    assert response.json() == {"items": [], "next_cursor": None}


SEARCH_TASKS = [
    ("Buy MILK", None), ("Groceries", "oat Milk and bread"), ("100%", None), ("1000", None),
    ("Sale", "50% off"), ("a_b", None), ("axb", None), ("back\\slash", None),
    ("backslash", None), ("either/or", None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("milk", {"Buy MILK", "Groceries"}), ("MILK", {"Buy MILK", "Groceries"}),
        ("OAT", {"Groceries"}), ("%", {"100%", "Sale"}), ("0%", {"100%", "Sale"}),
        ("00%", {"100%"}), ("10%", set()), ("1_0", set()), ("_", {"a_b"}), ("a_b", {"a_b"}),
        ("\\", {"back\\slash"}), ("k\\s", {"back\\slash"}), ("/", {"either/or"}),
        ("r/o", {"either/or"}), ("nothing like it", set()),
    ],
)  # fmt: skip
def test_list_tasks_searches_title_and_description_literally(
    client: TestClient, auth: AuthFactory, make_task: Factory, q: str, expected: set[str]
) -> None:
    for title, description in SEARCH_TASKS:
        make_task(title=title, description=description)

    response = client.get("/api/alice/tasks", params={"q": q}, headers=auth())

    assert response.status_code == 200
    assert set(_titles(response)) == expected


@pytest.mark.parametrize(("q", "expected"), [("ÉCOLE", ["école"]), ("äpfel", ["ÄPFEL"])])
def test_list_tasks_searches_non_ascii_case_insensitively(
    client: TestClient, auth: AuthFactory, make_task: Factory, q: str, expected: list[str]
) -> None:
    for title in ("école", "ecole", "ÄPFEL", "APFEL"):
        make_task(title=title)

    response = client.get("/api/alice/tasks", params={"q": q}, headers=auth())

    assert response.status_code == 200
    assert _titles(response) == expected


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("completed", "maybe"), ("category_id", "not-a-uuid"), ("category_id", "None"),
        ("priority", "urgent"), ("priority", "HIGH"), ("due_before", "tomorrow"),
        ("due_before", "2026-04-01T09:00:00"), ("due_after", "2026-04-01"), ("q", ""),
        ("q", "x" * 201), ("q", "a\x00b"), ("q", "two\nlines"), ("sort", "bogus"),
        ("sort", "--title"), ("sort", "+title"), ("sort", "completed"),
        # Valid RFC 3339, but before the year 1 or after 9999 once in UTC.
        ("due_before", "9999-12-31T23:59:59-05:00"), ("due_after", "0001-01-01T00:00:00+05:00"),
    ],
)  # fmt: skip
def test_list_tasks_refuses_an_invalid_filter(
    client: TestClient, auth: AuthFactory, name: str, value: str
) -> None:
    response = client.get("/api/alice/tasks", params={name: value}, headers=auth())

    body = assert_problem(response, 422, "validation_error")
    assert {tuple(error["loc"][:2]) for error in body["errors"]} == {("query", name)}


def test_list_tasks_limits_to_50_by_default_and_100_on_request(
    client: TestClient, auth: AuthFactory, db: Session
) -> None:
    _add_user(db, "alice")
    for number in range(101):
        _add_task(db, "alice", f"task {number:03d}", T0 + timedelta(seconds=number))

    default = client.get("/api/alice/tasks", headers=auth())
    most = client.get("/api/alice/tasks", params={"limit": 100}, headers=auth())
    rest = client.get(
        "/api/alice/tasks",
        params={"limit": 100, "cursor": most.json()["next_cursor"]},
        headers=auth(),
    )

    assert default.status_code == 200
    assert len(default.json()["items"]) == 50
    assert default.json()["next_cursor"] is not None
    assert most.status_code == 200
    assert len(most.json()["items"]) == 100
    assert rest.status_code == 200
    assert rest.json()["next_cursor"] is None
    assert _titles(rest) == ["task 000"]


@pytest.mark.parametrize("limit", ["0", "-1", "101", str(10**9), "abc", "1.5", ""])
def test_list_tasks_refuses_a_limit_out_of_range(
    client: TestClient, auth: AuthFactory, limit: str
) -> None:
    response = client.get("/api/alice/tasks", params={"limit": limit}, headers=auth())

    body = assert_problem(response, 422, "validation_error")
    assert [error["loc"] for error in body["errors"]] == [["query", "limit"]]


def test_list_tasks_pages_stay_stable_under_concurrent_inserts(
    client: TestClient, auth: AuthFactory, db: Session
) -> None:
    _add_user(db, "alice")
    for minute in range(5):
        _add_task(db, "alice", f"old {minute}", T0 + timedelta(minutes=minute))
    first = client.get("/api/alice/tasks", params={"limit": 2}, headers=auth())
    assert first.status_code == 200
    for minute in range(5, 8):
        _add_task(db, "alice", f"new {minute}", T0 + timedelta(minutes=minute))
    _add_task(db, "alice", "same instant", T0 + timedelta(minutes=3), id=_uuid(0))

    second = client.get(
        "/api/alice/tasks",
        params={"limit": 2, "cursor": first.json()["next_cursor"]},
        headers=auth(),
    )
    third = client.get(
        "/api/alice/tasks",
        params={"limit": 2, "cursor": second.json()["next_cursor"]},
        headers=auth(),
    )

    assert second.status_code == 200
    assert third.status_code == 200
    assert _titles(first) == ["old 4", "old 3"]
    assert _titles(second) == ["same instant", "old 2"]
    assert _titles(third) == ["old 1", "old 0"]
    assert third.json()["next_cursor"] is None
