"""The caller's own user record."""

from fastapi import APIRouter

from backend.deps import OwnerId, SessionDep
from backend.models import UserPublic
from backend.users import service

router = APIRouter(tags=["users"])


@router.get("/me", response_model=UserPublic)
async def get_me(session: SessionDep, user_id: OwnerId) -> UserPublic:
    """The caller's user record, created on first sight from the token's claims."""
    user = await service.get_user(session, user_id=user_id)
    return UserPublic.model_validate(user)
