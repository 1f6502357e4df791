"""Personal access tokens: creation, listing, digests at rest, scopes, revocation and expiry."""

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import httpx2
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlmodel import Session, col, func, select

from backend.fields import TokenScope
from backend.models import PersonalToken, User
from tests.conftest import AuthFactory, assert_invalid, assert_problem
from tests.operations import (
    MISSING_ID,
    READS,
    USER_OPS,
    WRITES,
    Operation,
    bearer,
    create_pat,
    dump,
    seed,
    send,
    url,
)

TOKEN_FIELDS = {"id", "name", "scope", "hint", "created_at", "expires_at", "last_used_at"}
PREFIX = "todo_pat_"
FAR_FUTURE = "2999-01-01T00:00:00Z"
LONG_AGO = "2020-01-01T00:00:00Z"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def stored_tokens(db: Session) -> list[PersonalToken]:
    db.expire_all()
    return list(db.exec(select(PersonalToken).order_by(col(PersonalToken.created_at))).all())


def set_stored(db: Session, token_id: str, **values: Any) -> None:
    """Change a stored token's row behind the service's back (to move time)."""
    db.exec(update(PersonalToken).where(col(PersonalToken.id) == UUID(token_id)).values(**values))
    db.commit()


def assert_insufficient_scope(response: httpx2.Response) -> None:
    assert_problem(response, 403, "insufficient_scope")
    assert "insufficient_scope" in response.headers["www-authenticate"]


def assert_invalid_token(response: httpx2.Response, token: str) -> None:
    assert_problem(response, 401, "invalid_token")
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert token not in response.text


def test_create_token_returns_201_with_location_and_the_secret_once(
    client: TestClient, auth: AuthFactory, db: Session
) -> None:
    response = client.post("/api/alice/tokens", json={"name": "  deploy  "}, headers=auth())

    assert response.status_code == 201, response.text
    created = response.json()
    assert response.headers["location"] == f"/api/alice/tokens/{created['id']}"
    assert created.keys() == TOKEN_FIELDS | {"token"}
    assert created["token"].startswith(PREFIX)
    assert len(created["token"]) > 40
    assert created["hint"] == created["token"][:13]
    assert (created["name"], created["scope"]) == ("deploy", "read")
    assert (created["expires_at"], created["last_used_at"]) == (None, None)
    [row] = stored_tokens(db)
    assert (row.user_id, str(row.id), row.name, row.hint) == (
        "alice",
        created["id"],
        "deploy",
        created["hint"],
    )


def test_create_token_stores_its_sha256_and_never_the_token(
    client: TestClient, auth: AuthFactory, db: Session
) -> None:
    token = create_pat(client, auth)["token"]

    [row] = stored_tokens(db)
    assert row.token_hash == digest(token)
    stored = repr(dump(db))
    assert token not in stored
    assert token.removeprefix(PREFIX) not in stored


@pytest.mark.parametrize(
    ("name", "stored"),
    [("n", "n"), ("n" * 100, "n" * 100), (f"  {'n' * 100}\t", "n" * 100), ("Clé 🔑", "Clé 🔑")],
    ids=["1", "100", "100-after-trimming", "unicode"],
)
def test_create_token_accepts_names_at_the_limits(
    client: TestClient, auth: AuthFactory, db: Session, name: str, stored: str
) -> None:
    response = client.post("/api/alice/tokens", json={"name": name}, headers=auth())

    assert response.status_code == 201, response.text
    assert response.json()["name"] == stored
    assert [row.name for row in stored_tokens(db)] == [stored]


def test_create_token_accepts_write_scope_and_future_expiry(
    client: TestClient, auth: AuthFactory, db: Session
) -> None:
    created = create_pat(client, auth, scope="write", expires_at=FAR_FUTURE)

    assert created["scope"] == "write"
    assert datetime.fromisoformat(created["expires_at"]) == datetime(2999, 1, 1, tzinfo=UTC)
    [row] = stored_tokens(db)
    assert (row.scope, row.expires_at) == ("write", datetime(2999, 1, 1, tzinfo=UTC))


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "n" * 101}, "name"),
        ({"name": "two\nlines"}, "name"),
        ({"name": "ci", "scope": "admin"}, "scope"),
        ({"name": "ci", "scope": "tokens"}, "scope"),
        ({"name": "ci", "expires_at": LONG_AGO}, "expires_at"),
        ({"name": "ci", "expires_at": "2999-01-01T00:00:00"}, "expires_at"),
        ({"name": "ci", "token": f"{PREFIX}chosen-by-the-client"}, "token"),
        ({"name": "ci", "token_hash": "0" * 64}, "token_hash"),
        ({"name": "ci", "user_id": "bob"}, "user_id"),
    ],
    ids=[
        "no-name", "empty", "blank", "101", "newline", "unknown-scope", "tokens-scope",
        "expired", "naive-expiry", "chosen-token", "chosen-hash", "owner",
    ],
)  # fmt: skip
def test_create_token_rejects_invalid_body(
    client: TestClient, auth: AuthFactory, db: Session, body: dict[str, Any], field: str
) -> None:
    response = client.post("/api/alice/tokens", json=body, headers=auth())

    assert_invalid(response, field)
    assert stored_tokens(db) == []


def test_list_tokens_shows_no_secrets_newest_first(
    client: TestClient, auth: AuthFactory, db: Session
) -> None:
    secrets = [create_pat(client, auth, name=f"t{n}")["token"] for n in range(3)]

    response = client.get("/api/alice/tokens", headers=auth())

    assert response.status_code == 200
    items = response.json()["items"]
    assert [item["name"] for item in items] == ["t2", "t1", "t0"]
    assert all(item.keys() == TOKEN_FIELDS for item in items)
    for secret in secrets:
        assert secret not in response.text
        assert digest(secret) not in response.text
    assert response.json()["next_cursor"] is None


def test_list_tokens_pages_with_a_cursor(client: TestClient, auth: AuthFactory) -> None:
    for n in range(3):
        create_pat(client, auth, name=f"t{n}")

    first = client.get("/api/alice/tokens", params={"limit": 2}, headers=auth())
    cursor = first.json()["next_cursor"]
    second = client.get("/api/alice/tokens", params={"limit": 2, "cursor": cursor}, headers=auth())

    assert (first.status_code, second.status_code) == (200, 200)
    assert [item["name"] for item in first.json()["items"]] == ["t2", "t1"]
    assert [item["name"] for item in second.json()["items"]] == ["t0"]
    assert second.json()["next_cursor"] is None


def test_read_token_can_use_every_read_route(client: TestClient, auth: AuthFactory) -> None:
    owned = seed(client, auth, "alice")
    headers = bearer(create_pat(client, auth)["token"])

    answers = {
        str(op): send(client, op, url(op, "alice", owned), headers).status_code
        for op in READS
        if not op.manages_tokens
    }

    assert answers == dict.fromkeys(answers, 200)
    assert len(answers) >= 7


def test_read_token_is_refused_every_write_operation(
    client: TestClient, auth: AuthFactory, db: Session
) -> None:
    owned = seed(client, auth, "alice")
    headers = bearer(create_pat(client, auth)["token"])
    assert client.get("/api/alice/me", headers=headers).status_code == 200  # sets last_used_at
    before = dump(db)

    for op in WRITES:
        response = send(client, op, url(op, "alice", owned), headers)
        assert_insufficient_scope(response)
        assert 'scope="write"' in response.headers["www-authenticate"]

    assert len(WRITES) >= 10
    assert dump(db) == before


@pytest.mark.parametrize("op", [op for op in USER_OPS if not op.manages_tokens], ids=str)
def test_write_token_can_use_every_operation_but_tokens(
    client: TestClient, auth: AuthFactory, op: Operation
) -> None:
    owned = seed(client, auth, "alice")
    headers = bearer(create_pat(client, auth, scope="write")["token"])

    response = send(client, op, url(op, "alice", owned), headers)

    assert response.is_success, response.text


@pytest.mark.parametrize("scope", list(TokenScope))
def test_personal_token_cannot_manage_tokens(
    client: TestClient, auth: AuthFactory, db: Session, scope: TokenScope
) -> None:
    owned = seed(client, auth, "alice")
    headers = bearer(create_pat(client, auth, scope=scope)["token"])
    assert client.get("/api/alice/me", headers=headers).status_code == 200
    before = dump(db)

    for op in USER_OPS:
        if op.manages_tokens:
            assert_insufficient_scope(send(client, op, url(op, "alice", owned), headers))

    assert dump(db) == before


def test_personal_token_on_another_user_is_403(client: TestClient, auth: AuthFactory) -> None:
    seed(client, auth, "bob")
    headers = bearer(create_pat(client, auth, scope="write")["token"])

    for user in ("bob", "carol"):
        assert_problem(client.get(f"/api/{user}/tasks", headers=headers), 403, "forbidden")
        created = client.post(f"/api/{user}/tasks", json={"title": "Mine now"}, headers=headers)
        assert_problem(created, 403, "forbidden")


def test_delete_token_revokes_it_at_once(
    client: TestClient, auth: AuthFactory, db: Session
) -> None:
    created = create_pat(client, auth)
    headers = bearer(created["token"])
    assert client.get("/api/alice/tasks", headers=headers).status_code == 200

    response = client.delete(f"/api/alice/tokens/{created['id']}", headers=auth())

    assert response.status_code == 204
    assert_invalid_token(client.get("/api/alice/tasks", headers=headers), created["token"])
    assert stored_tokens(db) == []


def test_expired_token_is_401(client: TestClient, auth: AuthFactory, db: Session) -> None:
    soon = datetime.now(UTC) + timedelta(hours=1)
    created = create_pat(client, auth, expires_at=soon.isoformat())
    headers = bearer(created["token"])
    assert client.get("/api/alice/tasks", headers=headers).status_code == 200

    set_stored(db, created["id"], expires_at=datetime.now(UTC) - timedelta(seconds=1))

    assert_invalid_token(client.get("/api/alice/tasks", headers=headers), created["token"])


@pytest.mark.parametrize(
    "alter",
    [
        lambda token: f"{PREFIX}{'A' * 43}",
        lambda token: PREFIX,
        lambda token: token[:-1],
        lambda token: f"{token}A",
        lambda token: token.upper(),
        lambda token: f"{PREFIX}{digest(token)}",
    ],
    ids=["unknown", "prefix-only", "truncated", "extended", "uppercased", "digest"],
)
def test_unknown_token_with_the_prefix_is_401(
    client: TestClient, auth: AuthFactory, alter: Any
) -> None:
    forged = alter(create_pat(client, auth, scope="write")["token"])

    response = client.get("/api/alice/tasks", headers=bearer(forged))

    assert_invalid_token(response, forged)


def test_last_used_at_is_written_at_most_once_a_minute(
    client: TestClient, auth: AuthFactory, db: Session
) -> None:
    created = create_pat(client, auth)
    headers = bearer(created["token"])

    def use() -> datetime | None:
        assert client.get("/api/alice/me", headers=headers).status_code == 200
        [row] = stored_tokens(db)
        return row.last_used_at

    first = use()
    assert first is not None
    assert datetime.now(UTC) - first < timedelta(seconds=30)
    assert use() == first
    set_stored(db, created["id"], last_used_at=first - timedelta(seconds=30))
    assert use() == first - timedelta(seconds=30)
    set_stored(db, created["id"], last_used_at=first - timedelta(seconds=61))
    rewritten = use()
    assert rewritten is not None
    assert rewritten >= first
    listed = client.get("/api/alice/tokens", headers=auth()).json()["items"]
    assert datetime.fromisoformat(listed[0]["last_used_at"]) == rewritten


def test_delete_another_users_token_is_404_alike_for_missing(
    client: TestClient, auth: AuthFactory, db: Session
) -> None:
    theirs = create_pat(client, auth, "bob")
    client.get("/api/alice/me", headers=auth())

    foreign = client.delete(f"/api/alice/tokens/{theirs['id']}", headers=auth())
    missing = client.delete(f"/api/alice/tokens/{MISSING_ID}", headers=auth())

    assert_problem(foreign, 404, "not_found")
    assert foreign.content == missing.content
    assert [(row.user_id, str(row.id)) for row in stored_tokens(db)] == [("bob", theirs["id"])]
    assert client.get("/api/bob/me", headers=bearer(theirs["token"])).status_code == 200


def test_create_token_beyond_100_is_409(client: TestClient, auth: AuthFactory, db: Session) -> None:
    assert client.get("/api/alice/me", headers=auth()).status_code == 200
    db.add_all(
        PersonalToken(
            user_id="alice",
            name=f"seeded {n}",
            scope=TokenScope.read,
            token_hash=digest(f"seeded {n}"),
            hint=f"{PREFIX}seed",
            created_at=T0 + timedelta(seconds=n),
        )
        for n in range(99)
    )
    db.commit()

    hundredth = client.post("/api/alice/tokens", json={"name": "100th"}, headers=auth())
    beyond = client.post("/api/alice/tokens", json={"name": "101st"}, headers=auth())

    assert hundredth.status_code == 201, hundredth.text
    assert_problem(beyond, 409, "conflict")
    count = db.exec(select(func.count()).select_from(PersonalToken)).one()
    assert count == 100
    assert "101st" not in {row.name for row in stored_tokens(db)}


def test_personal_token_keeps_the_users_profile(
    client: TestClient, auth: AuthFactory, db: Session
) -> None:
    profile = auth("alice", email="alice@example.com", name="Alice Liddell")
    assert client.get("/api/alice/me", headers=profile).status_code == 200
    headers = bearer(create_pat(client, auth)["token"])

    response = client.get("/api/alice/me", headers=headers)

    assert response.status_code == 200
    assert (response.json()["email"], response.json()["name"]) == (
        "alice@example.com",
        "Alice Liddell",
    )
    db.expire_all()
    user = db.exec(select(User)).one()
    assert (user.email, user.name) == ("alice@example.com", "Alice Liddell")
