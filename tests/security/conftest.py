"""Fixtures of the security tests: keys, a local JWKS server, an app per mode and test."""

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlmodel import Session

from backend.auth import create_verifier
from backend.config import Settings
from backend.main import create_app
from tests.conftest import SECRET
from tests.security.support import JwksServer, Keys, SecretKey, Signer, without_dropped
from tests.security.support import jwks_server as jwks_server  # fixtures
from tests.security.support import keys as keys

ISSUER = "https://auth.example.com"
AUDIENCE = "todo-api"
SUBJECT = "alice"


@dataclass
class Api:
    """A running app, how its issuer signs tokens, and (in JWKS mode) its key server."""

    client: TestClient
    signer: Signer
    server: JwksServer
    settings: Settings
    subject: str = SUBJECT

    def claims(self, **changes: Any) -> dict[str, Any]:
        """A valid payload for `subject`; a change of `DROP` leaves that claim out."""
        now = int(time.time())
        claims = {"sub": self.subject, "iat": now, "exp": now + 600}
        if self.settings.jwt_issuer is not None:
            claims["iss"] = self.settings.jwt_issuer
        if self.settings.jwt_audience is not None:
            claims["aud"] = self.settings.jwt_audience
        return without_dropped(claims | changes)

    def token(self, header: dict[str, Any] | None = None, **changes: Any) -> str:
        return self.signer.sign(self.claims(**changes), header)


ApiFactory = Callable[..., Api]


@pytest.fixture
def attacker_server(keys: Keys) -> Iterator[JwksServer]:
    """A server of the attacker's, listing the attacker's keys; nothing should ask it."""
    with JwksServer() as server:
        server.publish(keys.attacker_ed, keys.attacker_rsa, keys.attacker_ec)
        yield server


@pytest.fixture(scope="session")
def security_app(database_url: str) -> FastAPI:
    """One app for the session: building one costs more than most of these tests.

    Everything a token's check depends on lives in `app.state.verifier`, which
    `make_api` replaces with one built from each test's own settings."""
    settings = Settings(
        _env_file=None,
        environment="test",
        database_url=database_url,
        jwt_secret=SECRET,
        secret_key=SECRET,
    )
    return create_app(settings)


@pytest.fixture
def make_api(
    security_app: FastAPI, database_url: str, db: Session, keys: Keys, jwks_server: JwksServer
) -> Iterator[ApiFactory]:
    """`make_api("jwks", jwks_cache_seconds=0.5, ...)`: the app, set up for this test.

    The settings are validated whole, as at start-up. Both modes check the issuer and
    audience. JWKS mode signs with the Ed25519 key and fetches from `jwks_server` (with a
    long cooldown unless the test sets one). One mode per test: the app is shared.
    """
    with ExitStack() as stack:

        def build(mode: str = "jwks", **overrides: Any) -> Api:
            auth: dict[str, Any] = {"jwt_issuer": ISSUER, "jwt_audience": AUDIENCE}
            signer: Signer
            if mode == "jwks":
                auth |= {
                    "jwks_url": jwks_server.url,
                    "jwks_cooldown_seconds": 30,
                    "jwks_timeout_seconds": 1,
                }
                signer = keys.ed
            else:
                auth["jwt_secret"], signer = SECRET, SecretKey(SECRET)
            settings = Settings(
                _env_file=None,
                environment="test",
                database_url=database_url,
                secret_key=SECRET,
                **(auth | overrides),
            )
            security_app.state.verifier = create_verifier(settings)
            security_app.state.known_users.clear()
            client = stack.enter_context(TestClient(security_app))
            return Api(client, signer, jwks_server, settings)

        yield build


@pytest.fixture(params=["secret", "jwks"])
def api(request: pytest.FixtureRequest, make_api: ApiFactory) -> Api:
    """The app in each mode: an HS256 shared secret, and public keys through JWKS."""
    return make_api(request.param)


@pytest.fixture
def jwks_api(make_api: ApiFactory) -> Api:
    return make_api("jwks")
