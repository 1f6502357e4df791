"""The caller's own record: GET /api/{user_id}/me."""

from datetime import datetime, timedelta

from fastapi.testclient import TestClient
from sqlmodel import Session, select

from backend.models import User
from tests.conftest import AuthFactory


def test_get_me_returns_the_callers_record(
    client: TestClient, auth: AuthFactory, db: Session
) -> None:
    response = client.get(
        "/api/alice/me", headers=auth("alice", email="alice@example.com", name="Alice")
    )

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"id", "email", "name", "created_at"}
    assert (body["id"], body["email"], body["name"]) == ("alice", "alice@example.com", "Alice")
    created_at = datetime.fromisoformat(body["created_at"])
    assert created_at.utcoffset() == timedelta(0)
    stored = db.exec(select(User)).one()
    assert stored.created_at == created_at


def test_get_me_without_profile_claims_returns_nulls(client: TestClient, auth: AuthFactory) -> None:
    response = client.get("/api/bob/me", headers=auth("bob"))

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"id", "email", "name", "created_at"}
    assert (body["id"], body["email"], body["name"]) == ("bob", None, None)


def test_get_me_keeps_created_at_across_requests(client: TestClient, auth: AuthFactory) -> None:
    first = client.get("/api/alice/me", headers=auth("alice", email="a@example.com"))
    second = client.get("/api/alice/me", headers=auth("alice", email="b@example.com"))

    assert (first.status_code, second.status_code) == (200, 200)
    assert second.json()["created_at"] == first.json()["created_at"]
    assert second.json()["email"] == "b@example.com"


def test_get_me_keeps_an_opaque_user_id_byte_for_byte(
    client: TestClient, auth: AuthFactory
) -> None:
    user = "Usr_8fK2-x.Q~9"

    response = client.get(f"/api/{user}/me", headers=auth(user))

    assert response.status_code == 200, response.text
    assert response.json()["id"] == user


def test_get_me_without_token_is_401(client: TestClient) -> None:
    response = client.get("/api/alice/me")

    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
