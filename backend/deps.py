"""The dependencies every user route shares: the session, the caller, the owner guard."""

from collections.abc import AsyncIterator
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.auth import Claims, Scope, TokenVerifier, bearer_scheme, bearer_token
from backend.db import scope_to
from backend.errors import Forbidden, InsufficientScope, RateLimited
from backend.ratelimit import VERDICTS, RateLimiter
from backend.tokens.service import PAT_PREFIX, verify_personal_token
from backend.users.service import KnownUsers, ensure_user

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.sessionmaker() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


async def current_claims(
    request: Request,
    session: SessionDep,
    _scheme: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Claims:
    """The verified caller: a personal access token by its prefix, else a JWT."""
    return await authenticate(request, session)


async def authenticate(request: Request, session: AsyncSession) -> Claims:
    """The claims of the request's one bearer token (REST and MCP alike)."""
    token = bearer_token(request)
    if token.startswith(PAT_PREFIX):
        return await verify_personal_token(session, token=token)
    verifier: TokenVerifier = request.app.state.verifier
    return await verifier.verify(token)


ClaimsDep = Annotated[Claims, Depends(current_claims)]


async def limit_caller(request: Request, claims: ClaimsDep) -> None:
    """Count the request against its token subject's budget, before any other work; 429
    past it. The verdict joins the address's for the `RateLimit` headers."""
    limiter: RateLimiter | None = request.app.state.rate_limiter
    if limiter is None:
        return
    verdict = await limiter.hit(limiter.by_user, claims.subject)
    request.scope.setdefault(VERDICTS, []).append(verdict)
    if not verdict.allowed:
        raise RateLimited(verdict.reset_seconds)


async def require_owner(
    user_id: str, claims: ClaimsDep, session: SessionDep, request: Request
) -> str:
    """The path's `{user_id}`, once it is known to be the token's subject, byte for byte,
    and the token's scope allows the request (reads for `read`, anything else `write`)."""
    if claims.subject != user_id:
        raise Forbidden
    needed: Scope = "read" if request.method in READ_METHODS else "write"
    return await act_for(session, claims=claims, needed=needed, known=request.app.state.known_users)


async def act_for(
    session: AsyncSession, *, claims: Claims, needed: Scope, known: KnownUsers
) -> str:
    """The token's subject, once its scope allows `needed`; `session` then sees only that
    user's rows, and the user's row exists (created just in time)."""
    if needed not in claims.scopes:
        raise InsufficientScope(needed)
    await scope_to(session, user_id=claims.subject)
    await ensure_user(session, claims=claims, known=known)
    return claims.subject


OwnerId = Annotated[str, Depends(require_owner)]


async def require_session_token(claims: ClaimsDep) -> None:
    """Token management needs the user's own sign-in token, not a personal access token."""
    if "tokens" not in claims.scopes:
        raise InsufficientScope("tokens", "Personal access tokens cannot manage tokens.")


def location(request: Request, user_id: str, *segments: object) -> str:
    """The path of a resource under the caller's prefix, for a `Location` header."""
    tail = "/".join(str(segment) for segment in segments)
    return f"{request.scope.get('root_path', '')}/api/{quote(user_id, safe='')}/{tail}"
