"""Category routes: parse, call the service, return."""

from uuid import UUID

from fastapi import APIRouter, Request, Response, status

from backend.categories import service
from backend.conditions import (
    NOT_MODIFIED,
    PRECONDITION_FAILED,
    IfMatchDep,
    IfNoneMatch,
    not_modified,
    with_etag,
)
from backend.deps import OwnerId, SessionDep, location
from backend.idempotency.guard import Idempotent
from backend.models import CategoryCreate, CategoryPublic, CategoryUpdate, Page
from backend.pagination import PAGE, PageDep, page_of

router = APIRouter(prefix="/categories", tags=["categories"])


@router.get("", response_model=Page[CategoryPublic], openapi_extra=PAGE.openapi)
async def list_categories(
    session: SessionDep, user_id: OwnerId, page: PageDep
) -> Page[CategoryPublic]:
    """The caller's categories, by name ignoring case."""
    categories, next_cursor = await service.list_categories(session, user_id=user_id, page=page)
    return page_of(CategoryPublic, categories, next_cursor)


@router.post(
    "",
    response_model=CategoryPublic,
    status_code=status.HTTP_201_CREATED,
    dependencies=[Idempotent],
)
async def create_category(
    session: SessionDep,
    user_id: OwnerId,
    category_in: CategoryCreate,
    request: Request,
    response: Response,
) -> CategoryPublic:
    """Create a category; a name the caller already uses, ignoring case and Unicode form,
    is 409."""
    category = await service.create_category(session, user_id=user_id, category_in=category_in)
    response.headers["Location"] = location(request, user_id, "categories", category.id)
    return with_etag(CategoryPublic, category, response)


@router.get("/{category_id}", response_model=CategoryPublic, responses=NOT_MODIFIED)
async def get_category(
    session: SessionDep,
    user_id: OwnerId,
    category_id: UUID,
    response: Response,
    if_none_match: IfNoneMatch = None,
) -> CategoryPublic | Response:
    """One category, with its `ETag`; `If-None-Match` with a current ETag answers 304."""
    category = await service.get_category(session, user_id=user_id, category_id=category_id)
    return not_modified(if_none_match, category.version) or with_etag(
        CategoryPublic, category, response
    )


@router.put("/{category_id}", response_model=CategoryPublic, responses=PRECONDITION_FAILED)
async def replace_category(
    session: SessionDep,
    user_id: OwnerId,
    category_id: UUID,
    category_in: CategoryCreate,
    precondition: IfMatchDep,
    response: Response,
) -> CategoryPublic:
    """Replace the name and colour. `If-Match` makes the write conditional."""
    category = await service.update_category(
        session,
        user_id=user_id,
        category_id=category_id,
        changes=dict(category_in),
        precondition=precondition,
    )
    return with_etag(CategoryPublic, category, response)


@router.patch("/{category_id}", response_model=CategoryPublic, responses=PRECONDITION_FAILED)
async def update_category(
    session: SessionDep,
    user_id: OwnerId,
    category_id: UUID,
    category_in: CategoryUpdate,
    precondition: IfMatchDep,
    response: Response,
) -> CategoryPublic:
    """Change only the fields sent. `If-Match` makes the write conditional."""
    changes = {field: getattr(category_in, field) for field in category_in.model_fields_set}
    category = await service.update_category(
        session,
        user_id=user_id,
        category_id=category_id,
        changes=changes,
        precondition=precondition,
    )
    return with_etag(CategoryPublic, category, response)


@router.delete(
    "/{category_id}", status_code=status.HTTP_204_NO_CONTENT, responses=PRECONDITION_FAILED
)
async def delete_category(
    session: SessionDep, user_id: OwnerId, category_id: UUID, precondition: IfMatchDep
) -> None:
    """Delete the category; its tasks stay, uncategorized."""
    await service.delete_category(
        session, user_id=user_id, category_id=category_id, precondition=precondition
    )
