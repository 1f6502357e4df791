"""backend.jwks: which JWKs are usable, and the key cache against a local key endpoint."""

import asyncio
import json
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwt import PyJWK

from backend.jwks import MAX_JWKS_BYTES, JwksClient, JwksPolicy, KeysUnavailable, usable_keys
from tests.security.support import MOVED_PATH, JwksServer, Keys, SigningKey
from tests.security.support import jwks_server as jwks_server  # fixtures
from tests.security.support import keys as keys

ALGORITHMS = ("EdDSA", "ES256", "RS256", "PS256")
POLICY = JwksPolicy(lifetime=300, cooldown=10, stale=3600, timeout=1)

Jwk = dict[str, Any]


class Clock:
    """A monotonic clock that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def jwks(jwks_server: JwksServer, clock: Clock) -> JwksClient:
    return JwksClient(jwks_server.url, ALGORITHMS, POLICY, clock=clock)


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """One event loop for the whole scenario, as in the app."""
    asyncio.run(scenario())


def kids(found: list[PyJWK]) -> list[str | None]:
    return [key.key_id for key in found]


# usable_keys ------------------------------------------------------------------------------


def test_usable_keys_are_indexed_by_kid_and_algorithm(keys: Keys) -> None:
    document = {"keys": [key.public_jwk() for key in keys.issued]}

    found = usable_keys(document, ALGORITHMS)

    assert set(found) == {
        ("ed-1", "EdDSA"),
        ("rsa-1", "RS256"),
        ("rsa-1", "PS256"),
        ("ec-1", "ES256"),
    }


def _private(keys: Keys) -> Jwk:
    jwk = json.loads(PyJWK.from_dict(keys.ed.public_jwk()).Algorithm.to_jwk(keys.ed.private))
    return {**jwk, "kid": "private", "alg": "EdDSA"}


def _p384(keys: Keys) -> Jwk:
    key = SigningKey("p384", "ES256", ec.generate_private_key(ec.SECP384R1()))
    jwk = PyJWK.from_dict(keys.ec.public_jwk()).Algorithm.to_jwk(key.private.public_key())
    return {**json.loads(jwk), "kid": "p384", "alg": "ES256"}


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(_private, id="private-key"),
        pytest.param(lambda keys: keys.ec.public_jwk() | {"use": "enc"}, id="use-enc"),
        pytest.param(lambda keys: {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"}, id="oct"),
        pytest.param(lambda keys: keys.ec.public_jwk() | {"kid": 7}, id="kid-number"),
        pytest.param(lambda keys: keys.ec.public_jwk() | {"alg": "ES384"}, id="alg-mismatch"),
        pytest.param(lambda keys: keys.ec.public_jwk() | {"alg": "RS256"}, id="alg-other-type"),
        pytest.param(_p384, id="wrong-curve"),
        pytest.param(lambda keys: keys.ec.public_jwk() | {"x": "AAAA"}, id="broken-point"),
        pytest.param(lambda keys: "not a key", id="not-an-object"),
    ],
)
def test_usable_keys_leave_out_unusable_keys(keys: Keys, bad: Callable[[Keys], Any]) -> None:
    found = usable_keys({"keys": [bad(keys), keys.ed.public_jwk()]}, ALGORITHMS)

    assert set(found) == {("ed-1", "EdDSA")}
    with pytest.raises(ValueError, match="no usable signing key"):
        usable_keys({"keys": [bad(keys)]}, ALGORITHMS)


def test_usable_keys_hold_an_rsa_key_with_alg_to_that_algorithm(keys: Keys) -> None:
    named = SigningKey(keys.rsa.kid, "PS256", keys.rsa.private)

    assert set(usable_keys({"keys": [named.public_jwk()]}, ALGORITHMS)) == {("rsa-1", "PS256")}


def test_usable_keys_offer_only_the_configured_algorithms(keys: Keys) -> None:
    document = {"keys": [key.public_jwk() for key in keys.issued]}

    assert set(usable_keys(document, ["RS256"])) == {("rsa-1", "RS256")}


@pytest.mark.parametrize(
    "document",
    [{"keys": []}, {"keys": "ed-1"}, {"issuer": "x"}, [], "keys", None],
    ids=["empty", "keys-string", "no-keys", "list", "string", "null"],
)
def test_usable_keys_refuse_a_document_without_keys(document: object) -> None:
    with pytest.raises(ValueError, match=r"JWK set|usable"):
        usable_keys(document, ALGORITHMS)


# JwksClient -------------------------------------------------------------------------------


def test_keys_are_fetched_once_within_the_lifetime(
    jwks: JwksClient, jwks_server: JwksServer, clock: Clock
) -> None:
    async def scenario() -> None:
        assert kids(await jwks.keys_for("ed-1", "EdDSA")) == ["ed-1"]
        clock.advance(299)
        assert kids(await jwks.keys_for("rsa-1", "PS256")) == ["rsa-1"]
        assert kids(await jwks.keys_for(None, "ES256")) == ["ec-1"]

    run(scenario)

    assert jwks_server.fetches == 1


def test_keys_are_fetched_again_after_the_lifetime(
    jwks: JwksClient, jwks_server: JwksServer, clock: Clock, keys: Keys
) -> None:
    async def scenario() -> None:
        await jwks.keys_for("ed-1", "EdDSA")
        jwks_server.publish(keys.ed_next)
        clock.advance(300)
        assert kids(await jwks.keys_for("ed-2", "EdDSA")) == ["ed-2"]
        assert await jwks.keys_for("ed-1", "EdDSA") == []

    run(scenario)

    assert jwks_server.fetches == 2


def test_unknown_kids_fetch_at_most_once_per_cooldown(
    jwks: JwksClient, jwks_server: JwksServer, clock: Clock, keys: Keys
) -> None:
    async def scenario() -> None:
        await jwks.keys_for("ed-1", "EdDSA")
        jwks_server.publish(*keys.issued, keys.ed_next)
        for number in range(20):
            clock.advance(0.4)
            assert await jwks.keys_for(f"unknown-{number}", "EdDSA") == []
        assert jwks_server.fetches == 1  # 8 seconds: within the cooldown
        clock.advance(2.5)
        assert kids(await jwks.keys_for("ed-2", "EdDSA")) == ["ed-2"]
        assert await jwks.keys_for("unknown-again", "EdDSA") == []

    run(scenario)

    assert jwks_server.fetches == 2


def test_failed_fetch_keeps_the_last_good_set_for_the_stale_window(
    jwks: JwksClient, jwks_server: JwksServer, clock: Clock
) -> None:
    async def scenario() -> None:
        await jwks.keys_for("ed-1", "EdDSA")
        jwks_server.status = 503
        clock.advance(POLICY.lifetime)
        assert kids(await jwks.keys_for("ed-1", "EdDSA")) == ["ed-1"]
        with pytest.raises(KeysUnavailable):
            await jwks.keys_for("ed-2", "EdDSA")  # perhaps a new key: not "invalid"
        clock.advance(POLICY.stale - POLICY.lifetime)
        assert kids(await jwks.keys_for("ed-1", "EdDSA")) == ["ed-1"]
        clock.advance(1)
        with pytest.raises(KeysUnavailable):
            await jwks.keys_for("ed-1", "EdDSA")

    run(scenario)

    assert jwks_server.fetches >= 3


def test_stale_set_is_replaced_once_the_endpoint_recovers(
    jwks: JwksClient, jwks_server: JwksServer, clock: Clock
) -> None:
    async def scenario() -> None:
        await jwks.keys_for("ed-1", "EdDSA")
        jwks_server.status = 500
        clock.advance(POLICY.stale + 1)
        with pytest.raises(KeysUnavailable):
            await jwks.keys_for("ed-1", "EdDSA")
        jwks_server.status = 200
        clock.advance(POLICY.cooldown)
        assert kids(await jwks.keys_for("ed-1", "EdDSA")) == ["ed-1"]

    run(scenario)

    assert jwks_server.fetches == 3


@pytest.mark.parametrize(
    "breakage",
    [
        pytest.param(lambda server: setattr(server, "status", 500), id="status-500"),
        pytest.param(lambda server: setattr(server, "redirect", True), id="redirect"),
        pytest.param(lambda server: setattr(server, "delay", 2.0), id="slow"),
        pytest.param(lambda server: server.garbage(b"<html></html>", "text/html"), id="html"),
        pytest.param(
            lambda server: server.garbage(json.dumps({"keys": ["x" * MAX_JWKS_BYTES]}).encode()),
            id="too-large",
        ),
    ],
)
def test_no_key_set_yet_is_keys_unavailable(
    jwks_server: JwksServer, clock: Clock, breakage: Callable[[JwksServer], None]
) -> None:
    breakage(jwks_server)
    jwks = JwksClient(jwks_server.url, ALGORITHMS, JwksPolicy(timeout=0.3), clock=clock)

    async def scenario() -> None:
        with pytest.raises(KeysUnavailable):
            await jwks.keys_for("ed-1", "EdDSA")

    run(scenario)

    assert jwks_server.fetches == 1
    assert jwks_server.count(MOVED_PATH) == 0


def test_concurrent_calls_share_one_fetch(jwks: JwksClient, jwks_server: JwksServer) -> None:
    jwks_server.delay = 0.2

    async def scenario() -> None:
        found = await asyncio.gather(*(jwks.keys_for("ed-1", "EdDSA") for _ in range(20)))
        assert [kids(keys) for keys in found] == [["ed-1"]] * 20

    run(scenario)

    assert jwks_server.fetches == 1


def test_concurrent_unknown_kids_share_one_fetch(
    jwks: JwksClient, jwks_server: JwksServer, clock: Clock
) -> None:
    async def scenario() -> None:
        await jwks.keys_for("ed-1", "EdDSA")
        clock.advance(POLICY.cooldown)
        jwks_server.delay = 0.2
        found = await asyncio.gather(
            *(jwks.keys_for(f"unknown-{number}", "EdDSA") for number in range(20))
        )
        assert found == [[]] * 20

    run(scenario)

    assert jwks_server.fetches == 2
