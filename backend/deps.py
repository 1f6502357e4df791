"""The dependencies every user route shares: the session and the owner guard."""

from collections.abc import AsyncIterator
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, Request
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.auth import Claims, current_claims
from backend.errors import Forbidden
from backend.users.service import ensure_user


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.sessionmaker() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]
ClaimsDep = Annotated[Claims, Depends(current_claims)]


async def require_owner(
    user_id: str, claims: ClaimsDep, session: SessionDep, request: Request
) -> str:
    """The path's `{user_id}`, once it is known to be the token's subject, byte for byte."""
    if claims.subject != user_id:
        raise Forbidden
    await ensure_user(session, claims=claims, known=request.app.state.known_users)
    return user_id


OwnerId = Annotated[str, Depends(require_owner)]


def location(request: Request, user_id: str, *segments: object) -> str:
    """The path of a resource under the caller's prefix, for a `Location` header."""
    tail = "/".join(str(segment) for segment in segments)
    return f"{request.scope.get('root_path', '')}/api/{quote(user_id, safe='')}/{tail}"
