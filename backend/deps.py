"""The dependencies every user route shares: the session, the owner guard, the caller."""

from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, Request
from fastapi.openapi.models import HTTPBearer as HTTPBearerModel
from fastapi.security.base import SecurityBase
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.auth import Claims, Scope, TokenVerifier, bearer_token
from backend.db import scope_to
from backend.errors import Forbidden, InsufficientScope, RateLimited
from backend.middleware import READ_METHODS, request_session
from backend.ratelimit import RateLimiter, verdicts_of
from backend.tokens.service import PAT_PREFIX, verify_personal_token
from backend.users.service import KnownUsers, ensure_user


async def get_session(request: Request) -> AsyncSession:
    """The request's session, opened on first use (`middleware.RequestSession`);
    `SessionPerRequest` ends it after the answer. Writes commit in their units of work."""
    return request_session(request.scope).open()


SessionDep = Annotated[AsyncSession, Depends(get_session)]


class OwnerGuard(SecurityBase):
    """The guard of every `/api/{user_id}` route, on the router: verify the one bearer
    token, count the request against its subject's rate budget before any other work, then
    let it act only for the path's `{user_id}` (the subject, byte for byte), within the
    token's scope (reads for `read`, anything else `write`), once it has its turn
    (`middleware.RequestConcurrency`).

    One dependency with no sub-dependencies: FastAPI solves every dependency's sub-tree on
    every request, cached or not, so the guard opens the session itself and is itself the
    bearer security scheme the OpenAPI document shows (FastAPI documents a dependency that
    is a `SecurityBase` as one), and the routes read what it accepted through `OwnerId` and
    `CallerDep`, which have none (optimisation 2 in specs/performance.md).
    """

    def __init__(self, description: str) -> None:
        self.model = HTTPBearerModel(description=description)
        self.scheme_name = "HTTPBearer"

    async def __call__(self, request: Request, user_id: str) -> None:
        session = await get_session(request)
        claims = await authenticate(request, session)
        await limit_caller(request, claims)
        if claims.subject != user_id:
            raise Forbidden
        needed: Scope = "read" if request.method in READ_METHODS else "write"
        await request_session(request.scope).take_turn()
        await authorize(session, claims=claims, needed=needed, known=request.app.state.known_users)
        request.state.caller = claims


require_owner = OwnerGuard("A JWT from the identity provider, or a personal access token.")


async def authenticate(request: Request, session: AsyncSession) -> Claims:
    """The claims of the request's one bearer token (REST and MCP alike)."""
    token = bearer_token(request)
    if token.startswith(PAT_PREFIX):
        return await verify_personal_token(session, token=token)
    verifier: TokenVerifier = request.app.state.verifier
    return await verifier.verify(token)


async def limit_caller(request: Request, claims: Claims) -> None:
    """Count the request against its token subject's budget; 429 past it. The verdict
    joins the address's for the `RateLimit` headers."""
    limiter: RateLimiter | None = request.app.state.rate_limiter
    if limiter is None:
        return
    verdict = await limiter.hit(limiter.by_user, claims.subject)
    verdicts_of(request.scope).append(verdict)
    if not verdict.allowed:
        raise RateLimited(verdict.reset_seconds)


async def authorize(
    session: AsyncSession, *, claims: Claims, needed: Scope, known: KnownUsers
) -> str:
    """The token's subject, once its scope allows `needed`; `session` then sees only that
    user's rows, and the user's row exists (created just in time)."""
    if needed not in claims.scopes:
        raise InsufficientScope(needed)
    await scope_to(session, user_id=claims.subject)
    await ensure_user(session, claims=claims, known=known)
    return claims.subject


async def caller(request: Request) -> Claims:
    """The claims `require_owner` accepted; refused (403) where no guard ran, so that a
    route mounted outside the guarded router fails closed."""
    claims: Claims | None = getattr(request.state, "caller", None)
    if claims is None:
        raise Forbidden
    return claims


CallerDep = Annotated[Claims, Depends(caller)]


async def owner_id(request: Request) -> str:
    return (await caller(request)).subject


OwnerId = Annotated[str, Depends(owner_id)]
"""The path's `{user_id}`, checked by the router's guard."""


async def require_session_token(claims: CallerDep) -> None:
    """Token management needs the user's own sign-in token, not a personal access token."""
    if "tokens" not in claims.scopes:
        raise InsufficientScope("tokens", "Personal access tokens cannot manage tokens.")


def location(request: Request, user_id: str, *segments: object) -> str:
    """The path of a resource under the caller's prefix, for a `Location` header."""
    tail = "/".join(str(segment) for segment in segments)
    return f"{request.scope.get('root_path', '')}/api/{quote(user_id, safe='')}/{tail}"
