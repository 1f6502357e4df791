"""Tag routes: parse, call the service, return. Tags are created by naming them on a task."""

from uuid import UUID

from fastapi import APIRouter, Response, status

from backend.conditions import (
    NOT_MODIFIED,
    PRECONDITION_FAILED,
    IfMatchDep,
    IfNoneMatch,
    not_modified,
    with_etag,
)
from backend.deps import OwnerId, SessionDep
from backend.models import Page, TagPublic, TagUpdate
from backend.pagination import PAGE, PageDep, page_of
from backend.tags import service

router = APIRouter(prefix="/tags", tags=["tags"])


@router.get("", response_model=Page[TagPublic], openapi_extra=PAGE.openapi)
async def list_tags(session: SessionDep, user_id: OwnerId, page: PageDep) -> Page[TagPublic]:
    """The caller's tags, by name ignoring case and Unicode form."""
    tags, next_cursor = await service.list_tags(session, user_id=user_id, page=page)
    return page_of(TagPublic, tags, next_cursor)


@router.get("/{tag_id}", response_model=TagPublic, responses=NOT_MODIFIED)
async def get_tag(
    session: SessionDep,
    user_id: OwnerId,
    tag_id: UUID,
    response: Response,
    if_none_match: IfNoneMatch = None,
) -> TagPublic | Response:
    """One tag, with its `ETag`; `If-None-Match` with a current ETag answers 304."""
    tag = await service.get_tag(session, user_id=user_id, tag_id=tag_id)
    return not_modified(if_none_match, tag.version) or with_etag(TagPublic, tag, response)


@router.patch("/{tag_id}", response_model=TagPublic, responses=PRECONDITION_FAILED)
async def rename_tag(
    session: SessionDep,
    user_id: OwnerId,
    tag_id: UUID,
    tag_in: TagUpdate,
    precondition: IfMatchDep,
    response: Response,
) -> TagPublic:
    """Rename the tag, on every task that carries it; onto another tag's name is 409."""
    tag = await service.rename_tag(
        session, user_id=user_id, tag_id=tag_id, name=tag_in.name, precondition=precondition
    )
    return with_etag(TagPublic, tag, response)


@router.delete("/{tag_id}", status_code=status.HTTP_204_NO_CONTENT, responses=PRECONDITION_FAILED)
async def delete_tag(
    session: SessionDep, user_id: OwnerId, tag_id: UUID, precondition: IfMatchDep
) -> None:
    """Delete the tag; the tasks that carry it lose it, each with a history entry."""
    await service.delete_tag(session, user_id=user_id, tag_id=tag_id, precondition=precondition)
