"""JWKS mode end to end: Better Auth's tokens, each public-key algorithm, personal tokens."""

import time
from typing import Any

import pytest
from sqlmodel import Session, select

from backend.models import User
from tests.operations import bearer
from tests.security.conftest import ApiFactory
from tests.security.every_operation import INVALID, outcome
from tests.security.support import DROP, JwksServer, Keys, SigningKey

BASE_URL = "http://localhost:3000"
USER_ID = "Xk3mQ9vT2pLw8RzN4bYc6HdJ1sFa0GeU"  # Better Auth ids are random strings


def better_auth_token(key: SigningKey, *, now: int) -> str:
    """As Better Auth's JWT plugin mints one: EdDSA, `kid`, no `typ`, the user in the
    payload, `iss` and `aud` both the base URL, valid for 15 minutes."""
    user = {
        "id": USER_ID,
        "name": "Alice Martin",
        "email": "alice@example.com",
        "emailVerified": True,
        "image": None,
        "createdAt": "2025-01-06T09:30:00.000Z",
        "updatedAt": "2025-01-06T09:30:00.000Z",
    }
    claims = user | {"iat": now, "iss": BASE_URL, "aud": BASE_URL, "exp": now + 900}
    return key.sign(claims | {"sub": USER_ID}, {"typ": DROP})


def test_better_auth_token_is_accepted_and_creates_the_user(
    make_api: ApiFactory, db: Session, keys: Keys, jwks_server: JwksServer
) -> None:
    api = make_api("jwks", jwt_issuer=BASE_URL, jwt_audience=BASE_URL)
    token = better_auth_token(keys.ed, now=int(time.time()))

    response = api.client.get(f"/api/{USER_ID}/me", headers=bearer(token))

    assert response.status_code == 200, response.text
    assert response.json()["id"] == USER_ID
    user = db.exec(select(User)).one()
    assert (user.id, user.email, user.name) == (USER_ID, "alice@example.com", "Alice Martin")
    assert jwks_server.fetches == 1


@pytest.mark.parametrize(
    ("key_name", "alg"),
    [("ed", "EdDSA"), ("rsa", "RS256"), ("rsa", "PS256"), ("ec", "ES256")],
)
def test_token_of_each_public_key_algorithm_is_accepted(
    make_api: ApiFactory, keys: Keys, key_name: str, alg: str
) -> None:
    api = make_api("jwks")
    key: SigningKey = getattr(keys, key_name)

    response = api.client.get("/api/alice/me", headers=bearer(key.sign(api.claims(), {"alg": alg})))

    assert response.status_code == 200, response.text


@pytest.mark.parametrize(("alg", "status"), [("RS256", 200), ("PS256", 401)])
def test_jwk_alg_limits_its_key_to_that_algorithm(
    make_api: ApiFactory, keys: Keys, jwks_server: JwksServer, alg: str, status: int
) -> None:
    named = SigningKey(keys.rsa.kid, "RS256", keys.rsa.private, publish_alg=True)
    jwks_server.publish(keys.ed, named)
    api = make_api("jwks")
    token = named.sign(api.claims(), {"alg": alg})

    response = api.client.get("/api/alice/me", headers=bearer(token))

    assert response.status_code == status, response.text
    if status == 401:
        assert outcome(response, token) == INVALID


@pytest.mark.parametrize(
    ("signer", "status"),
    [("ed", 200), ("attacker_ed", 401)],
)
def test_token_without_kid_is_checked_against_each_listed_key(
    make_api: ApiFactory, keys: Keys, signer: str, status: int
) -> None:
    api = make_api("jwks")
    key: SigningKey = getattr(keys, signer)

    response = api.client.get(
        "/api/alice/me", headers=bearer(key.sign(api.claims(), {"kid": DROP}))
    )

    assert response.status_code == status, response.text


def test_personal_token_works_in_jwks_mode(make_api: ApiFactory, db: Session) -> None:
    api = make_api("jwks")
    created = api.client.post(
        "/api/alice/tokens", json={"name": "cli", "scope": "write"}, headers=bearer(api.token())
    )
    assert created.status_code == 201, created.text
    personal: dict[str, Any] = created.json()

    me = api.client.get("/api/alice/me", headers=bearer(personal["token"]))
    task = api.client.post(
        "/api/alice/tasks", json={"title": "From the CLI"}, headers=bearer(personal["token"])
    )
    elsewhere = api.client.get("/api/bob/me", headers=bearer(personal["token"]))

    assert me.status_code == 200, me.text
    assert task.status_code == 201, task.text
    assert elsewhere.status_code == 403
    assert [user.id for user in db.exec(select(User)).all()] == ["alice"]
