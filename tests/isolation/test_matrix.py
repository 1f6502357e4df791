"""Ownership isolation over every operation of the OpenAPI document: 401, 403 and 404."""

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from backend.config import Settings
from backend.main import create_app
from tests.conftest import AuthFactory, assert_problem
from tests.operations import (
    ALL,
    EQUIVALENTS,
    ID_OPS,
    NEVER_SEEN,
    NFC_USER,
    PROTECTED,
    PUBLIC_PATHS,
    READS,
    USER_OPS,
    Operation,
    dump,
    operations,
    seed,
    seed_world,
    send,
    url,
)


@pytest.fixture
def world(client: TestClient, auth: AuthFactory) -> dict[str, dict[str, str]]:
    return seed_world(client, auth)


def test_operations_match_the_served_document(settings: Settings) -> None:
    assert operations(create_app(settings).openapi()) == ALL
    assert len(USER_OPS) >= 19
    assert {op.path for op in ALL} - {op.path for op in USER_OPS} == PUBLIC_PATHS


@pytest.mark.parametrize("op", USER_OPS, ids=str)
def test_operation_succeeds_for_the_owner(
    client: TestClient, auth: AuthFactory, world: dict[str, dict[str, str]], op: Operation
) -> None:
    response = send(client, op, url(op, "alice", world["alice"]), auth("alice"))

    assert response.is_success, response.text


@pytest.mark.parametrize("op", PROTECTED, ids=str)
def test_operation_without_token_is_401(
    client: TestClient, db: Session, world: dict[str, dict[str, str]], op: Operation
) -> None:
    before = dump(db)

    response = send(client, op, url(op, "alice", world["alice"]), {})

    assert_problem(response, 401, "not_authenticated")
    assert response.headers["www-authenticate"] == "Bearer"
    assert dump(db) == before


def assert_refused_alike(
    client: TestClient,
    auth: AuthFactory,
    db: Session,
    op: Operation,
    targets: tuple[str, str],
    status: int,
    code: str,
) -> None:
    """Alice's request at the first target (rows that exist) and at the second (rows that
    never did) get the same problem, byte for byte, and change nothing stored."""
    before = dump(db)

    existing, never = (send(client, op, target, auth("alice")) for target in targets)

    assert_problem(existing, status, code)
    assert never.status_code == status
    assert existing.content == never.content
    assert dump(db) == before


@pytest.mark.parametrize("op", USER_OPS, ids=str)
def test_operation_on_another_user_is_403_alike_for_known_and_unknown(
    client: TestClient,
    auth: AuthFactory,
    db: Session,
    world: dict[str, dict[str, str]],
    op: Operation,
) -> None:
    targets = url(op, "bob", world["bob"]), url(op, "carol", NEVER_SEEN)

    assert_refused_alike(client, auth, db, op, targets, 403, "forbidden")


@pytest.mark.parametrize("op", ID_OPS, ids=str)
def test_operation_on_another_users_ids_is_404_alike_for_missing(
    client: TestClient,
    auth: AuthFactory,
    db: Session,
    world: dict[str, dict[str, str]],
    op: Operation,
) -> None:
    targets = url(op, "alice", world["bob"]), url(op, "alice", NEVER_SEEN)

    assert_refused_alike(client, auth, db, op, targets, 404, "not_found")


@pytest.mark.parametrize("op", READS, ids=str)
def test_read_never_shows_another_users_rows(
    client: TestClient, auth: AuthFactory, world: dict[str, dict[str, str]], op: Operation
) -> None:
    target = url(op, "alice", world["alice"])

    plain = client.get(target, headers=auth("alice"))
    widened = client.get(target, params={"user_id": "bob", "owner": "bob"}, headers=auth("alice"))

    assert plain.status_code == 200
    assert widened.status_code in (200, 422)
    if widened.status_code == 200:
        assert _content(widened.json()) == _content(plain.json())
    for response in (plain, widened):
        text = json.dumps(_content(response.json()))
        assert "bob" not in text
        assert not any(row_id in text for row_id in world["bob"].values())


STAMPED = {"next_since"}
"""Fields the server stamps per answer: a sync token carries the time it was issued (its
owner is in its MAC, tested in tests/test_changes.py), and base64 may spell anything."""


def _content(body: Any) -> Any:
    if isinstance(body, dict):
        return {name: value for name, value in body.items() if name not in STAMPED}
    return body


def test_search_never_matches_another_users_tasks(
    client: TestClient, auth: AuthFactory, world: dict[str, dict[str, str]]
) -> None:
    response = client.get("/api/alice/tasks", params={"q": "secret"}, headers=auth("alice"))

    assert response.status_code == 200
    assert [item["id"] for item in response.json()["items"]] == [world["alice"]["task"]]


EQUIVALENT_PATHS = [pytest.param(*pair, id=name) for name, pair in EQUIVALENTS.items()]


@pytest.mark.parametrize(("subject", "segment"), EQUIVALENT_PATHS)
def test_operations_on_an_equivalent_user_id_are_refused(
    client: TestClient,
    auth: AuthFactory,
    db: Session,
    subject: str,
    segment: str,
) -> None:
    """Every operation, with the data owner's real ids, under a path that only looks like it."""
    owned = seed(client, auth, "alice" if subject == "alice" else NFC_USER)
    before = dump(db)

    answers = {
        str(op): send(client, op, url(op, segment, owned), auth(subject)).status_code
        for op in USER_OPS
    }

    served = {op: status for op, status in answers.items() if status < 400 or status >= 500}
    assert served == {}
    assert dump(db) == before
