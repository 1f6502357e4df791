"""Problem documents for routing, body, parsing and unexpected errors; health endpoints."""

import asyncio
import json
import logging
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx2
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlmodel import Session, select
from starlette.types import Message

from backend.config import Settings
from backend.main import MAX_BODY_BYTES, create_app
from backend.middleware import Deadline
from backend.models import Task
from tests.conftest import AuthFactory, Factory, assert_problem

LOG_LEAKS = ("Traceback", "SELECT", "secret-detail", "postgresql://")
LEAKS = (*LOG_LEAKS, 'File "', "RuntimeError")


def _assert_refused_body(response: httpx2.Response) -> None:
    """A 422 validation error, or a 400: a problem document, never a 500."""
    assert response.status_code in (400, 422), response.text
    code = "validation_error" if response.status_code == 422 else "bad_request"
    assert_problem(response, response.status_code, code)


def test_unknown_route_is_404_problem(client: TestClient, auth: AuthFactory) -> None:
    outside = client.get("/nope")
    inside = client.get("/api/alice/nope", headers=auth("alice"))

    assert_problem(outside, 404, "not_found")
    assert_problem(inside, 404, "not_found")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("DELETE", "/api/alice/tasks"),
        ("PUT", "/api/alice/categories"),
        ("POST", "/api/alice/me"),
        ("POST", "/healthz"),
    ],
)
def test_wrong_method_is_405_problem(
    client: TestClient, auth: AuthFactory, method: str, path: str
) -> None:
    response = client.request(method, path, headers=auth("alice"))

    assert_problem(response, 405, "method_not_allowed")
    assert "allow" in response.headers


@pytest.mark.parametrize("root_path", ["", "/todo"])  # `todo-api serve --root-path /todo`
def test_wrong_method_names_the_allowed_ones(
    app: FastAPI, db: Session, auth: AuthFactory, root_path: str
) -> None:
    with TestClient(app, root_path=root_path) as client:
        response = client.delete(f"{root_path}/api/alice/tasks", headers=auth("alice"))

    assert_problem(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "GET, POST"


def test_body_over_limit_with_content_length_is_413(
    client: TestClient, auth: AuthFactory, db: Session
) -> None:
    body = b'{"title": "big", "description": "' + b"x" * MAX_BODY_BYTES + b'"}'

    response = client.post(
        "/api/alice/tasks",
        content=body,
        headers={**auth("alice"), "Content-Type": "application/json"},
    )

    assert_problem(response, 413, "payload_too_large")
    assert db.exec(select(Task)).all() == []


def test_body_over_limit_chunked_is_413(client: TestClient, auth: AuthFactory, db: Session) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"title": "big", "description": "'
        for _ in range(MAX_BODY_BYTES // 1024 + 1):
            yield b"x" * 1024
        yield b'"}'

    response = client.post(
        "/api/alice/tasks",
        content=chunks(),
        headers={**auth("alice"), "Content-Type": "application/json"},
    )

    assert "content-length" not in response.request.headers
    assert_problem(response, 413, "payload_too_large")
    assert db.exec(select(Task)).all() == []


def test_body_at_limit_is_accepted(client: TestClient, auth: AuthFactory) -> None:
    body = b'{"title": "fits"}'
    body += b" " * (MAX_BODY_BYTES - len(body))

    response = client.post(
        "/api/alice/tasks",
        content=body,
        headers={**auth("alice"), "Content-Type": "application/json"},
    )

    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        pytest.param(b'{"title": ', "application/json", id="truncated-json"),
        pytest.param(b"{'title': 'x'}", "application/json", id="single-quotes"),
        pytest.param(b'{"title": "x"}', "text/plain", id="text-plain"),
        pytest.param(b"title=x", "application/x-www-form-urlencoded", id="form"),
        pytest.param(b"\xff\xfe{", "application/json", id="not-utf8"),
        pytest.param(b"[" * 10_000 + b"]" * 10_000, "application/json", id="nested-arrays"),
        pytest.param(
            b'{"title": ' + b'{"a":' * 10_000 + b"1" + b"}" * 10_001,
            "application/json",
            id="nested-objects",
        ),
    ],
)
def test_unparsable_body_is_refused(
    client: TestClient, auth: AuthFactory, db: Session, content: bytes, content_type: str
) -> None:
    response = client.post(
        "/api/alice/tasks", content=content, headers={**auth("alice"), "Content-Type": content_type}
    )

    _assert_refused_body(response)
    assert db.exec(select(Task)).all() == []


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"title": 123}, id="title-number"),
        pytest.param({"title": None}, id="title-null"),
        pytest.param({"title": ["x"]}, id="title-list"),
        pytest.param({"title": "x", "priority": 5}, id="priority-number"),
        pytest.param({"title": "x", "due_at": "tomorrow"}, id="due-at-text"),
        pytest.param(["title", "x"], id="list-body"),
        pytest.param("x", id="string-body"),
        pytest.param(None, id="null-body"),
    ],
)
def test_wrong_json_types_are_422(client: TestClient, auth: AuthFactory, body: Any) -> None:
    response = client.post("/api/alice/tasks", json=body, headers=auth("alice"))

    assert_problem(response, 422, "validation_error")
    assert isinstance(response.json()["errors"], list)


def test_unexpected_exception_is_500_without_trace(
    settings: Settings, db: Session, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(settings)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret-detail SELECT * FROM users postgresql://u:p@h/d")

    with (
        caplog.at_level(logging.DEBUG),
        TestClient(app, raise_server_exceptions=False) as client,
    ):
        response = client.get("/boom")

    body = assert_problem(response, 500, "internal_error")
    assert not any(leak in response.text for leak in LEAKS), body
    assert not any(leak in caplog.text for leak in LOG_LEAKS), caplog.text
    assert all(record.exc_info is None for record in caplog.records)


def test_healthz_answers_without_token(client: TestClient) -> None:
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_answers_without_token(client: TestClient) -> None:
    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


BAD_IDS = [
    pytest.param("not-a-uuid", id="text"),
    pytest.param("9" * 40, id="huge-number"),
    pytest.param("-1", id="negative"),
    pytest.param("1e309", id="overflowing-float"),
    pytest.param("' OR '1'='1", id="sql-or"),
    pytest.param("1; DROP TABLE tasks;--", id="sql-drop"),
    pytest.param("00000000-0000-0000-0000-000000000000'--", id="uuid-then-sql"),
    pytest.param("%00", id="nul"),
]


@pytest.mark.parametrize(
    ("method", "template"),
    [
        ("GET", "/api/alice/tasks/{}"),
        ("PATCH", "/api/alice/tasks/{}/complete"),
        ("DELETE", "/api/alice/tasks/{}"),
        ("GET", "/api/alice/tasks/{}/history"),
        ("GET", "/api/alice/categories/{}"),
        ("DELETE", "/api/alice/categories/{}"),
        ("GET", "/api/alice/history/{}"),
    ],
)
@pytest.mark.parametrize("bad_id", BAD_IDS)
def test_malformed_id_is_422_or_404(
    client: TestClient, auth: AuthFactory, method: str, template: str, bad_id: str
) -> None:
    segment = bad_id if bad_id.startswith("%") else quote(bad_id, safe="")

    response = client.request(method, template.format(segment), headers=auth("alice"))

    assert response.status_code in (404, 422), response.text
    assert_problem(
        response,
        response.status_code,
        {404: "not_found", 422: "validation_error"}[response.status_code],
    )


@pytest.mark.parametrize("limit", ["0", "-1", "101", "1000000000", "abc", "1.5", ""])
@pytest.mark.parametrize("path", ["tasks", "categories", "history"])
def test_limit_out_of_range_is_422(
    client: TestClient, auth: AuthFactory, path: str, limit: str
) -> None:
    response = client.get(f"/api/alice/{path}", params={"limit": limit}, headers=auth("alice"))

    assert_problem(response, 422, "validation_error")


def _first_cursor(client: TestClient, auth: AuthFactory, user: str) -> str:
    response = client.get(f"/api/{user}/tasks", params={"limit": 1}, headers=auth(user))
    assert response.status_code == 200
    cursor: str = response.json()["next_cursor"]
    assert cursor
    return cursor


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda cursor: cursor[:-1] + ("A" if cursor[-1] != "A" else "B"), id="flip"),
        pytest.param(lambda cursor: cursor[:-4], id="truncated"),
        pytest.param(lambda cursor: "x" + cursor, id="prefixed"),
        pytest.param(lambda cursor: "!!!not base64!!!", id="garbage"),
        pytest.param(lambda cursor: "", id="empty"),
        pytest.param(lambda cursor: "A" * 2000, id="too-long"),
    ],
)
def test_tampered_cursor_is_422(
    client: TestClient, auth: AuthFactory, make_task: Factory, tamper: Any
) -> None:
    make_task("alice", title="one")
    make_task("alice", title="two")
    cursor = _first_cursor(client, auth, "alice")

    response = client.get(
        "/api/alice/tasks", params={"limit": 1, "cursor": tamper(cursor)}, headers=auth("alice")
    )

    assert_problem(response, 422, "validation_error")


def test_another_users_cursor_is_422(
    client: TestClient, auth: AuthFactory, make_task: Factory
) -> None:
    for user in ("alice", "bob"):
        make_task(user, title="one")
        make_task(user, title="two")
    cursor = _first_cursor(client, auth, "bob")

    response = client.get(
        "/api/alice/tasks", params={"limit": 1, "cursor": cursor}, headers=auth("alice")
    )

    assert_problem(response, 422, "validation_error")


def test_deadline_answers_before_the_call_ends_when_the_request_stops_at_once() -> None:
    """A request that gives up as soon as it is cancelled (no slow cleanup to wait for)
    still gets its 503 before the middleware returns to the server; a server sees a call
    that returns without a response as a 500."""
    sent: list[Message] = []

    async def stalls(_scope: Any, _receive: Any, _send: Any) -> None:
        await asyncio.sleep(10)

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        await asyncio.sleep(0)  # a real server's send yields to the loop
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/api/alice/tasks", "headers": []}
    asyncio.run(Deadline(stalls, seconds=0.05)(scope, receive, send))

    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[0]["status"] == 503
    assert json.loads(sent[1]["body"])["code"] == "timeout"
