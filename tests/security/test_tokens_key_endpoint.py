"""SECURITY-CASES "Tokens" 11 and 15-17: the issuer's key endpoint, and start-up checks."""

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx2
import pytest
from pydantic import ValidationError
from sqlmodel import Session

from backend.config import ConfigurationError, Settings, get_settings
from backend.main import create_app
from tests.conftest import SECRET
from tests.operations import PROTECTED, bearer, never_seen_url
from tests.security.conftest import ApiFactory
from tests.security.every_operation import (
    INVALID,
    NOTHING_STORED,
    UNAVAILABLE,
    Outcome,
    call_every_operation,
    every,
    outcome,
    refused_operations,
    stored_rows,
)
from tests.security.support import MOVED_PATH, JwksServer, Keys, unused_url

Breakage = Callable[[JwksServer], None]

SLOW = 2.0
"""Seconds a slow key endpoint takes: longer than the fetch timeout of these tests."""


def _down(server: JwksServer) -> None:
    server.stop()


def _slow(server: JwksServer) -> None:
    server.delay = SLOW


def _redirect(server: JwksServer) -> None:
    server.redirect = True  # to MOVED_PATH, which serves the real keys: must not be followed


def _status(status: int) -> Breakage:
    def breakage(server: JwksServer) -> None:
        server.status = status

    return breakage


def _garbage(body: bytes, content_type: str = "application/json") -> Breakage:
    return lambda server: server.garbage(body, content_type)


FAILURES = [
    pytest.param(_slow, id="slow"),
    pytest.param(_redirect, id="redirect"),
    pytest.param(_status(500), id="status-500"),
    pytest.param(_status(404), id="status-404"),
    pytest.param(_garbage(b"not json at all"), id="not-json"),
    pytest.param(_garbage(b'{"issuer": "x"}'), id="json-without-keys"),
    pytest.param(_garbage(b'{"keys": []}'), id="empty-key-set"),
    pytest.param(_garbage(b"<html><body>Sign in</body></html>", "text/html"), id="html"),
]


# Case 11 ---------------------------------------------------------------------------------


def test_case_11_flood_of_unknown_kids_fetches_once_per_cooldown(
    make_api: ApiFactory, db: Session, keys: Keys, jwks_server: JwksServer
) -> None:
    cooldown = 0.5
    api = make_api("jwks", jwks_cooldown_seconds=cooldown)
    started = time.monotonic()
    assert api.client.get("/api/alice/me", headers=bearer(api.token())).status_code == 200

    def flood(first: int) -> dict[str, Outcome]:
        """50 tokens with a new unknown `kid` each, spread over every operation."""
        statuses: dict[str, Outcome] = {}
        for number in range(first, first + 50):
            op = PROTECTED[number % len(PROTECTED)]
            token = keys.ed.sign(api.claims(), {"kid": f"unknown-{number}"})
            response = api.client.request(
                op.method, never_seen_url(op, "alice"), json={}, headers=bearer(token)
            )
            statuses[f"{op} unknown-{number}"] = outcome(response, token)
        return {kid: answer for kid, answer in statuses.items() if answer != INVALID}

    assert flood(0) == {}
    assert jwks_server.fetches <= 1 + (time.monotonic() - started) // cooldown
    time.sleep(cooldown)
    before = jwks_server.fetches
    assert flood(50) == {}
    assert jwks_server.fetches >= before + 1  # a new kid is looked for once the cooldown ends
    assert jwks_server.fetches <= 1 + (time.monotonic() - started) // cooldown
    assert stored_rows(db) == {**NOTHING_STORED, "users": 1}


# Case 15 ---------------------------------------------------------------------------------


def test_case_15_new_key_is_accepted_within_the_cooldown(
    make_api: ApiFactory, keys: Keys, jwks_server: JwksServer
) -> None:
    cooldown = 0.3
    api = make_api("jwks", jwks_cooldown_seconds=cooldown)
    assert refused_operations(api.client, "alice", bearer(api.token())) == {}
    jwks_server.publish(keys.ed, keys.ed_next)

    time.sleep(cooldown)
    token = keys.ed_next.sign(api.claims())

    assert refused_operations(api.client, "alice", bearer(token)) == {}
    assert jwks_server.fetches == 2


def test_case_15_removed_key_stops_verifying_within_the_cache_lifetime(
    make_api: ApiFactory, db: Session, keys: Keys, jwks_server: JwksServer
) -> None:
    lifetime = 0.4
    api = make_api("jwks", jwks_cache_seconds=lifetime, jwks_cooldown_seconds=0.1)
    old_token, new_token = api.token(), keys.ed_next.sign(api.claims())
    jwks_server.publish(keys.ed, keys.ed_next)
    assert refused_operations(api.client, "alice", bearer(old_token)) == {}
    jwks_server.publish(keys.ed_next)

    time.sleep(lifetime)

    answers = call_every_operation(api.client, "alice", bearer(old_token), token=old_token)
    assert answers == every(INVALID)
    assert refused_operations(api.client, "alice", bearer(new_token)) == {}


# Case 16 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("breakage", [pytest.param(_down, id="down"), *FAILURES])
def test_case_16_cached_keys_keep_working_when_the_endpoint_fails(
    make_api: ApiFactory, jwks_server: JwksServer, breakage: Breakage
) -> None:
    lifetime, cooldown = 0.2, 0.4  # a cooldown longer than the timeout: one slow fetch
    api = make_api(
        "jwks",
        jwks_cache_seconds=lifetime,
        jwks_cooldown_seconds=cooldown,
        jwks_timeout_seconds=0.3,
    )
    token = api.token()
    assert api.client.get("/api/alice/me", headers=bearer(token)).status_code == 200
    breakage(jwks_server)

    time.sleep(cooldown)  # the key set has expired, and the next request fetches it again

    assert refused_operations(api.client, "alice", bearer(token)) == {}
    assert jwks_server.count(MOVED_PATH) == 0
    if breakage is not _down:
        # The failing endpoint was asked again. On a busy machine the client may give up
        # (its 0.3 s timeout) before the server's thread records the request: wait for it.
        jwks_server.wait_for_fetches(2)


@pytest.mark.parametrize("breakage", [pytest.param(None, id="unreachable"), *FAILURES])
def test_case_16_without_a_usable_key_a_valid_token_gets_503(
    make_api: ApiFactory, db: Session, jwks_server: JwksServer, breakage: Breakage | None
) -> None:
    if breakage is None:
        api = make_api("jwks", jwks_url=unused_url(), jwks_timeout_seconds=0.3)
    else:
        breakage(jwks_server)
        api = make_api("jwks", jwks_timeout_seconds=0.3)
    token = api.token()

    answers = call_every_operation(api.client, "alice", bearer(token), token=token)

    assert answers == every(UNAVAILABLE)
    assert stored_rows(db) == NOTHING_STORED
    assert jwks_server.fetches == (0 if breakage is None else 1)  # once per cooldown
    assert jwks_server.count(MOVED_PATH) == 0


def test_case_16_new_kid_that_cannot_be_fetched_gets_503_not_401(
    make_api: ApiFactory, keys: Keys, jwks_server: JwksServer
) -> None:
    cooldown = 0.1
    api = make_api("jwks", jwks_cooldown_seconds=cooldown)
    cached = api.token()
    assert api.client.get("/api/alice/me", headers=bearer(cached)).status_code == 200
    jwks_server.status = 500
    time.sleep(cooldown)
    token = keys.ed_next.sign(api.claims())  # perhaps a key the issuer has just added

    answers = call_every_operation(api.client, "alice", bearer(token), token=token)

    assert answers == every(UNAVAILABLE)
    assert refused_operations(api.client, "alice", bearer(cached)) == {}


def test_case_16_slow_fetch_does_not_block_the_event_loop(
    make_api: ApiFactory, keys: Keys, jwks_server: JwksServer
) -> None:
    """While one request waits on a slow fetch of a new key, others are answered at once."""
    cooldown, delay = 0.1, 1.5
    api = make_api("jwks", jwks_cooldown_seconds=cooldown, jwks_timeout_seconds=delay + 2)
    cached = api.token()
    assert api.client.get("/api/alice/me", headers=bearer(cached)).status_code == 200
    jwks_server.publish(*keys.issued, keys.ed_next)
    jwks_server.delay = delay
    time.sleep(cooldown)

    async def scenario() -> tuple[list[httpx2.Response], float, bool, httpx2.Response]:
        transport = httpx2.ASGITransport(app=api.client.app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://test") as client:
            slow = asyncio.create_task(
                client.get("/api/alice/me", headers=bearer(keys.ed_next.sign(api.claims())))
            )
            await asyncio.to_thread(jwks_server.wait_for_fetches, 2)
            started = time.perf_counter()
            quick = [
                await client.get("/healthz"),
                await client.get("/api/alice/me", headers=bearer(cached)),
            ]
            took = time.perf_counter() - started
            return quick, took, not slow.done(), await slow

    assert api.client.portal is not None
    quick, took, was_waiting, slow = api.client.portal.call(scenario)

    assert [response.status_code for response in quick] == [200, 200]
    assert took < 0.5
    assert was_waiting
    assert slow.status_code == 200, slow.text


# Case 17 ---------------------------------------------------------------------------------

JWKS_URL = "https://auth.example.com/api/auth/jwks"


@pytest.mark.parametrize(
    "config",
    [
        pytest.param({"jwt_secret": "\u00e9" * 15 + "x"}, id="secret-31-bytes-in-16-chars"),
        pytest.param({"jwks_url": JWKS_URL, "secret_key": "x" * 31}, id="short-secret-key"),
        pytest.param({"jwks_url": JWKS_URL, "jwt_secret": SECRET}, id="jwks-and-secret"),
        pytest.param({"jwks_url": JWKS_URL, "jwt_algorithms": "HS256"}, id="jwks-HS256"),
        pytest.param({"jwks_url": JWKS_URL, "jwt_algorithms": "EdDSA,HS512"}, id="jwks-mixed"),
        pytest.param({"jwks_url": JWKS_URL, "jwt_algorithms": "none"}, id="jwks-none"),
        pytest.param({"jwt_secret": SECRET, "jwt_algorithms": "PS256"}, id="secret-PS256"),
        pytest.param({"jwt_secret": SECRET, "jwt_algorithms": "HS256,ES256"}, id="secret-mixed"),
        pytest.param({"jwks_url": "file:///etc/jwks.json"}, id="jwks-file-url"),
    ],
)
def test_case_17_weak_or_mixed_auth_settings_are_refused(config: dict[str, Any]) -> None:
    """More in tests/test_auth.py: short secrets and public-key algorithms with a secret."""
    with pytest.raises(ValidationError):
        Settings(_env_file=None, environment="test", **config)


@pytest.mark.parametrize("secret_name", ["JWT_SECRET", "BETTER_AUTH_SECRET"])
def test_case_17_start_up_refuses_a_jwks_url_with_a_secret(
    monkeypatch: pytest.MonkeyPatch, secret_name: str
) -> None:
    for name in ("JWT_SECRET", "BETTER_AUTH_SECRET", "JWT_ALGORITHMS", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ENVIRONMENT", "test")
    monkeypatch.setenv("JWKS_URL", JWKS_URL)
    monkeypatch.setenv(secret_name, SECRET)
    get_settings.cache_clear()

    try:
        with pytest.raises(ConfigurationError) as refused:
            create_app()
    finally:
        get_settings.cache_clear()

    assert SECRET not in str(refused.value)


def test_case_17_each_mode_keeps_to_its_own_algorithms() -> None:
    jwks = Settings(_env_file=None, environment="test", jwks_url=JWKS_URL)
    secret = Settings(_env_file=None, environment="test", jwt_secret=SECRET)

    assert set(jwks.jwt_algorithms) == {"EdDSA", "ES256", "RS256", "PS256"}
    assert secret.jwt_algorithms == ["HS256"]
