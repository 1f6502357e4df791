"""Task routes: parse, call the service, return."""

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response, status

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
from backend.models import (
    Occurrence,
    OccurrencesQuery,
    Page,
    TaskCreate,
    TaskListQuery,
    TaskPublic,
    TaskReplace,
    TaskUpdate,
)
from backend.pagination import ListQuery, PageRequest, page_of
from backend.tasks import service

router = APIRouter(prefix="/tasks", tags=["tasks"])

TASK_LIST = ListQuery(TaskListQuery)


@router.get("", response_model=Page[TaskPublic], openapi_extra=TASK_LIST.openapi)
async def list_tasks(
    session: SessionDep,
    user_id: OwnerId,
    page: Annotated[PageRequest[TaskListQuery], Depends(TASK_LIST)],
) -> Page[TaskPublic]:
    """The caller's tasks, one page at a time: pass `next_cursor` back as `cursor`. Filters
    combine with AND; `sort` takes a field, `-` for descending."""
    tasks, next_cursor = await service.list_tasks(
        session, user_id=user_id, filters=page.query, sort=page.query.sort, page=page
    )
    return page_of(TaskPublic, tasks, next_cursor)


@router.post(
    "", response_model=TaskPublic, status_code=status.HTTP_201_CREATED, dependencies=[Idempotent]
)
async def create_task(
    session: SessionDep, user_id: OwnerId, task_in: TaskCreate, request: Request, response: Response
) -> TaskPublic:
    """Create a task; the answer carries its `Location` and `ETag`. With an `Idempotency-Key`, a
    retry returns the first answer instead of writing twice."""
    task = await service.create_task(session, user_id=user_id, task_in=task_in)
    response.headers["Location"] = location(request, user_id, "tasks", task.id)
    return with_etag(TaskPublic, task, response)


@router.get("/{task_id}", response_model=TaskPublic, responses=NOT_MODIFIED)
async def get_task(
    session: SessionDep,
    user_id: OwnerId,
    task_id: UUID,
    response: Response,
    if_none_match: IfNoneMatch = None,
) -> TaskPublic | Response:
    """One task, with its `ETag`; `If-None-Match` with a current ETag answers 304."""
    task = await service.get_task(session, user_id=user_id, task_id=task_id)
    return not_modified(if_none_match, task.version) or with_etag(TaskPublic, task, response)


@router.get("/{task_id}/occurrences", response_model=Page[Occurrence])
async def list_occurrences(
    session: SessionDep,
    user_id: OwnerId,
    task_id: UUID,
    query: Annotated[OccurrencesQuery, Query()],
) -> Page[Occurrence]:
    """The occurrences of a recurring task from its current `due_at` on, for a preview
    (each `at` as an instant, `local` on the rule's wall clock); none for a task that
    does not recur or whose series ended."""
    occurrences = await service.list_occurrences(
        session, user_id=user_id, task_id=task_id, limit=query.limit
    )
    return Page[Occurrence](items=occurrences, next_cursor=None)


@router.put("/{task_id}", response_model=TaskPublic, responses=PRECONDITION_FAILED)
async def replace_task(
    session: SessionDep,
    user_id: OwnerId,
    task_id: UUID,
    task_in: TaskReplace,
    precondition: IfMatchDep,
    response: Response,
) -> TaskPublic:
    """Replace every client-settable field (`title` required; omitted fields take their
    defaults). `If-Match` makes the write conditional."""
    task = await service.update_task(
        session, user_id=user_id, task_id=task_id, changes=dict(task_in), precondition=precondition
    )
    return with_etag(TaskPublic, task, response)


@router.patch("/{task_id}", response_model=TaskPublic, responses=PRECONDITION_FAILED)
async def update_task(
    session: SessionDep,
    user_id: OwnerId,
    task_id: UUID,
    task_in: TaskUpdate,
    precondition: IfMatchDep,
    response: Response,
) -> TaskPublic:
    """Change only the fields sent; `null` clears a nullable field. `If-Match` makes the write
    conditional."""
    changes = {field: getattr(task_in, field) for field in task_in.model_fields_set}
    task = await service.update_task(
        session, user_id=user_id, task_id=task_id, changes=changes, precondition=precondition
    )
    return with_etag(TaskPublic, task, response)


@router.delete("/{task_id}", status_code=status.HTTP_204_NO_CONTENT, responses=PRECONDITION_FAILED)
async def delete_task(
    session: SessionDep, user_id: OwnerId, task_id: UUID, precondition: IfMatchDep
) -> None:
    """Delete a task; its history stays readable."""
    await service.delete_task(session, user_id=user_id, task_id=task_id, precondition=precondition)


@router.patch(
    "/{task_id}/complete",
    response_model=TaskPublic,
    responses=PRECONDITION_FAILED,
    dependencies=[Idempotent],
)
async def complete_task(
    session: SessionDep,
    user_id: OwnerId,
    task_id: UUID,
    precondition: IfMatchDep,
    response: Response,
) -> TaskPublic:
    """Mark the task completed; completing a completed task changes nothing. A recurring
    task moves on to its next occurrence instead, at each completion: retry with the same
    `If-Match` or `Idempotency-Key` to complete one occurrence once."""
    task = await service.set_completed(
        session, user_id=user_id, task_id=task_id, completed=True, precondition=precondition
    )
    return with_etag(TaskPublic, task, response)


@router.patch(
    "/{task_id}/incomplete",
    response_model=TaskPublic,
    responses=PRECONDITION_FAILED,
    dependencies=[Idempotent],
)
async def reopen_task(
    session: SessionDep,
    user_id: OwnerId,
    task_id: UUID,
    precondition: IfMatchDep,
    response: Response,
) -> TaskPublic:
    """Mark the task open again; reopening an open task changes nothing."""
    task = await service.set_completed(
        session, user_id=user_id, task_id=task_id, completed=False, precondition=precondition
    )
    return with_etag(TaskPublic, task, response)
