"""The API's words (`backend/messages.py`): every message a refused request gets reads as a
sentence about the request, never as the validator's."""

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from backend.messages import validation_message
from tests.conftest import AuthFactory
from tests.operations import BODY_OPS, MISSING_ID, Operation, never_seen_url

SENTENCE = re.compile(r"^[A-Z“][^\n]*\.$")
VALIDATOR_WORDS = ("should", "Input", "Value error", "validation", "Field required")

WRONG_BODIES: list[dict[str, Any]] = [
    {},
    {"title": "", "name": ""},
    {"title": "  ", "name": "  "},
    {"title": 5, "name": 5},
    {"title": "x" * 5000, "name": "x" * 5000, "description": "x" * 50_000},
    {"title": "Ok", "name": "Ok", "priority": "urgent", "color": "blue"},
    {"title": "Ok", "name": "Ok", "due_at": "tomorrow", "expires_at": "soon"},
    {"title": "Ok", "name": "Ok", "category_id": "shopping", "completed": "maybe"},
    {"title": "Ok", "name": "Ok", "owner": "bob"},
    {"title": "Ok", "name": "Ok", "due_at": "2026-12-31T09:00:00"},
]


@pytest.mark.parametrize("op", BODY_OPS, ids=str)
def test_every_field_error_of_a_write_reads_as_a_sentence(
    client: TestClient, auth: AuthFactory, op: Operation
) -> None:
    messages: set[str] = set()
    for body in WRONG_BODIES:
        response = client.request(op.method, never_seen_url(op, "alice"), json=body, headers=auth())
        if response.status_code == 422:
            problem = response.json()
            assert SENTENCE.match(problem["detail"]), problem["detail"]
            messages |= {error["msg"] for error in problem["errors"]}

    assert messages, f"{op}: no body was refused"
    for message in messages:
        assert SENTENCE.match(message), message
        assert not any(word in message for word in VALIDATOR_WORDS), message


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        ({"type": "missing", "loc": ("body", "title")}, "Title is required."),
        (
            {"type": "string_too_short", "loc": ("body", "title"), "ctx": {"min_length": 1}},
            "Title must not be empty.",
        ),
        (
            {"type": "string_too_long", "loc": ("body", "title"), "ctx": {"max_length": 200}},
            "Title must be at most 200 characters.",
        ),
        ({"type": "uuid_parsing", "loc": ("path", "task_id")}, "Task id must be a UUID."),
        ({"type": "uuid_parsing", "loc": ("body", "category_id")}, "Category must be a UUID."),
        (
            {"type": "enum", "loc": ("body", "priority"), "ctx": {"expected": "'low' or 'high'"}},
            "Priority must be one of 'low' or 'high'.",
        ),
        (
            {"type": "less_than_equal", "loc": ("query", "limit"), "ctx": {"le": 100}},
            "Limit must be at most 100.",
        ),
        ({"type": "json_invalid", "loc": ("body", 7)}, "The body is not valid JSON."),
        ({"type": "model_attributes_type", "loc": ("body",)}, "The body must be a JSON object."),
        (
            {"type": "value_error", "loc": ("body", "color"), "ctx": {"error": "Not a colour"}},
            "Color: not a colour.",
        ),
        (
            {"type": "no_such_type", "loc": ("body", "tags", 2), "msg": "Something odd"},
            "Tags (item 3): something odd.",
        ),
    ],
)
def test_a_validation_error_is_told_in_the_apis_words(error: dict[str, Any], expected: str) -> None:
    assert validation_message(error) == expected


def test_a_rule_only_the_service_checks_names_its_field(
    client: TestClient, auth: AuthFactory
) -> None:
    response = client.post(
        "/api/alice/tasks", json={"title": "Ok", "category_id": MISSING_ID}, headers=auth()
    )

    assert response.status_code == 422
    assert response.json()["errors"] == [
        {
            "loc": ["body", "category_id"],
            "msg": "Category must be one of your categories.",
            "type": "category_not_found",
        }
    ]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"title": ""}, "Title must not be empty."),
        ({"title": "x" * 201}, "Title must be at most 200 characters."),
        ({"title": "a\u0007b"}, "Title must not contain control characters."),
        ({"title": "Ok", "owner": "bob"}, "“owner” is not a field of this request."),
        ({"title": "Ok", "priority": "urgent"}, None),
        ({"title": "Ok", "due_at": "2026-12-31T09:00:00"}, None),
    ],
)
def test_create_task_with_a_wrong_field_names_it_in_a_sentence(
    client: TestClient, auth: AuthFactory, body: dict[str, Any], message: str | None
) -> None:
    response = client.post("/api/alice/tasks", json=body, headers=auth())

    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert SENTENCE.match(error["msg"]), error
    if message is not None:
        assert error["msg"] == message
