"""History routes: read-only, newest first."""

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends

from backend.deps import OwnerId, SessionDep
from backend.history import service
from backend.models import HistoryListQuery, HistoryPublic, Page
from backend.pagination import PAGE, ListQuery, PageDep, PageRequest, page_of

router = APIRouter(tags=["history"])

HISTORY_LIST = ListQuery(HistoryListQuery)
# OpenAPI links: a page's first entry is one `GET /history/{entry_id}` can read (clients'
# generators and schemathesis's stateful phase follow them; `user_id` stays the caller's).
FIRST_ENTRY: dict[int | str, dict[str, Any]] = {
    200: {
        "links": {
            "GetFirstEntry": {
                "operationId": "get_history_entry",
                "parameters": {"entry_id": "$response.body#/items/0/id"},
                "description": "The page's first entry, by its id.",
            }
        }
    }
}


@router.get(
    "/history",
    response_model=Page[HistoryPublic],
    responses=FIRST_ENTRY,
    openapi_extra=HISTORY_LIST.openapi,
)
async def list_history(
    session: SessionDep,
    user_id: OwnerId,
    page: Annotated[PageRequest[HistoryListQuery], Depends(HISTORY_LIST)],
) -> Page[HistoryPublic]:
    """The caller's history, newest first; `since` is inclusive, `until` exclusive."""
    entries, next_cursor = await service.list_history(
        session, user_id=user_id, page=page, filters=page.query
    )
    return page_of(HistoryPublic, entries, next_cursor)


@router.get("/history/{entry_id}", response_model=HistoryPublic)
async def get_history_entry(session: SessionDep, user_id: OwnerId, entry_id: UUID) -> HistoryPublic:
    """One history entry of the caller's."""
    entry = await service.get_history_entry(session, user_id=user_id, entry_id=entry_id)
    return HistoryPublic.model_validate(entry)


@router.get(
    "/tasks/{task_id}/history",
    response_model=Page[HistoryPublic],
    responses=FIRST_ENTRY,
    openapi_extra=PAGE.openapi,
)
async def list_task_history(
    session: SessionDep, user_id: OwnerId, task_id: UUID, page: PageDep
) -> Page[HistoryPublic]:
    """A task's history, newest first, also after the task was deleted."""
    entries, next_cursor = await service.list_task_history(
        session, user_id=user_id, task_id=task_id, page=page
    )
    return page_of(HistoryPublic, entries, next_cursor)
