"""Personal access token routes; only a signed-in user's own token may manage them."""

from uuid import UUID

from fastapi import APIRouter, Depends, Request, Response, status

from backend.deps import OwnerId, SessionDep, location, require_session_token
from backend.models import Page, TokenCreate, TokenCreated, TokenPublic
from backend.pagination import PAGE, PageDep, page_of
from backend.tokens import service

router = APIRouter(prefix="/tokens", tags=["tokens"], dependencies=[Depends(require_session_token)])


@router.get("", response_model=Page[TokenPublic], openapi_extra=PAGE.openapi)
async def list_tokens(session: SessionDep, user_id: OwnerId, page: PageDep) -> Page[TokenPublic]:
    """The caller's personal access tokens, newest first, without their secrets."""
    tokens, next_cursor = await service.list_tokens(session, user_id=user_id, page=page)
    return page_of(TokenPublic, tokens, next_cursor)


@router.post("", response_model=TokenCreated, status_code=status.HTTP_201_CREATED)
async def create_token(
    session: SessionDep,
    user_id: OwnerId,
    token_in: TokenCreate,
    request: Request,
    response: Response,
) -> TokenCreated:
    """A new personal access token; `token` is shown here once and never again."""
    token = await service.create_token(session, user_id=user_id, token_in=token_in)
    response.headers["Location"] = location(request, user_id, "tokens", token.id)
    return token


@router.delete("/{token_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_token(session: SessionDep, user_id: OwnerId, token_id: UUID) -> None:
    """Revoke the token at once."""
    await service.delete_token(session, user_id=user_id, token_id=token_id)
