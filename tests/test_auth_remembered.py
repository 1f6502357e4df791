"""Bearer tokens: remembered verifications, how long they last and when they are off."""

import asyncio
import time
from collections.abc import Coroutine
from typing import Any

import pytest

from backend.auth import (
    ClaimPolicy,
    Claims,
    JwksVerifier,
    RememberingVerifier,
    SecretVerifier,
    create_verifier,
)
from backend.config import Settings
from backend.errors import InvalidToken
from backend.jwks import JwksClient, JwksPolicy
from tests.conftest import SECRET
from tests.security.support import JwksServer, Keys
from tests.security.support import jwks_server as jwks_server  # fixtures
from tests.security.support import keys as keys


class CountingVerifier:
    """A verifier that accepts every token as alice's until `until`, counting its checks."""

    def __init__(self, until: float | None = 1_000.0) -> None:
        self.checks = 0
        self.until = until
        self.refuse = False

    async def verify(self, token: str) -> Claims:
        self.checks += 1
        if self.refuse:
            raise InvalidToken
        return Claims(subject="alice", accepted_until=self.until)


def _check(verification: Coroutine[Any, Any, Claims]) -> Claims:
    return asyncio.run(verification)


class Clock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_an_accepted_token_is_checked_once_while_it_is_remembered() -> None:
    inner, clock = CountingVerifier(), Clock()
    verifier = RememberingVerifier(inner, seconds=60, clock=clock)

    first = _check(verifier.verify("token-a"))
    clock.now = 59
    second = _check(verifier.verify("token-a"))

    assert first == second == Claims(subject="alice", accepted_until=1_000.0)
    assert inner.checks == 1


def test_a_remembered_token_is_checked_again_after_seconds() -> None:
    inner, clock = CountingVerifier(), Clock()
    verifier = RememberingVerifier(inner, seconds=60, clock=clock)
    _check(verifier.verify("token-a"))
    inner.refuse = True  # say the issuer withdrew the key meanwhile
    clock.now = 60

    with pytest.raises(InvalidToken):
        _check(verifier.verify("token-a"))
    assert inner.checks == 2


def test_a_token_is_not_remembered_past_the_policys_acceptance() -> None:
    inner, clock = CountingVerifier(until=10.0), Clock()
    verifier = RememberingVerifier(inner, seconds=60, clock=clock)
    _check(verifier.verify("token-a"))
    inner.refuse = True  # expired, as the policy would now say
    clock.now = 10

    with pytest.raises(InvalidToken):
        _check(verifier.verify("token-a"))


def test_refusals_and_other_tokens_are_not_remembered() -> None:
    inner = CountingVerifier()
    verifier = RememberingVerifier(inner, seconds=60, clock=Clock())
    inner.refuse = True
    for _ in range(2):
        with pytest.raises(InvalidToken):
            _check(verifier.verify("token-a"))
    inner.refuse = False
    _check(verifier.verify("token-a"))
    _check(verifier.verify("token-b"))

    assert inner.checks == 4


def test_verified_tokens_are_remembered_unless_turned_off(clean_env: pytest.MonkeyPatch) -> None:
    remembering = create_verifier(Settings(_env_file=None, jwt_secret=SECRET))
    plain = create_verifier(Settings(_env_file=None, jwt_secret=SECRET, token_cache_seconds=0))

    assert isinstance(remembering, RememberingVerifier)
    assert isinstance(plain, SecretVerifier)


def test_remembered_token_of_a_withdrawn_key_is_refused_once_the_key_set_is_fetched_again(
    jwks_server: JwksServer, keys: Keys
) -> None:
    """SECURITY-CASES #15: the memory of a token lasts no longer than its key set's."""
    clock = Clock(1_000.0)
    lifetime = 300
    policy = JwksPolicy(lifetime=lifetime, cooldown=10, stale=3600, timeout=1)
    client = JwksClient(jwks_server.url, ("EdDSA",), policy, clock=clock)
    claims = ClaimPolicy(issuer=None, audience=None, leeway=30, max_lifetime=86_400, max_age=None)
    verifier = RememberingVerifier(JwksVerifier(claims, client, ["EdDSA"]), seconds=60, clock=clock)
    now = int(time.time())
    withdrawn = keys.ed.sign({"sub": "alice", "iat": now, "exp": now + 900})
    current = keys.ed_next.sign({"sub": "alice", "iat": now, "exp": now + 900})
    jwks_server.publish(keys.ed, keys.ed_next)

    async def scenario() -> None:
        await verifier.verify(current)  # the key set is fetched
        jwks_server.publish(keys.ed_next)  # the issuer withdraws ed-1 at once
        clock.now += lifetime - 1
        await verifier.verify(withdrawn)  # the set in hand still holds ed-1: accepted
        clock.now += 2
        await verifier.verify(current)  # the set is fetched again, without ed-1
        with pytest.raises(InvalidToken):
            await verifier.verify(withdrawn)

    asyncio.run(scenario())

    assert jwks_server.fetches == 2
