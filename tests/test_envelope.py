"""The optional envelope, operation by operation of the OpenAPI document: the envelope answer
of a request agrees with its plain answer (status, headers, `data` or `error`), on
success, on each kind of error, on a replay and on a conditional request."""

import json
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import event
from sqlalchemy.exc import OperationalError
from sqlmodel import Session
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend import middleware
from backend.config import Settings
from backend.envelope import ENVELOPE_JSON, Envelope, wants_envelope
from backend.main import create_app
from backend.messages import QUIET_WRITES
from tests.conftest import AuthFactory
from tests.isolation.test_matrix import _content
from tests.operations import (
    BODY_OPS,
    ID_OPS,
    READS,
    USER_OPS,
    Operation,
    never_seen_url,
    seed_world,
    send,
    url,
)

ENVELOPE = {"Accept": ENVELOPE_JSON}
PER_ANSWER = frozenset({"content-type", "content-length", "vary", "x-request-id", "ratelimit"})
"""Headers that the envelope sets itself, or that differ between any two answers."""


class Plain:
    """Records the answer the app gave inside `Envelope`: the plain answer of the request."""

    answers: list[tuple[int, list[tuple[str, str]], bytes]] = []

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        status, headers, body = 0, [], b""

        async def record(message: Message) -> None:
            nonlocal status, headers, body
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [(k.decode(), v.decode()) for k, v in message["headers"]]
            elif message["type"] == "http.response.body":
                body += message.get("body", b"")
            await send(message)

        await self.app(scope, receive, record)
        if scope["type"] == "http":
            Plain.answers.append((status, headers, body))


@pytest.fixture(scope="module")
def recorded_app(settings: Settings) -> FastAPI:
    """The app with `Plain` right inside `Envelope`, where the route's answer comes out."""
    app = create_app(settings)
    where = next(i for i, m in enumerate(app.user_middleware) if m.cls == Envelope)  # type: ignore[comparison-overlap]
    app.user_middleware.insert(where + 1, Middleware(Plain))
    return app


@pytest.fixture
def client(recorded_app: FastAPI, db: Session) -> Iterator[TestClient]:
    recorded_app.state.known_users.clear()
    with TestClient(recorded_app) as client:
        yield client


@pytest.fixture
def world(client: TestClient, auth: AuthFactory) -> dict[str, dict[str, str]]:
    return seed_world(client, auth)


def _kept(headers: Any) -> list[tuple[str, str]]:
    pairs = headers.multi_items() if hasattr(headers, "multi_items") else headers
    return sorted((k.lower(), v) for k, v in pairs if k.lower() not in PER_ANSWER)


def assert_agrees(
    response: httpx2.Response, plain: tuple[int, list[tuple[str, str]], bytes]
) -> dict[str, Any]:
    """The envelope answer `response` is the plain answer `plain`, enveloped."""
    status, headers, body = plain
    assert response.status_code == (200 if status == 204 else status), response.text
    assert response.headers["content-type"] == ENVELOPE_JSON
    assert "Accept" in response.headers["vary"]
    assert _kept(response.headers) == _kept(headers)
    document: dict[str, Any] = response.json()
    assert list(document) == ["success", "data", "popup", "error"]
    content: Any = json.loads(body) if body else None
    if status < 400:
        assert (document["success"], document["data"], document["error"]) == (True, content, None)
    else:
        assert (document["success"], document["data"], document["error"]) == (False, None, content)
        assert document["popup"]["icon"] == ("warning" if status in (409, 412, 429) else "error")
        assert document["popup"]["title"] == content["title"]
        assert document["popup"]["text"]
    return document


ANSWERS = [op for op in USER_OPS if not op.streams]
"""The operations that answer one JSON document (an event stream is not enveloped)."""


@pytest.mark.parametrize("op", ANSWERS, ids=str)
def test_envelope_of_each_operation_is_its_plain_answer_with_a_popup_for_writes(
    client: TestClient, auth: AuthFactory, world: dict[str, dict[str, str]], op: Operation
) -> None:
    Plain.answers.clear()

    response = send(client, op, url(op, "alice", world["alice"]), auth("alice") | ENVELOPE)

    [plain] = Plain.answers
    document = assert_agrees(response, plain)
    assert document["success"] is True
    if op.writes and op.operation_id not in QUIET_WRITES:
        assert set(document["popup"]) == {"icon", "title", "text"}
        assert document["popup"]["icon"] == "success"
        assert document["popup"]["title"]
        assert document["popup"]["text"].endswith(".")
    else:
        assert document["popup"] is None


@pytest.mark.parametrize("op", READS, ids=str)
def test_a_read_answers_the_same_data_plain_and_enveloped(
    client: TestClient, auth: AuthFactory, world: dict[str, dict[str, str]], op: Operation
) -> None:
    target = url(op, "alice", world["alice"])

    plain = send(client, op, target, auth("alice"))
    enveloped = send(client, op, target, auth("alice") | ENVELOPE)

    assert plain.headers["content-type"] == "application/json"
    assert "Accept" in plain.headers["vary"]
    assert enveloped.status_code == plain.status_code == 200
    assert _content(enveloped.json()["data"]) == _content(plain.json())
    assert _kept(enveloped.headers) == _kept(plain.headers)


def _errors(op: Operation) -> list[tuple[str, str, str | None, Any]]:
    """(status, path user, caller, body) of the 4xx each operation can be sent into."""
    kinds: list[tuple[str, str, str | None, Any]] = [
        ("401", "alice", None, None),
        ("403", "bob", "alice", None),
    ]
    if op in ID_OPS:
        kinds.append(("404", "alice", "alice", None))
    if op in BODY_OPS:
        kinds.append(("422", "alice", "alice", ["not", "an", "object"]))
    return kinds


ERRORS = [(op, *kind) for op in USER_OPS for kind in _errors(op)]


@pytest.mark.parametrize(
    ("op", "kind", "user", "as_user", "body"),
    ERRORS,
    ids=[f"{op} {kind}" for op, kind, *_ in ERRORS],
)
def test_an_error_answers_the_same_problem_plain_and_enveloped(
    client: TestClient,
    auth: AuthFactory,
    op: Operation,
    kind: str,
    user: str,
    as_user: str | None,
    body: Any,
) -> None:
    headers = auth(as_user) if as_user else {}
    target = never_seen_url(op, user)

    plain = send(client, op, target, headers, body)
    Plain.answers.clear()
    enveloped = send(client, op, target, headers | ENVELOPE, body)

    assert plain.status_code == int(kind), plain.text
    assert plain.headers["content-type"] == "application/problem+json"
    document = assert_agrees(enveloped, Plain.answers[0])
    assert document["error"] == plain.json()
    assert _kept(enveloped.headers) == _kept(plain.headers)


@pytest.fixture
def database_down(client: TestClient) -> Iterator[None]:
    """Every statement of the app's engine fails as a lost server does."""
    engine = client.app.state.engine.sync_engine  # type: ignore[attr-defined]

    def fail(*_args: Any) -> None:
        raise OperationalError("SELECT", {}, ConnectionError("the server went away"))

    event.listen(engine, "before_cursor_execute", fail)
    yield
    event.remove(engine, "before_cursor_execute", fail)


@pytest.mark.parametrize("op", USER_OPS, ids=str)
def test_a_database_fault_answers_503_plain_and_enveloped(
    client: TestClient, auth: AuthFactory, database_down: None, op: Operation
) -> None:
    target = never_seen_url(op, "alice")

    plain = send(client, op, target, auth("alice"))
    Plain.answers.clear()
    enveloped = send(client, op, target, auth("alice") | ENVELOPE)

    assert (plain.status_code, plain.json()["code"]) == (503, "db_unavailable")
    document = assert_agrees(enveloped, Plain.answers[0])
    assert document["error"] == plain.json()
    assert enveloped.headers["retry-after"] == plain.headers["retry-after"]


def test_an_idempotent_retry_replays_the_first_answer_in_the_envelope_it_asks_for(
    client: TestClient, auth: AuthFactory
) -> None:
    headers = auth() | {"Idempotency-Key": "envelope-replay-1"}

    first = client.post("/api/alice/tasks", json={"title": "Buy milk"}, headers=headers)
    retry = client.post("/api/alice/tasks", json={"title": "Buy milk"}, headers=headers | ENVELOPE)

    assert (first.status_code, retry.status_code) == (201, 201)
    assert retry.headers["idempotent-replayed"] == "true"
    assert retry.headers["location"] == first.headers["location"]
    assert retry.json() == {
        "success": True,
        "data": first.json(),
        "popup": {"icon": "success", "title": "Task created", "text": "“Buy milk” was added."},
        "error": None,
    }
    listed = client.get("/api/alice/tasks", headers=auth()).json()["items"]
    assert [task["title"] for task in listed] == ["Buy milk"]


def test_a_stale_write_is_412_with_a_warning_and_a_fresh_read_is_304_without_a_body(
    client: TestClient, auth: AuthFactory
) -> None:
    created = client.post("/api/alice/tasks", json={"title": "Buy milk"}, headers=auth()).json()
    path = f"/api/alice/tasks/{created['id']}"

    stale = client.patch(
        path, json={"title": "Oat milk"}, headers=auth() | ENVELOPE | {"If-Match": '"7"'}
    )
    fresh = client.get(path, headers=auth() | ENVELOPE | {"If-None-Match": '"1"'})

    assert stale.status_code == 412
    assert stale.headers["etag"] == '"1"'
    assert stale.json()["popup"] == {
        "icon": "warning",
        "title": "Changed elsewhere",
        "text": "The task was changed elsewhere since you loaded it. "
        "Reload the task and try again.",
    }
    assert stale.json()["error"]["code"] == "precondition_failed"
    assert (fresh.status_code, fresh.content, fresh.headers["etag"]) == (304, b"", '"1"')


def test_an_empty_title_reads_as_a_sentence_in_the_problem_and_the_popup(
    client: TestClient, auth: AuthFactory
) -> None:
    plain = client.post("/api/alice/tasks", json={"title": "   "}, headers=auth())
    enveloped = client.post("/api/alice/tasks", json={"title": ""}, headers=auth() | ENVELOPE)

    [error] = plain.json()["errors"]
    assert (error["loc"], error["msg"]) == (["body", "title"], "Title must not be empty.")
    assert plain.json()["title"] == "Some fields are not valid"
    assert enveloped.json()["popup"] == {
        "icon": "error",
        "title": "Some fields are not valid",
        "text": "Title must not be empty.",
    }


def test_rate_limited_is_a_warning_that_says_how_long_to_wait(
    settings: Settings, auth: AuthFactory, db: Session
) -> None:
    app = create_app(settings.model_copy(update={"rate_limit_user": "1/minute"}))
    with TestClient(app) as client:
        client.get("/api/alice/tasks", headers=auth())
        refused = client.get("/api/alice/tasks", headers=auth() | ENVELOPE)

    assert refused.status_code == 429
    seconds = int(refused.headers["retry-after"])
    wait = "1 second" if seconds == 1 else f"{seconds} seconds"
    assert refused.json()["popup"] == {
        "icon": "warning",
        "title": "Too many requests",
        "text": f"Too many requests. Wait {wait} and try again.",
    }


@pytest.mark.parametrize(
    ("accept", "enveloped"),
    [
        (ENVELOPE_JSON, True),
        (f"application/json;q=0.5, {ENVELOPE_JSON}", True),
        (f"{ENVELOPE_JSON};q=0.9, */*;q=0.1", True),
        (f"application/json, {ENVELOPE_JSON}", True),
        (f"application/json, {ENVELOPE_JSON};q=0.5", False),
        (f"{ENVELOPE_JSON};q=0.5, */*;q=0.8, application/json;q=0.1", True),
        (f"{ENVELOPE_JSON};q=0.5, application/*;q=0.8", False),
        ("Application/Vnd.Todo.Envelope+JSON ; Q=0.7 ; charset=utf-8", True),
        (f"{ENVELOPE_JSON};q=0", False),
        (f"{ENVELOPE_JSON};q=oops", False),
        (f"{ENVELOPE_JSON};q=2", False),
        ("application/json", False),
        ("*/*", False),
        ("", False),
    ],
)
def test_the_envelope_is_answered_where_accept_prefers_it(accept: str, enveloped: bool) -> None:
    assert wants_envelope(accept) is enveloped


def test_routes_outside_the_api_answer_plain_whatever_the_accept(client: TestClient) -> None:
    response = client.get("/healthz", headers=ENVELOPE)

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert "vary" not in response.headers


@pytest.mark.parametrize(
    ("accept", "media_type"),
    [
        (f"text/html, {ENVELOPE_JSON};q=0.9, */*;q=0.8", ENVELOPE_JSON),
        (f"{ENVELOPE_JSON};q=0.5, application/json", "application/json"),
        ("application/json", "application/json"),
        (None, "application/json"),
    ],
)
def test_list_answers_the_media_type_its_accept_prefers(
    client: TestClient, auth: AuthFactory, accept: str | None, media_type: str
) -> None:
    headers = auth() | ({"Accept": accept} if accept else {})

    response = client.get("/api/alice/tasks", headers=headers)

    assert response.status_code == 200
    assert response.headers["content-type"] == media_type
    assert response.headers["vary"] == "Accept"


@pytest.mark.parametrize(
    ("method", "path", "content", "headers", "status", "code"),
    [
        ("POST", "/api/alice/tasks", b'{"title": ', {}, 422, "validation_error"),
        ("POST", "/api/alice/tasks", b"[" * 10_000 + b"]" * 10_000, {}, 400, "bad_request"),
        ("PUT", "/api/alice/tasks", b"{}", {}, 405, "method_not_allowed"),
        ("POST", "/api/alice/tasks", b"x" * 70_000, {}, 413, "payload_too_large"),
        ("GET", "/api/alice/nothing-here", b"", {}, 404, "not_found"),
        ("POST", "/api/alice/categories", b'{"name": "Home"}', {}, 409, "conflict"),
    ],
    ids=["422 json", "400 nested", "405", "413", "404 no route", "409"],
)
def test_an_error_raised_before_or_outside_a_route_is_enveloped_like_the_plain_one(
    client: TestClient,
    auth: AuthFactory,
    method: str,
    path: str,
    content: bytes,
    headers: dict[str, str],
    status: int,
    code: str,
) -> None:
    sent = auth() | {"Content-Type": "application/json"} | headers
    if code == "conflict":
        client.post(path, content=content, headers=sent)

    plain = client.request(method, path, content=content, headers=sent)
    Plain.answers.clear()
    enveloped = client.request(method, path, content=content, headers=sent | ENVELOPE)

    assert (plain.status_code, plain.json()["code"]) == (status, code)
    document = assert_agrees(enveloped, Plain.answers[0])
    assert document["error"] == plain.json()
    assert document["popup"]["text"].endswith(".")
    assert "`" not in document["popup"]["text"]


@pytest.mark.parametrize("accept", [ENVELOPE_JSON, "application/json"])
def test_an_answer_is_sent_before_the_request_session_ends(
    client: TestClient, auth: AuthFactory, monkeypatch: pytest.MonkeyPatch, accept: str
) -> None:
    """The answer goes out with its last byte, enveloped or not; ending the session (a
    read's COMMIT) comes after, off the client's time."""
    events: list[str] = []
    ending = middleware.RequestSession.end

    async def end(self: middleware.RequestSession, *, commit: bool) -> None:
        events.append("session ended")
        await ending(self, commit=commit)

    monkeypatch.setattr(middleware.RequestSession, "end", end)
    app = client.app

    async def observed(scope: Scope, receive: Receive, send: Send) -> None:
        async def record(message: Message) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body"):
                events.append("answer sent")
            await send(message)

        await app(scope, receive, record)

    async def call() -> httpx2.Response:
        transport = httpx2.ASGITransport(app=observed)
        async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as c:
            return await c.get("/api/alice/tasks", headers=auth() | {"Accept": accept})

    assert client.portal is not None
    response = client.portal.call(call)

    assert response.status_code == 200
    assert response.headers["content-type"] == accept
    assert events == ["answer sent", "session ended"]
