"""Change-feed route: what changed since a sync token, for clients that keep a copy."""

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from backend.changes import service
from backend.deps import OwnerId, SessionDep
from backend.fields import CHANGES_DEFAULT_LIMIT, ChangesLimit, SyncToken
from backend.models import ChangesPage
from backend.openapi import problem_response

router = APIRouter(tags=["changes"])

EXPIRED: dict[int | str, dict[str, Any]] = {
    410: problem_response(
        410,
        "sync_expired",
        "The token is older than the feed keeps deletions (`sync_expired`): start over "
        "without `since`.",
    )
}


@router.get("/changes", response_model=ChangesPage, responses=EXPIRED)
async def list_changes(
    session: SessionDep,
    user_id: OwnerId,
    request: Request,
    since: Annotated[SyncToken, Query()] = None,
    limit: Annotated[ChangesLimit, Query()] = CHANGES_DEFAULT_LIMIT,
) -> ChangesPage:
    """Every task and category changed since `since`, each once, as it is now, in commit
    order; a deleted one as `op: delete` with `data: null`. Without `since`, a sync starts:
    every live task and category. Pass `next_since` back while `has_more`, and keep the
    last one for the next sync."""
    return await service.list_changes(
        session,
        user_id=user_id,
        since=since,
        limit=limit,
        signer=request.app.state.cursor_signer,
        retention=request.app.state.changes_retention,
    )
