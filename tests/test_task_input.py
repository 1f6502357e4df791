"""Tasks: create input: trimming, limits, invalid and malformed bodies, unicode, SQL text."""

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from backend.models import Task, TaskHistory
from tests.conftest import MISSING_ID, AuthFactory, Factory, assert_invalid


@pytest.mark.parametrize(
    ("sent", "stored"),
    [("  Buy milk  ", "Buy milk"), ("Buy milk ", "Buy milk"), (" a b ", "a b")],
)
def test_create_task_trims_title(
    client: TestClient, auth: AuthFactory, db: Session, sent: str, stored: str
) -> None:
    response = client.post("/api/alice/tasks", json={"title": sent}, headers=auth("alice"))

    assert response.status_code == 201
    assert response.json()["title"] == stored
    assert db.exec(select(Task)).one().title == stored


ACCEPTED = {
    "title-1": {"title": "x"},
    "title-200": {"title": "x" * 200},
    "description-5000": {"title": "ok", "description": "d" * 5000},
    "description-multiline": {"title": "ok", "description": "line one\nline two\ttabbed\r\n"},
    "description-empty": {"title": "ok", "description": ""},
    "priority-and-due": {"title": "ok", "priority": "medium", "due_at": "2030-06-01T12:00:00Z"},
}


@pytest.mark.parametrize("fields", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_create_task_accepts_values_at_the_limits(
    client: TestClient, auth: AuthFactory, db: Session, fields: dict[str, Any]
) -> None:
    response = client.post("/api/alice/tasks", json=fields, headers=auth("alice"))

    assert response.status_code == 201, response.text
    task = response.json()
    for field, value in fields.items():
        assert task[field] == value
    stored = db.exec(select(Task)).one()
    assert (stored.title, stored.description) == (fields["title"], fields.get("description"))


def test_create_task_counts_title_length_after_trimming(
    client: TestClient, auth: AuthFactory, db: Session
) -> None:
    response = client.post(
        "/api/alice/tasks", json={"title": f"  {'x' * 200}  "}, headers=auth("alice")
    )

    assert response.status_code == 201, response.text
    assert response.json()["title"] == "x" * 200
    assert db.exec(select(Task)).one().title == "x" * 200


INVALID = {
    "title-missing": ({}, "title"),
    "title-null": ({"title": None}, "title"),
    "title-empty": ({"title": ""}, "title"),
    "title-whitespace": ({"title": "   "}, "title"),
    "title-201": ({"title": "x" * 201}, "title"),
    "title-nul": ({"title": "nul\x00byte"}, "title"),
    "title-bell": ({"title": "bell\x07"}, "title"),
    "title-newline": ({"title": "two\nlines"}, "title"),
    "title-escape": ({"title": "escape\x1b[31m"}, "title"),
    "description-5001": ({"title": "ok", "description": "d" * 5001}, "description"),
    "description-nul": ({"title": "ok", "description": "nul\x00byte"}, "description"),
    "unknown-field": ({"title": "ok", "colour": "red"}, "colour"),
    "id": ({"title": "ok", "id": MISSING_ID}, "id"),
    "user_id": ({"title": "ok", "user_id": "bob"}, "user_id"),
    "created_at": ({"title": "ok", "created_at": "2030-01-01T00:00:00Z"}, "created_at"),
    "updated_at": ({"title": "ok", "updated_at": "2030-01-01T00:00:00Z"}, "updated_at"),
    "completed_at": ({"title": "ok", "completed_at": "2030-01-01T00:00:00Z"}, "completed_at"),
    "version": ({"title": "ok", "version": 7}, "version"),
    "title-int": ({"title": 123}, "title"),
    "title-list": ({"title": ["a"]}, "title"),
    "description-int": ({"title": "ok", "description": 5}, "description"),
    "priority-unknown": ({"title": "ok", "priority": "urgent"}, "priority"),
    "priority-int": ({"title": "ok", "priority": 3}, "priority"),
    "priority-null": ({"title": "ok", "priority": None}, "priority"),
    "due_at-text": ({"title": "ok", "due_at": "tomorrow"}, "due_at"),
    "due_at-naive": ({"title": "ok", "due_at": "2030-01-01T09:00:00"}, "due_at"),
    "due_at-before-year-1-in-utc": (
        {"title": "ok", "due_at": "0001-01-01T00:00:00+05:00"},
        "due_at",
    ),
    "due_at-after-9999-in-utc": ({"title": "ok", "due_at": "9999-12-31T23:59:59-05:00"}, "due_at"),
    "category_id-text": ({"title": "ok", "category_id": "not-a-uuid"}, "category_id"),
}


@pytest.mark.parametrize(("body", "field"), INVALID.values(), ids=INVALID.keys())
def test_create_task_rejects_invalid_body(
    client: TestClient, auth: AuthFactory, db: Session, body: dict[str, Any], field: str
) -> None:
    response = client.post("/api/alice/tasks", json=body, headers=auth("alice"))

    assert_invalid(response, field)
    assert db.exec(select(Task)).all() == []
    assert db.exec(select(TaskHistory)).all() == []


MALFORMED = {
    "truncated": b'{"title": ',
    "trailing-comma": b'{"title": "ok",}',
    "lone-surrogate-title": b'{"title": "\\ud800"}',
    "lone-surrogate-description": b'{"title": "ok", "description": "a\\udc00b"}',
    "lone-surrogate-key": b'{"title": "ok", "\\ud800": 1}',
    "array": b"[]",
    "string": b'"a title"',
    "null": b"null",
    "empty": b"",
}


@pytest.mark.parametrize("raw", MALFORMED.values(), ids=MALFORMED.keys())
def test_create_task_rejects_malformed_json(
    client: TestClient, auth: AuthFactory, db: Session, raw: bytes
) -> None:
    response = client.post(
        "/api/alice/tasks",
        content=raw,
        headers={**auth("alice"), "content-type": "application/json"},
    )

    assert_invalid(response)
    assert db.exec(select(Task)).all() == []


@pytest.mark.parametrize(
    "text",
    [
        "Café ☕ crème brûlée",
        "👩‍💻 ship it 🚀🇫🇷",
        "שלום עולם مرحبا",
        "\u202eevil\u202c and \u200fmark",
        "e\u0301 is not \u00e9",
        "Z\u0351\u036b\u0343a\u0308\u0324l\u036e\u0312g\u0310o\u0353",
        "漢字かなカナ한국어",
    ],
    ids=["latin", "emoji", "rtl", "bidi-controls", "combining", "zalgo", "cjk"],
)
def test_create_task_keeps_unicode_byte_identical(
    client: TestClient, auth: AuthFactory, db: Session, text: str
) -> None:
    response = client.post(
        "/api/alice/tasks", json={"title": text, "description": text}, headers=auth("alice")
    )

    assert response.status_code == 201, response.text
    task = response.json()
    assert task["title"].encode() == text.encode()
    assert task["description"].encode() == text.encode()
    fetched = client.get(f"/api/alice/tasks/{task['id']}", headers=auth("alice")).json()
    assert fetched["title"].encode() == text.encode()
    stored = db.exec(select(Task)).one()
    assert stored.title.encode() == text.encode()
    assert stored.description is not None
    assert stored.description.encode() == text.encode()


@pytest.mark.parametrize(
    "text",
    [
        "Robert'); DROP TABLE tasks;--",
        "' OR '1'='1",
        '100% of _all_ \\ "tasks"',
        "$1; SELECT pg_sleep(5) /* */",
    ],
    ids=["drop-table", "or-true", "like-wildcards", "placeholder"],
)
def test_create_task_stores_sql_metacharacters_literally(
    client: TestClient, auth: AuthFactory, make_task: Factory, db: Session, text: str
) -> None:
    make_task(title="Earlier")

    response = client.post(
        "/api/alice/tasks", json={"title": text, "description": text}, headers=auth("alice")
    )

    assert response.status_code == 201
    assert (response.json()["title"], response.json()["description"]) == (text, text)
    stored = db.exec(select(Task).where(Task.title == text)).one()
    assert stored.description == text
    assert len(db.exec(select(Task)).all()) == 2
