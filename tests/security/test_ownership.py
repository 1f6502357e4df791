"""Security cases 18 to 24 (ownership) over every operation of the OpenAPI document."""

from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote
from uuid import UUID

import httpx2
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from backend.models import Category, PersonalToken, Tag, Task, TaskHistory, Webhook
from tests.conftest import AuthFactory, Headers
from tests.operations import (
    ALL,
    BODIES,
    BODY_OPS,
    EQUIVALENTS,
    ID_KINDS,
    ID_OPS,
    LISTS,
    MISSING_ID,
    NEVER_SEEN,
    NFC_USER,
    PUBLIC_PATHS,
    READS,
    USER_OPS,
    Operation,
    bearer,
    create_pat,
    dump,
    seed,
    seed_world,
    send,
    url,
)

SERVER_OWNED: dict[str, Any] = {
    "id": MISSING_ID,
    "user_id": "bob",
    "owner": "bob",
    "created_at": "2020-01-01T00:00:00Z",
    "updated_at": "2020-01-01T00:00:00Z",
    "completed_at": "2020-01-01T00:00:00Z",
    "version": 7,
}
WIDENING = {"user_id": "bob", "owner": "bob", "owner_id": "bob", "userId": "bob"}
FORGED_TASK = UUID("00000000-0000-7000-8000-0000000f0a9e")


@pytest.fixture
def world(client: TestClient, auth: AuthFactory) -> dict[str, dict[str, str]]:
    return seed_world(client, auth)


def callers(client: TestClient, auth: AuthFactory, user: str = "alice") -> dict[str, Headers]:
    """The ways `user` can call: a session token and a write-scoped personal token, already
    used once (so that later uses within the minute write nothing, not even `last_used_at`)."""
    token = create_pat(client, auth, user, scope="write")["token"]
    assert client.get(f"/api/{quote(user)}/me", headers=bearer(token)).status_code == 200
    return {"session": auth(user), "personal": bearer(token)}


def allowed(caller: str, op: Operation) -> bool:
    """Token management is closed to personal tokens (tests/test_personal_tokens.py)."""
    return caller == "session" or not op.manages_tokens


def outcome(response: httpx2.Response) -> tuple[int, str | None]:
    """The status, and the problem's `code` when the answer is a problem document."""
    if response.headers.get("content-type") == "application/problem+json":
        return response.status_code, response.json()["code"]
    return response.status_code, None


def owned_ids(db: Session, user: str) -> set[str]:
    """The ids of every row `user` owns, of every kind."""
    db.expire_all()
    ids = set()
    for model in (Task, Category, TaskHistory, PersonalToken, Webhook, Tag):
        ids |= {str(row) for row in db.exec(select(model.id).where(model.user_id == user))}
    db.rollback()
    return ids


def compare(
    client: TestClient,
    headers_by: dict[str, Headers],
    ops: list[Operation],
    probe: tuple[str, dict[str, str]],
    control: tuple[str, dict[str, str]],
) -> dict[str, tuple[int, str | None, bool]]:
    """Per caller and operation, sent at the probe's and the control's (user, ids): the
    probe's status and code, and whether its bytes equal the control's."""
    answers = {}
    for caller, headers in headers_by.items():
        for op in ops:
            first = send(client, op, url(op, *probe), headers)
            second = send(client, op, url(op, *control), headers)
            answers[f"{caller} {op}"] = (*outcome(first), first.content == second.content)
    return answers


def enforce_foreign_keys(db: Session) -> None:
    """SQLite checks foreign keys only when asked, as the service's own engine always does."""
    if db.get_bind().dialect.name == "sqlite":
        db.connection().exec_driver_sql("PRAGMA foreign_keys=ON")


def test_case_18_another_users_path_is_403_alike_for_known_and_unknown(
    client: TestClient, auth: AuthFactory, db: Session, world: dict[str, dict[str, str]]
) -> None:
    headers_by = callers(client, auth)
    before = dump(db)

    answers = compare(client, headers_by, USER_OPS, ("bob", world["bob"]), ("carol", NEVER_SEEN))

    assert answers == dict.fromkeys(answers, (403, "forbidden", True))
    assert len(answers) == 2 * len(USER_OPS)
    assert dump(db) == before


def test_case_19_equivalent_user_ids_are_never_served(
    client: TestClient, auth: AuthFactory, db: Session
) -> None:
    owned = {user: seed(client, auth, user) for user in ("alice", NFC_USER)}
    subjects = dict.fromkeys(subject for subject, _ in EQUIVALENTS.values())
    headers_by = {subject: callers(client, auth, subject) for subject in subjects}
    before = dump(db)

    served = {}
    for name, (subject, segment) in EQUIVALENTS.items():
        ids = owned["alice" if subject == "alice" else NFC_USER]
        for caller, headers in headers_by[subject].items():
            for op in USER_OPS:
                status = send(client, op, url(op, segment, ids), headers).status_code
                if not 400 <= status < 500:
                    served[f"{name} {caller} {op}"] = status

    assert served == {}
    assert dump(db) == before
    for subject, by_caller in headers_by.items():
        for headers in by_caller.values():
            assert client.get(f"/api/{quote(subject)}/me", headers=headers).status_code == 200


def test_case_20_another_users_ids_are_404_alike_for_missing(
    client: TestClient, auth: AuthFactory, db: Session, world: dict[str, dict[str, str]]
) -> None:
    headers_by = callers(client, auth)
    before = dump(db)

    answers = compare(client, headers_by, ID_OPS, ("alice", world["bob"]), ("alice", NEVER_SEEN))

    assert answers == {
        f"{caller} {op}": (404, "not_found", True)
        if allowed(caller, op)
        else (403, "insufficient_scope", True)
        for caller in headers_by
        for op in ID_OPS
    }
    assert dump(db) == before


def test_case_21_lists_and_searches_never_show_another_users_rows(
    client: TestClient, auth: AuthFactory, db: Session, world: dict[str, dict[str, str]]
) -> None:
    headers_by = callers(client, auth)
    theirs = owned_ids(db, "bob")
    foreign_filters = {name: world["bob"][kind] for name, kind in ID_KINDS.items()}
    searches = [{"q": "secret"} | WIDENING, {"q": "bob"} | WIDENING, foreign_filters | WIDENING]

    answers: dict[str, httpx2.Response] = {}
    for caller, headers in headers_by.items():
        for op in READS:
            if allowed(caller, op):
                target = url(op, "alice", world["alice"])
                plain = answers[f"{caller} {op}"] = client.get(target, headers=headers)
                assert plain.status_code == 200, f"{caller} {op}"
                widened = client.get(target, params=WIDENING, headers=headers)
                if widened.status_code != 422:  # refusing unknown parameters is as good
                    assert (widened.status_code, widened.json()) == (200, plain.json()), str(op)
                for params in searches if op in LISTS else []:
                    searched = client.get(target, params=params, headers=headers)
                    assert searched.status_code in (200, 422), f"{caller} {op} {params}"
                    answers[f"{caller} {op} {params}"] = searched

    leaks = [
        label
        for label, response in answers.items()
        if "bob" in response.text or any(row in response.text for row in theirs)
    ]
    assert leaks == []
    assert len(theirs) >= 6
    found = client.get("/api/alice/tasks", params={"q": "secret"} | WIDENING, headers=auth())
    assert found.status_code == 200
    assert [item["id"] for item in found.json()["items"]] == [world["alice"]["task"]]


def test_case_22_server_owned_fields_are_refused_and_the_owner_is_the_subject(
    client: TestClient, auth: AuthFactory, db: Session, world: dict[str, dict[str, str]]
) -> None:
    headers_by = callers(client, auth)
    before = dump(db)

    answers = {}
    for caller, headers in headers_by.items():
        for op in BODY_OPS:
            if not allowed(caller, op):
                continue
            for field, value in SERVER_OWNED.items():
                body = BODIES[op.operation_id] | {field: value}
                response = send(client, op, url(op, "alice", world["alice"]), headers, body)
                named = [error["loc"][-1] for error in response.json().get("errors", [])]
                answers[f"{caller} {op} {field}"] = (*outcome(response), field in named)

    assert len(answers) >= len(SERVER_OWNED) * (2 * len(BODY_OPS) - 1)
    assert answers == dict.fromkeys(answers, (422, "validation_error", True))
    assert dump(db) == before
    bobs = owned_ids(db, "bob")
    for caller, headers in headers_by.items():
        for op in BODY_OPS:
            if op.creates and allowed(caller, op):
                body = {
                    field: f"{value} by {caller}"
                    for field, value in BODIES[op.operation_id].items()
                }
                created = send(client, op, url(op, "alice", world["alice"]), headers, body)
                assert created.status_code == 201, f"{caller} {op}: {created.text}"
                assert created.json()["id"] in owned_ids(db, "alice")
    assert owned_ids(db, "bob") == bobs


def test_case_23_a_task_never_references_another_users_category(
    client: TestClient, auth: AuthFactory, db: Session, world: dict[str, dict[str, str]]
) -> None:
    headers_by = callers(client, auth)
    theirs, mine = UUID(world["bob"]["category"]), UUID(world["alice"]["task"])
    before = dump(db)

    answers = {}
    for caller, headers in headers_by.items():
        for op in BODY_OPS:
            if "category_id" in op.body_fields:
                target = url(op, "alice", world["alice"])
                body = BODIES[op.operation_id]
                foreign = send(client, op, target, headers, body | {"category_id": str(theirs)})
                never = send(client, op, target, headers, body | {"category_id": MISSING_ID})
                answers[f"{caller} {op}"] = (
                    foreign.status_code in (404, 422),
                    foreign.content == never.content,
                )

    assert len(answers) >= 6
    assert answers == dict.fromkeys(answers, (True, True))
    assert dump(db) == before
    now = datetime.now(UTC)
    enforce_foreign_keys(db)
    db.add(
        Task(
            user_id="alice",
            id=FORGED_TASK,
            title="Forged",
            category_id=theirs,
            created_at=now,
            updated_at=now,
        )
    )
    with pytest.raises(IntegrityError):
        db.commit()
    db.rollback()
    enforce_foreign_keys(db)
    moved = update(Task).where(col(Task.user_id) == "alice", col(Task.id) == mine)
    with pytest.raises(IntegrityError):
        db.exec(moved.values(category_id=theirs))
    db.rollback()
    assert dump(db) == before


def test_case_24_every_route_but_the_public_ones_needs_a_token(
    client: TestClient, db: Session, world: dict[str, dict[str, str]]
) -> None:
    before = dump(db)
    basic = {"Authorization": "Basic YWxpY2U6c2VjcmV0"}

    answers, public = {}, set()
    for op in ALL:
        target = url(op, "alice", world["alice"])
        if op.path in PUBLIC_PATHS:
            assert send(client, op, target, {}).status_code == 200, str(op)
            public.add(op.path)
            continue
        for name, headers in {"no token": {}, "basic": basic}.items():
            bodies: list[dict[str, Any] | None] = [None, {}] if op.body_fields else [None]
            for body in bodies:
                response = send(client, op, target, headers, body)
                challenge = response.headers.get("www-authenticate")
                answers[f"{name} {op} body={body}"] = (*outcome(response), challenge)

    assert public == PUBLIC_PATHS
    assert len(answers) >= 2 * len(USER_OPS)
    assert answers == dict.fromkeys(answers, (401, "not_authenticated", "Bearer"))
    assert dump(db) == before
