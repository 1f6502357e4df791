"""Bearer tokens: header parsing, rejected tokens, iss/aud, the claim policy, just-in-time users."""

import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import httpx2
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from backend.auth import ClaimPolicy
from backend.config import Settings
from backend.deps import OwnerId
from backend.errors import install_error_handlers
from backend.main import create_app
from backend.models import User
from tests.conftest import SECRET, AuthFactory, assert_problem, make_token
from tests.security.support import (
    DROP,
    SecretKey,
    change_payload,
    craft,
    flip_signature_bit,
    repeat_segments,
    strip_signature,
    with_alphabet,
    without_dropped,
)

OTHER_SECRET = "another-secret-that-is-also-long-enough!!"
ISSUER = "https://auth.example.com"
AUDIENCE = "todo-api"

TokenBuilder = Callable[[int], str]


def _claims(now: int, **changes: Any) -> dict[str, Any]:
    return without_dropped({"sub": "alice", "iat": now, "exp": now + 600} | changes)


def _token(
    now: int, header: dict[str, Any] | None = None, *, secret: str = SECRET, **changes: Any
) -> str:
    """An HS256 token for alice issued at `now`; a claim or header member set to `DROP` is
    left out."""
    return SecretKey(secret).sign(_claims(now, **changes), header)


def _unsigned(now: int, alg: str) -> str:
    return craft({"alg": alg, "typ": "JWT"}, _claims(now), lambda message: b"")


INVALID: list[Any] = [
    pytest.param(lambda now: _token(now, secret=OTHER_SECRET), id="wrong-secret"),
    pytest.param(lambda now: _token(now, iat=now - 900, exp=now - 31), id="expired-31s"),
    pytest.param(lambda now: _token(now, nbf=now + 60), id="nbf-in-future"),
    pytest.param(lambda now: _token(now, iat=now + 60), id="iat-in-future"),
    pytest.param(lambda now: _token(now, exp=DROP), id="no-exp"),
    pytest.param(lambda now: _token(now, iat=DROP), id="no-iat"),
    pytest.param(lambda now: _token(now, sub=DROP), id="no-sub"),
    pytest.param(lambda now: _token(now, sub=""), id="empty-sub"),
    pytest.param(lambda now: _token(now, sub=42), id="sub-number"),
    pytest.param(lambda now: _token(now, sub=["alice"]), id="sub-list"),
    pytest.param(lambda now: _token(now, sub="a" * 256), id="sub-256-chars"),
    pytest.param(lambda now: _token(now, sub="ali\x00ce"), id="sub-nul"),
    pytest.param(lambda now: _token(now, sub="ali\nce"), id="sub-newline"),
    pytest.param(lambda now: _token(now, sub="ali\x85ce"), id="sub-c1-control"),
    pytest.param(lambda now: _token(now, sub="ali\ud800ce"), id="sub-lone-surrogate"),
    pytest.param(lambda now: _token(now, exp=str(now + 600)), id="exp-string"),
    pytest.param(lambda now: _token(now, exp=10**20), id="exp-absurdly-large"),
    pytest.param(lambda now: _unsigned(now, "none"), id="alg-none"),
    pytest.param(lambda now: _unsigned(now, "None"), id="alg-None"),
    pytest.param(lambda now: _unsigned(now, "NONE"), id="alg-NONE"),
    pytest.param(lambda now: _unsigned(now, "nOnE"), id="alg-nOnE"),
    pytest.param(lambda now: strip_signature(_token(now)), id="stripped-signature"),
    pytest.param(lambda now: _token(now, {"typ": "JWS"}), id="typ-JWS"),
    pytest.param(lambda now: _token(now, pad="x" * 9000), id="over-8KiB"),
    pytest.param(lambda now: "gArBaGe-not-a-token-at-all", id="garbage"),
    pytest.param(lambda now: "null", id="null"),
    pytest.param(lambda now: "sess_2b7c9f0e4d1a4f6b8c3e5a7d9f1b3c5e", id="session-id"),
    pytest.param(lambda now: repeat_segments(_token(now), 1), id="1-segment"),
    pytest.param(lambda now: repeat_segments(_token(now), 2), id="2-segments"),
    pytest.param(lambda now: repeat_segments(_token(now), 4), id="4-segments"),
    pytest.param(lambda now: repeat_segments(_token(now), 5), id="5-segments"),
    pytest.param(lambda now: _token(now).replace(".", ".*", 1), id="star-in-payload"),
    pytest.param(lambda now: _token(now) + "!", id="bang-in-signature"),
    pytest.param(
        lambda now: with_alphabet(lambda nonce: _token(now, nonce=nonce), "-_", "+/"),
        id="plus-slash-in-signature",
    ),
    pytest.param(lambda now: flip_signature_bit(_token(now)), id="flipped-signature-bit"),
    pytest.param(lambda now: change_payload(_token(now)), id="changed-payload"),
]

VALID: list[Any] = [
    pytest.param(lambda now: _token(now, iat=now - 900, exp=now - 10), id="expired-10s"),
    pytest.param(lambda now: _token(now, {"typ": DROP}), id="typ-absent"),
    pytest.param(lambda now: _token(now, {"typ": "JWT"}), id="typ-JWT"),
    pytest.param(lambda now: _token(now, {"typ": "at+jwt"}), id="at+jwt"),
]


def assert_invalid_token(response: httpx2.Response, token: str) -> None:
    assert_problem(response, 401, "invalid_token")
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert token not in response.text
    assert not any(len(part) >= 8 and part in response.text for part in token.split("."))


def assert_not_authenticated(response: httpx2.Response) -> None:
    assert_problem(response, 401, "not_authenticated")
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("build", INVALID)
def test_request_with_invalid_token_is_401(
    client: TestClient, db: Session, build: TokenBuilder
) -> None:
    token = build(int(time.time()))

    response = client.get("/api/alice/me", headers={"Authorization": f"Bearer {token}"})

    assert_invalid_token(response, token)
    assert db.exec(select(User)).all() == []


@pytest.mark.parametrize("build", VALID)
def test_request_with_valid_token_is_served(client: TestClient, build: TokenBuilder) -> None:
    response = client.get(
        "/api/alice/me", headers={"Authorization": f"Bearer {build(int(time.time()))}"}
    )

    assert response.status_code == 200, response.text
    assert response.json()["id"] == "alice"


def test_subject_of_255_characters_is_accepted(client: TestClient, auth: AuthFactory) -> None:
    subject = "a" * 255

    response = client.get(f"/api/{subject}/me", headers=auth(subject))

    assert response.status_code == 200, response.text
    assert response.json()["id"] == subject


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param("Basic YWxpY2U6c2VjcmV0", id="basic"),
        pytest.param("Bearer", id="bearer-alone"),
        pytest.param("Bearer    ", id="bearer-spaces"),
        pytest.param("Token {token}", id="other-scheme"),
        pytest.param("Bearer{token}", id="no-space"),
        pytest.param("{token}", id="no-scheme"),
    ],
)
def test_request_without_bearer_scheme_is_401_missing(
    client: TestClient, authorization: str
) -> None:
    header = authorization.format(token=make_token("alice"))

    response = client.get("/api/alice/me", headers={"Authorization": header})

    assert_not_authenticated(response)


def test_request_without_authorization_is_401_missing(client: TestClient) -> None:
    assert_not_authenticated(client.get("/api/alice/me"))


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "bEaReR"])
def test_scheme_in_any_case_is_accepted(client: TestClient, scheme: str) -> None:
    response = client.get(
        "/api/alice/me", headers={"Authorization": f"{scheme} {make_token('alice')}"}
    )

    assert response.status_code == 200, response.text


@pytest.mark.parametrize("name", ["access_token", "token", "jwt"])
def test_token_only_in_query_string_is_401_missing(client: TestClient, name: str) -> None:
    response = client.get("/api/alice/me", params={name: make_token("alice")})

    assert_not_authenticated(response)


def test_token_only_in_cookie_is_401_missing(client: TestClient) -> None:
    token = make_token("alice")
    cookie = f"access_token={token}; token={token}; better-auth.session_token={token}"

    response = client.get("/api/alice/me", headers={"Cookie": cookie})

    assert_not_authenticated(response)


@pytest.mark.parametrize(
    ("first", "second", "path_user"),
    [
        pytest.param("alice", "bob", "alice", id="alice-then-bob-on-alice"),
        pytest.param("alice", "bob", "bob", id="alice-then-bob-on-bob"),
        pytest.param("bob", "alice", "alice", id="bob-then-alice-on-alice"),
        pytest.param("alice", "alice", "alice", id="same-token-twice"),
    ],
)
def test_two_authorization_headers_are_refused(
    client: TestClient, db: Session, first: str, second: str, path_user: str
) -> None:
    headers = [
        ("Authorization", f"Bearer {make_token(first)}"),
        ("Authorization", f"Bearer {make_token(second)}"),
    ]

    response = client.get(f"/api/{path_user}/me", headers=headers)

    assert response.status_code in (400, 401), response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert db.exec(select(User)).all() == []


@pytest.fixture
def strict_client(settings: Settings, db: Session) -> Iterator[TestClient]:
    """An app that also checks the token's issuer and audience."""
    strict = settings.model_copy(update={"jwt_issuer": ISSUER, "jwt_audience": AUDIENCE})
    with TestClient(create_app(strict)) as client:
        yield client


@pytest.mark.parametrize(
    "claims",
    [
        pytest.param({"iss": "https://evil.example.com", "aud": AUDIENCE}, id="wrong-iss"),
        pytest.param({"iss": ISSUER, "aud": "other-api"}, id="wrong-aud"),
        pytest.param({"aud": AUDIENCE}, id="missing-iss"),
        pytest.param({"iss": ISSUER}, id="missing-aud"),
        pytest.param({}, id="missing-both"),
    ],
)
def test_issuer_and_audience_are_enforced_when_configured(
    strict_client: TestClient, claims: dict[str, str]
) -> None:
    token = make_token("alice", **claims)

    response = strict_client.get("/api/alice/me", headers={"Authorization": f"Bearer {token}"})

    assert_invalid_token(response, token)


@pytest.mark.parametrize(
    "audience", [pytest.param(AUDIENCE, id="string"), pytest.param(["x", AUDIENCE], id="list")]
)
def test_right_issuer_and_audience_are_accepted(
    strict_client: TestClient, audience: str | list[str]
) -> None:
    token = make_token("alice", iss=ISSUER, aud=audience)

    response = strict_client.get("/api/alice/me", headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 200, response.text


@pytest.mark.parametrize("subject", ["a\x00b", "tab\tbed"])
def test_subject_with_a_control_character_is_401_on_its_own_path(
    client: TestClient, db: Session, subject: str
) -> None:
    token = make_token(subject)

    response = client.get(
        f"/api/{quote(subject, safe='')}/me", headers={"Authorization": f"Bearer {token}"}
    )

    assert_invalid_token(response, token)
    assert db.exec(select(User)).all() == []


def test_unusable_email_and_name_claims_are_left_out(
    client: TestClient, auth: AuthFactory, db: Session
) -> None:
    headers = auth("alice", email="alice\x00@example.com", name="Al\ud800ice")

    response = client.get("/api/alice/me", headers=headers)

    assert response.status_code == 200, response.text
    assert (response.json()["email"], response.json()["name"]) == (None, None)
    user = db.exec(select(User)).one()
    assert (user.id, user.email, user.name) == ("alice", None, None)


def test_first_request_creates_user_from_claims(
    client: TestClient, auth: AuthFactory, db: Session
) -> None:
    response = client.get(
        "/api/alice/me", headers=auth("alice", email="alice@example.com", name="Alice")
    )

    assert response.status_code == 200
    user = db.exec(select(User)).one()
    assert (user.id, user.email, user.name) == ("alice", "alice@example.com", "Alice")


def test_later_token_with_changed_email_updates_user(
    client: TestClient, auth: AuthFactory, db: Session
) -> None:
    first = client.get("/api/alice/me", headers=auth("alice", email="old@example.com"))
    second = client.get(
        "/api/alice/me", headers=auth("alice", email="new@example.com", name="Alice")
    )

    assert (first.status_code, second.status_code) == (200, 200)
    assert second.json()["email"] == "new@example.com"
    user = db.exec(select(User)).one()
    assert (user.id, user.email, user.name) == ("alice", "new@example.com", "Alice")


def test_owner_id_outside_the_guarded_router_fails_closed() -> None:
    # Inside it, security cases 18 and 24 show every user route guarded.
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/unguarded/{user_id}")
    async def unguarded(user_id: OwnerId) -> str:
        return user_id

    with TestClient(app) as client:
        response = client.get("/unguarded/alice")

    assert_problem(response, 403, "forbidden")


def test_the_policy_accepts_a_token_until_exp_plus_leeway_or_its_maximum_age() -> None:
    now = int(time.time())
    token = _token(now, iat=now - 100, exp=now + 600)
    policy = ClaimPolicy(issuer=None, audience=None, leeway=30, max_lifetime=3_600, max_age=None)

    assert policy.decode(token, SECRET, ["HS256"]).accepted_until == now + 630
    aged = ClaimPolicy(issuer=None, audience=None, leeway=30, max_lifetime=3_600, max_age=200)
    assert aged.decode(token, SECRET, ["HS256"]).accepted_until == now - 100 + 230
