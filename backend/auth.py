"""Bearer-token authentication: a `TokenVerifier` per mode, chosen by settings."""

from dataclasses import dataclass
from typing import Annotated, Any, Protocol

import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from backend.config import Settings
from backend.errors import InvalidToken, NotAuthenticated

MAX_TOKEN_BYTES = 8 * 1024
MAX_SUBJECT_LENGTH = 255
ALLOWED_TYPES = frozenset({"jwt", "at+jwt", "application/at+jwt"})
TIME_CLAIMS = ("exp", "iat", "nbf")


@dataclass(frozen=True, slots=True)
class Claims:
    """What the service takes from a verified token."""

    subject: str
    email: str | None = None
    name: str | None = None


class TokenVerifier(Protocol):
    async def verify(self, token: str) -> Claims: ...


class SecretVerifier:
    """HS256 (or HS384/HS512) tokens signed with a secret shared with the issuer."""

    def __init__(self, settings: Settings) -> None:
        self._key = settings.signing_secret()
        self._algorithms = settings.jwt_algorithms
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._leeway = settings.jwt_leeway_seconds
        self._max_lifetime = settings.jwt_max_lifetime_seconds

    async def verify(self, token: str) -> Claims:
        try:
            header = jwt.get_unverified_header(token)
            payload = jwt.decode(
                token,
                self._key,
                algorithms=self._algorithms,
                issuer=self._issuer,
                audience=self._audience,
                leeway=self._leeway,
                options={
                    "require": ["exp", "iat", "sub"],
                    "verify_aud": self._audience is not None,
                },
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken from exc
        return claims_from(header, payload, max_lifetime=self._max_lifetime)


def claims_from(header: dict[str, Any], payload: dict[str, Any], *, max_lifetime: int) -> Claims:
    """The checks every mode shares, past the signature and the registered claims."""
    token_type = header.get("typ")
    if token_type is not None and str(token_type).lower() not in ALLOWED_TYPES:
        raise InvalidToken
    for name in TIME_CLAIMS:
        value = payload.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise InvalidToken
    if payload["exp"] - payload["iat"] > max_lifetime:
        raise InvalidToken("The token's lifetime is longer than this service accepts.")
    subject = payload.get("sub")
    if not isinstance(subject, str) or not subject or len(subject) > MAX_SUBJECT_LENGTH:
        raise InvalidToken
    return Claims(
        subject=subject,
        email=_optional_text(payload.get("email"), 320),
        name=_optional_text(payload.get("name"), 255),
    )


def _optional_text(value: object, limit: int) -> str | None:
    return value[:limit] if isinstance(value, str) and value else None


def create_verifier(settings: Settings) -> TokenVerifier:
    return SecretVerifier(settings)


def issue_token(
    settings: Settings,
    user_id: str,
    *,
    ttl_seconds: int,
    email: str | None = None,
    name: str | None = None,
    now: int,
) -> str:
    """A token for development and tests, signed the way the service verifies."""
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


bearer_scheme = HTTPBearer(auto_error=False, description="A JWT or personal access token.")


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


async def current_claims(
    request: Request,
    _scheme: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Claims:
    verifier: TokenVerifier = request.app.state.verifier
    return await verifier.verify(bearer_token(request))
