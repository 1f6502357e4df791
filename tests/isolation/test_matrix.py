"""Ownership isolation over every operation of the OpenAPI document: 401, 403 and 404."""

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx2
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlmodel import Session

from backend.config import Settings
from backend.main import create_app
from tests.conftest import SECRET, TABLES, AuthFactory, Factory, Headers, assert_problem

PUBLIC_PATHS = frozenset({"/healthz", "/readyz"})
USER_PREFIX = "/api/{user_id}"
MISSING_ID = "00000000-0000-7000-8000-00000000d1ed"
PARAM = re.compile(r"\{(\w+)\}")

# The kind of row each path id names; a path id not listed here fails the matrix.
ID_KINDS = {
    "task_id": "task",
    "category_id": "category",
    "entry_id": "history",
    "token_id": "token",
}

# A valid body per write operation, by operation id.
BODIES: dict[str, dict[str, Any]] = {
    "create_task": {"title": "Matrix task"},
    "replace_task": {"title": "Matrix task"},
    "update_task": {"title": "Matrix task"},
    "create_category": {"name": "Matrix category"},
    "replace_category": {"name": "Matrix category"},
    "update_category": {"name": "Matrix category"},
    "create_token": {"name": "Matrix token"},
}

NFC_USER = "jos\u00e9"
NFD_USER = "jose\u0301"


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    operation_id: str
    body_required: bool

    @property
    def id_params(self) -> list[str]:
        return [name for name in PARAM.findall(self.path) if name != "user_id"]

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def _operations(document: dict[str, Any]) -> list[Operation]:
    return [
        Operation(
            method=method.upper(),
            path=path,
            operation_id=operation["operationId"],
            body_required=operation.get("requestBody", {}).get("required", False),
        )
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
    ]


def _document() -> dict[str, Any]:
    settings = Settings(_env_file=None, environment="test", jwt_secret=SECRET)
    return create_app(settings).openapi()


ALL = _operations(_document())
PROTECTED = [op for op in ALL if op.path not in PUBLIC_PATHS]
USER_OPS = [op for op in ALL if op.path.startswith(USER_PREFIX)]
ID_OPS = [op for op in USER_OPS if op.id_params]
READS = [op for op in USER_OPS if op.method == "GET"]


def _send(client: TestClient, op: Operation, url: str, headers: Headers) -> httpx2.Response:
    body = BODIES.get(op.operation_id)
    if op.body_required and body is None:
        pytest.fail(f"{op.operation_id} needs a body: add one to BODIES")
    return client.request(op.method, url, json=body, headers=headers)


def _url(op: Operation, user: str, ids: dict[str, str]) -> str:
    """The operation's path for `user` (already URL-encoded) with one id of each kind."""

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "user_id":
            return user
        if name not in ID_KINDS:
            pytest.fail(f"{op}: no id kind for path parameter {name}; add it to ID_KINDS")
        return ids[ID_KINDS[name]]

    return PARAM.sub(fill, op.path)


def _seed(
    client: TestClient, auth: AuthFactory, make: dict[str, Factory], user: str
) -> dict[str, str]:
    """A category, a task in it, a deleted task, a personal token; one id of each kind."""
    category = make["category"](user, name=f"{user} secret category")
    task = make["task"](user, title=f"{user} secret task", category_id=category["id"])
    gone = make["task"](user, title=f"{user} deleted task")
    assert client.delete(f"/api/{quote(user)}/tasks/{gone['id']}", headers=auth(user)).is_success
    history = client.get(f"/api/{quote(user)}/history", headers=auth(user)).json()["items"]
    token = client.post(f"/api/{quote(user)}/tokens", json={"name": "cli"}, headers=auth(user))
    assert token.status_code == 201, token.text
    return {
        "task": task["id"],
        "category": category["id"],
        "history": history[-1]["id"],
        "token": token.json()["id"],
    }


@pytest.fixture
def makers(make_task: Factory, make_category: Factory) -> dict[str, Factory]:
    return {"task": make_task, "category": make_category}


@pytest.fixture
def world(
    client: TestClient, auth: AuthFactory, makers: dict[str, Factory]
) -> dict[str, dict[str, str]]:
    return {user: _seed(client, auth, makers, user) for user in ("alice", "bob")}


def _dump(db: Session) -> dict[str, list[tuple[Any, ...]]]:
    """Every stored row, in a stable order."""
    rows = {}
    for table in TABLES:
        order = "id" if table == "users" else "user_id, id"
        result = db.connection().execute(text(f"SELECT * FROM {table} ORDER BY {order}"))  # noqa: S608
        rows[table] = [tuple(row) for row in result]
    db.rollback()
    return rows


def test_operations_match_the_served_document(settings: Settings) -> None:
    assert _operations(create_app(settings).openapi()) == ALL
    assert len(USER_OPS) >= 19
    assert {op.path for op in ALL} - {op.path for op in USER_OPS} == PUBLIC_PATHS


@pytest.mark.parametrize("op", USER_OPS, ids=str)
def test_operation_succeeds_for_the_owner(
    client: TestClient, auth: AuthFactory, world: dict[str, dict[str, str]], op: Operation
) -> None:
    response = _send(client, op, _url(op, "alice", world["alice"]), auth("alice"))

    assert response.is_success, response.text


@pytest.mark.parametrize("op", PROTECTED, ids=str)
def test_operation_without_token_is_401(
    client: TestClient, db: Session, world: dict[str, dict[str, str]], op: Operation
) -> None:
    before = _dump(db)

    response = _send(client, op, _url(op, "alice", world["alice"]), {})

    assert_problem(response, 401, "not_authenticated")
    assert response.headers["www-authenticate"] == "Bearer"
    assert _dump(db) == before


@pytest.mark.parametrize("op", USER_OPS, ids=str)
def test_operation_on_another_user_is_403_alike_for_known_and_unknown(
    client: TestClient,
    auth: AuthFactory,
    db: Session,
    world: dict[str, dict[str, str]],
    op: Operation,
) -> None:
    before = _dump(db)
    never_seen = dict.fromkeys(ID_KINDS.values(), MISSING_ID)

    known = _send(client, op, _url(op, "bob", world["bob"]), auth("alice"))
    unknown = _send(client, op, _url(op, "carol", never_seen), auth("alice"))

    assert_problem(known, 403, "forbidden")
    assert unknown.status_code == 403
    assert known.content == unknown.content
    assert _dump(db) == before


@pytest.mark.parametrize("op", ID_OPS, ids=str)
def test_operation_on_another_users_ids_is_404_alike_for_missing(
    client: TestClient,
    auth: AuthFactory,
    db: Session,
    world: dict[str, dict[str, str]],
    op: Operation,
) -> None:
    before = _dump(db)
    missing = dict.fromkeys(ID_KINDS.values(), MISSING_ID)

    foreign = _send(client, op, _url(op, "alice", world["bob"]), auth("alice"))
    never = _send(client, op, _url(op, "alice", missing), auth("alice"))

    assert_problem(foreign, 404, "not_found")
    assert never.status_code == 404
    assert foreign.content == never.content
    assert _dump(db) == before


@pytest.mark.parametrize("op", READS, ids=str)
def test_read_never_shows_another_users_rows(
    client: TestClient, auth: AuthFactory, world: dict[str, dict[str, str]], op: Operation
) -> None:
    url = _url(op, "alice", world["alice"])

    plain = client.get(url, headers=auth("alice"))
    widened = client.get(url, params={"user_id": "bob", "owner": "bob"}, headers=auth("alice"))

    assert plain.status_code == 200
    assert widened.status_code in (200, 422)
    if widened.status_code == 200:
        assert widened.json() == plain.json()
    for response in (plain, widened):
        assert "bob" not in response.text
        assert not any(row_id in response.text for row_id in world["bob"].values())


def test_search_never_matches_another_users_tasks(
    client: TestClient, auth: AuthFactory, world: dict[str, dict[str, str]]
) -> None:
    response = client.get("/api/alice/tasks", params={"q": "secret"}, headers=auth("alice"))

    assert response.status_code == 200
    assert [item["id"] for item in response.json()["items"]] == [world["alice"]["task"]]


EQUIVALENT_PATHS = [
    pytest.param("alice", "ALICE", id="uppercase"),
    pytest.param("alice", "Alice", id="capitalized"),
    pytest.param("alice", "alice%20", id="trailing-space"),
    pytest.param("alice", "%20alice", id="leading-space"),
    pytest.param("alice", quote("\u0430lice"), id="cyrillic-a"),
    pytest.param("alice", "alice%2F..", id="encoded-slash"),
    pytest.param("alice", "alice%00", id="nul"),
    pytest.param(NFC_USER, quote(NFD_USER), id="nfd-path-nfc-token"),
    pytest.param(NFD_USER, quote(NFC_USER), id="nfc-path-nfd-token"),
]


@pytest.mark.parametrize(("subject", "segment"), EQUIVALENT_PATHS)
def test_operations_on_an_equivalent_user_id_are_refused(
    client: TestClient,
    auth: AuthFactory,
    db: Session,
    makers: dict[str, Factory],
    subject: str,
    segment: str,
) -> None:
    """Every operation, with the data owner's real ids, under a path that only looks like it."""
    owned = _seed(client, auth, makers, "alice" if subject == "alice" else NFC_USER)
    before = _dump(db)

    answers = {
        str(op): _send(client, op, _url(op, segment, owned), auth(subject)).status_code
        for op in USER_OPS
    }

    served = {op: status for op, status in answers.items() if status < 400 or status >= 500}
    assert served == {}
    assert _dump(db) == before
