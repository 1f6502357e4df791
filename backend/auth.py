"""Bearer-token authentication: a `TokenVerifier` per mode, chosen by settings.

No database code here: personal access tokens are looked up by `backend.tokens`.
"""

import binascii
import hashlib
import json
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeGuard, runtime_checkable

import jwt
from cachetools import TLRUCache
from fastapi import Request
from jwt import PyJWK
from jwt.utils import base64url_decode

from backend.config import Settings
from backend.errors import AuthUnavailable, InvalidToken, NotAuthenticated
from backend.jwks import JwksClient, JwksPolicy, KeysUnavailable

MAX_TOKEN_BYTES = 8 * 1024
MAX_SUBJECT_LENGTH = 255
MAX_KID_LENGTH = 256
ALLOWED_TYPES = frozenset({"jwt", "at+jwt", "application/at+jwt"})
TIME_CLAIMS = ("exp", "iat", "nbf")

Scope = Literal["read", "write", "tokens"]
FULL_ACCESS: frozenset[Scope] = frozenset({"read", "write", "tokens"})


@dataclass(frozen=True, slots=True)
class Claims:
    """What the service takes from a verified token."""

    subject: str
    email: str | None = None
    name: str | None = None
    scopes: frozenset[Scope] = field(default=FULL_ACCESS)
    accepted_until: float | None = None
    """When the claim policy stops accepting the token (Unix time); None for tokens that
    are looked up at every use (personal access tokens)."""


class TokenVerifier(Protocol):
    async def verify(self, token: str) -> Claims: ...


@runtime_checkable
class KeysExpire(Protocol):
    """A verifier whose keys are fetched: its acceptances hold only while they are fresh."""

    def keys_fresh_for(self) -> float: ...


@dataclass(frozen=True, slots=True)
class ClaimPolicy:
    """The checks every mode applies once the key is known."""

    issuer: str | None
    audience: str | None
    leeway: int
    max_lifetime: int
    max_age: int | None

    @classmethod
    def from_settings(cls, settings: Settings) -> "ClaimPolicy":
        return cls(
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            leeway=settings.jwt_leeway_seconds,
            max_lifetime=settings.jwt_max_lifetime_seconds,
            max_age=settings.jwt_max_age_seconds,
        )

    def decode(self, token: str, key: str | PyJWK, algorithms: list[str]) -> Claims:
        try:
            decoded = jwt.decode_complete(
                token,
                key,
                algorithms=algorithms,
                issuer=self.issuer,
                audience=self.audience,
                leeway=self.leeway,
                options={
                    "require": ["exp", "iat", "sub"],
                    "verify_aud": self.audience is not None,
                },
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken from exc
        return self._claims(decoded["header"], decoded["payload"])

    def _claims(self, header: dict[str, Any], payload: dict[str, Any]) -> Claims:
        token_type = header.get("typ")
        if token_type is not None and str(token_type).lower() not in ALLOWED_TYPES:
            raise InvalidToken
        for name in TIME_CLAIMS:
            value = payload.get(name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float)
            ):
                raise InvalidToken
        issued_at = payload["iat"]
        if payload["exp"] - issued_at > self.max_lifetime:
            raise InvalidToken("The token's lifetime is longer than this service accepts.")
        if self.max_age is not None and time.time() - issued_at > self.max_age + self.leeway:
            raise InvalidToken("The token was issued too long ago.")
        # PyJWT accepts a token until `exp` + leeway; `max_age` may end that sooner.
        accepted_until = payload["exp"] + self.leeway
        if self.max_age is not None:
            accepted_until = min(accepted_until, issued_at + self.max_age + self.leeway)
        subject = payload.get("sub")
        if not _is_text(subject) or len(subject) > MAX_SUBJECT_LENGTH:
            raise InvalidToken
        return Claims(
            subject=subject,
            email=_optional_text(payload.get("email"), 320),
            name=_optional_text(payload.get("name"), 255),
            accepted_until=accepted_until,
        )


def _is_text(value: object) -> TypeGuard[str]:
    """A non-empty string with no control character (NUL included) and no lone surrogate:
    what an identity provider writes, and what the database and the logs can store."""
    return isinstance(value, str) and bool(value) and _UNPRINTABLE.search(value) is None


_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def _optional_text(value: object, limit: int) -> str | None:
    """An informational claim (`email`, `name`), or None where it is absent or unusable."""
    return value[:limit] if _is_text(value) else None


class SecretVerifier:
    """HMAC tokens (HS256 by default) signed with a secret shared with the issuer."""

    def __init__(self, policy: ClaimPolicy, secret: str, algorithms: Iterable[str]) -> None:
        self._policy = policy
        self._secret = secret
        self._algorithms = list(algorithms)

    async def verify(self, token: str) -> Claims:
        return self._policy.decode(token, self._secret, self._algorithms)


class JwksVerifier:
    """Public-key tokens (EdDSA, ES256, RS256, PS256) checked against the issuer's JWKS.

    The header's `alg` must be allowed and fit the key; its `jwk`, `jku` and `x5u` are
    never used: keys come only from the configured endpoint.
    """

    def __init__(self, policy: ClaimPolicy, keys: JwksClient, algorithms: Iterable[str]) -> None:
        self._policy = policy
        self._keys = keys
        self._algorithms = frozenset(algorithms)

    def keys_fresh_for(self) -> float:
        return self._keys.fresh_for()

    async def verify(self, token: str) -> Claims:
        header = _peek_header(token)
        algorithm, kid = header.get("alg"), header.get("kid")
        if not isinstance(algorithm, str) or algorithm not in self._algorithms:
            raise InvalidToken
        if kid is not None and (not isinstance(kid, str) or len(kid) > MAX_KID_LENGTH):
            raise InvalidToken
        try:
            keys = await self._keys.keys_for(kid, algorithm)
        except KeysUnavailable:
            raise AuthUnavailable from None
        for key in keys[:-1]:  # without a `kid`, each key that fits is tried in turn
            try:
                return self._policy.decode(token, key, [algorithm])
            except InvalidToken:
                continue
        if not keys:
            raise InvalidToken
        return self._policy.decode(token, keys[-1], [algorithm])


class RememberingVerifier:
    """Another verifier's acceptances, remembered: a client sends the same token with every
    request until it expires, and checking its signature and claims again (PyJWT) each time
    costs (optimisation 17 in specs/performance.md).

    A token is remembered under its SHA-256 digest until the claim policy would stop
    accepting it, never longer than `seconds`, and, with fetched keys (JWKS), no longer
    than the key set that verified it stays fresh: a token signed by a key the issuer
    withdraws is checked again, and refused, once the set is fetched again. Refusals are
    not remembered: each bad token is checked in full. At most `size` tokens, the least
    recently used forgotten first.
    """

    def __init__(
        self,
        inner: TokenVerifier,
        *,
        seconds: float,
        size: int = 4096,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._inner = inner
        self._seconds = seconds
        self._accepted: TLRUCache[bytes, tuple[Claims, float]] = TLRUCache(
            maxsize=size, ttu=self._forget_at, timer=clock
        )

    def _forget_at(self, _digest: bytes, entry: tuple[Claims, float], now: float) -> float:
        claims, seconds = entry
        until = now + seconds
        return until if claims.accepted_until is None else min(until, claims.accepted_until)

    async def verify(self, token: str) -> Claims:
        digest = hashlib.sha256(token.encode()).digest()
        entry = self._accepted.get(digest)
        if entry is None:
            claims = await self._inner.verify(token)
            seconds = self._seconds
            if isinstance(self._inner, KeysExpire):
                seconds = min(seconds, self._inner.keys_fresh_for())
            entry = self._accepted[digest] = (claims, seconds)
        return entry[0]


def _peek_header(token: str) -> dict[str, Any]:
    """The header, read only to choose a key; PyJWT checks the whole token strictly after."""
    try:
        header = json.loads(base64url_decode(token.partition(".")[0]))
    except (ValueError, TypeError, binascii.Error, RecursionError):
        raise InvalidToken from None
    if not isinstance(header, dict):
        raise InvalidToken
    return header


def create_verifier(settings: Settings) -> TokenVerifier:
    verifier = _signature_verifier(settings)
    # With JWKS, each remembered token is also bounded by its key set's freshness
    # (`KeysExpire`), so a withdrawn key's tokens stop within the key set's lifetime.
    seconds = settings.token_cache_seconds
    if seconds == 0:
        return verifier
    return RememberingVerifier(verifier, seconds=seconds)


def _signature_verifier(settings: Settings) -> TokenVerifier:
    policy = ClaimPolicy.from_settings(settings)
    if settings.jwks_url is not None:
        jwks = JwksClient(
            settings.jwks_url,
            settings.jwt_algorithms,
            JwksPolicy(
                lifetime=settings.jwks_cache_seconds,
                cooldown=settings.jwks_cooldown_seconds,
                stale=settings.jwks_stale_seconds,
                timeout=settings.jwks_timeout_seconds,
            ),
        )
        return JwksVerifier(policy, jwks, settings.jwt_algorithms)
    return SecretVerifier(policy, settings.signing_secret(), settings.jwt_algorithms)


def issue_token(
    settings: Settings,
    user_id: str,
    *,
    ttl_seconds: int,
    email: str | None = None,
    name: str | None = None,
    now: int,
) -> str:
    """A token for development and tests, signed with the shared (or development) secret."""
    payload: dict[str, Any] = {"sub": user_id, "iat": now, "exp": now + ttl_seconds}
    if email:
        payload["email"] = email
    if name:
        payload["name"] = name
    if settings.jwt_issuer:
        payload["iss"] = settings.jwt_issuer
    if settings.jwt_audience:
        payload["aud"] = settings.jwt_audience
    return jwt.encode(payload, settings.signing_secret(), algorithm=settings.jwt_algorithms[0])


def bearer_token(request: Request) -> str:
    """The token of the one `Authorization: Bearer` header; 401 for anything else."""
    headers = request.headers.getlist("authorization")
    if len(headers) > 1:
        raise InvalidToken("Send exactly one Authorization header.")
    scheme, _, token = (headers[0] if headers else "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise NotAuthenticated
    if len(token) > MAX_TOKEN_BYTES:
        raise InvalidToken
    return token
