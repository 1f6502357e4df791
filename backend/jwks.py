"""The issuer's public keys, fetched from its JWKS endpoint and cached with care."""

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import httpx
from jwt import PyJWK, PyJWTError

logger = logging.getLogger("todo_api")

MAX_JWKS_BYTES = 256 * 1024

# The key type (and curve) each public-key algorithm needs.
KEY_SHAPES: dict[str, tuple[str, str | None]] = {
    "EdDSA": ("OKP", "Ed25519"),
    "ES256": ("EC", "P-256"),
    "ES384": ("EC", "P-384"),
    "ES512": ("EC", "P-521"),
    "RS256": ("RSA", None),
    "RS384": ("RSA", None),
    "RS512": ("RSA", None),
    "PS256": ("RSA", None),
    "PS384": ("RSA", None),
    "PS512": ("RSA", None),
}


class KeysUnavailable(Exception):
    """No key set can be trusted now: none was ever fetched, or the last is too old."""


@dataclass(frozen=True, slots=True)
class JwksPolicy:
    lifetime: float = 300.0
    """Seconds a fetched key set is used before it is fetched again."""
    cooldown: float = 10.0
    """Least seconds between two fetches, whatever asks for them."""
    stale: float = 86_400.0
    """Seconds the last good key set keeps serving while the endpoint fails."""
    timeout: float = 3.0
    """Seconds one fetch may take, connection included."""


def usable_keys(document: object, algorithms: Iterable[str]) -> dict[tuple[str | None, str], PyJWK]:
    """Each signing key of a JWKS document, once per allowed algorithm that fits it.

    Private keys, encryption keys, keys of other types and a key whose own `alg` differs
    are left out; a document with no usable key at all is refused like a failed fetch.
    """
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWK set")
    keys: dict[tuple[str | None, str], PyJWK] = {}
    for jwk in document["keys"]:
        if not isinstance(jwk, dict) or "d" in jwk or jwk.get("use", "sig") != "sig":
            continue
        kid = jwk.get("kid")
        if kid is not None and not isinstance(kid, str):
            continue
        for algorithm in algorithms:
            kty, crv = KEY_SHAPES[algorithm]
            if jwk.get("kty") != kty or (crv and jwk.get("crv") != crv):
                continue
            if jwk.get("alg", algorithm) != algorithm:
                continue
            try:
                keys[(kid, algorithm)] = PyJWK(jwk, algorithm)
            except PyJWTError:
                continue
    if not keys:
        raise ValueError("no usable signing key in the JWK set")
    return keys


class JwksClient:
    """Keys by `(kid, alg)`, refreshed when the set expires or an unknown `kid` appears.

    One fetch at a time, at most one per cooldown; a failed fetch keeps the last good set
    for the stale window. The fetch is async, never on the event loop's critical path.
    """

    def __init__(
        self,
        url: str,
        algorithms: Iterable[str],
        policy: JwksPolicy = JwksPolicy(),
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url = url
        self._algorithms = tuple(algorithms)
        self._policy = policy
        self._clock = clock
        self._keys: dict[tuple[str | None, str], PyJWK] = {}
        self._kids: frozenset[str | None] = frozenset()
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._last_failed = False
        self._lock = asyncio.Lock()
        self._lock_loop: asyncio.AbstractEventLoop | None = None

    async def keys_for(self, kid: str | None, algorithm: str) -> list[PyJWK]:
        """The keys that may verify a token with this `kid` and `alg` (empty: none)."""
        now = self._clock()
        expired = self._fetched_at is None or now - self._fetched_at >= self._policy.lifetime
        # While a fetch is under way, a known key still in its stale window serves at once.
        served_meanwhile = self._lock.locked() and self._usable(now) and self._known(kid)
        if (expired or not self._known(kid)) and not served_meanwhile:
            await self._refresh(now)
        if not self._usable(self._clock()):
            raise KeysUnavailable
        if not self._known(kid) and self._last_failed:
            raise KeysUnavailable  # it may be a new key that could not be fetched
        return self._matching(kid, algorithm)

    def fresh_for(self) -> float:
        """Seconds the key set in hand stays fresh: 0 once it must be fetched again."""
        if self._fetched_at is None:
            return 0.0
        return max(0.0, self._fetched_at + self._policy.lifetime - self._clock())

    def _usable(self, now: float) -> bool:
        return self._fetched_at is not None and now - self._fetched_at <= self._policy.stale

    def _known(self, kid: str | None) -> bool:
        return kid is None or kid in self._kids

    def _matching(self, kid: str | None, algorithm: str) -> list[PyJWK]:
        if kid is not None:
            key = self._keys.get((kid, algorithm))
            return [key] if key else []
        return [key for (_, key_alg), key in self._keys.items() if key_alg == algorithm]

    async def _refresh(self, asked_at: float) -> None:
        loop = asyncio.get_running_loop()
        if self._lock_loop is not loop:  # a lock serves one event loop
            self._lock, self._lock_loop = asyncio.Lock(), loop
        async with self._lock:
            attempted = self._attempted_at
            if attempted is not None and (
                attempted >= asked_at or asked_at - attempted < self._policy.cooldown
            ):
                return  # another request just fetched, or the cooldown holds
            self._attempted_at = self._clock()
            try:
                async with asyncio.timeout(self._policy.timeout):
                    keys = usable_keys(await self._fetch(), self._algorithms)
            except (httpx.HTTPError, httpx.InvalidURL, TimeoutError, ValueError) as exc:
                self._attempted_at = self._clock()  # the cooldown runs from the failure
                self._last_failed = True
                logger.warning(
                    "JWKS fetch failed (%s); keeping the last good key set", type(exc).__name__
                )
                return
            self._keys, self._kids = keys, frozenset(kid for kid, _ in keys)
            self._fetched_at, self._last_failed = self._clock(), False

    async def _fetch(self) -> Any:
        async with (
            httpx.AsyncClient(timeout=self._policy.timeout, follow_redirects=False) as client,
            client.stream("GET", self._url, headers={"Accept": "application/json"}) as response,
        ):
            if response.status_code != 200:
                raise ValueError(f"status {response.status_code}")
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_JWKS_BYTES:
                    raise ValueError("JWK set too large")
        return json.loads(body)
