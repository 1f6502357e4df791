"""The MCP tools: their arguments, results, and handlers that call the REST services."""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any, Generic, Literal, TypeVar
from uuid import UUID
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field, StrictBool, ValidationError
from sqlmodel.ext.asyncio.session import AsyncSession

from backend import messages
from backend.auth import Scope
from backend.batches.routes import resolved
from backend.categories import service as categories
from backend.changes import service as changes
from backend.conditions import UNCONDITIONAL, Precondition, etag_of
from backend.errors import AppError, InvalidInput, problem_body
from backend.fields import (
    CHANGES_DEFAULT_LIMIT,
    DEFAULT_LIMIT,
    ChangesLimit,
    PageCursor,
    PageLimit,
    SearchText,
    SyncToken,
    TagName,
)
from backend.history import service as history
from backend.models import (
    BatchOperationId,
    CategoryCreate,
    CategoryPublic,
    ChangesPage,
    HistoryPublic,
    Page,
    PageQuery,
    StrictBody,
    TagPublic,
    TaskCreate,
    TaskFilters,
    TaskPublic,
    TaskUpdate,
    WeeklyStats,
)
from backend.pagination import CursorSigner, PageRequest, page_of
from backend.stats import service as stats
from backend.stats.routes import known_time_zones
from backend.tags import service as tags
from backend.tasks import service as tasks
from backend.unit_of_work import DEFERRED

Args = TypeVar("Args", bound=BaseModel)

# The same (StrictBody) base as REST bodies: an unknown argument is a validation error.


class PageArgs(StrictBody):
    limit: PageLimit = DEFAULT_LIMIT
    cursor: PageCursor = None


class ListTasksArgs(PageArgs):
    status: Literal["all", "pending", "completed"] = "all"
    q: Annotated[
        SearchText | None, Field(description="Case-insensitive text in title or description.")
    ] = None
    category_id: Annotated[
        UUID | Literal["none"] | None, Field(description="A category id, or `none`.")
    ] = None
    tag: Annotated[
        list[TagName] | None, Field(description="Tasks that carry every one of these tags.")
    ] = None
    parent_id: Annotated[
        UUID | Literal["none"] | None,
        Field(description="A task's id (its direct subtasks), or `none` (top-level tasks)."),
    ] = None


class TaskRef(StrictBody):
    task_id: UUID


class TaskWrite(TaskRef):
    expected_version: Annotated[
        int | None,
        Field(ge=1, description="Write only if the task is still at this version (else 412)."),
    ] = None


class UpdateTaskArgs(TaskWrite, TaskUpdate):
    """PATCH semantics: only the fields given change; null clears a clearable field."""


class TaskHistoryArgs(PageArgs):
    task_id: UUID


class ListChangesArgs(StrictBody):
    since: SyncToken = None
    limit: ChangesLimit = CHANGES_DEFAULT_LIMIT


class WeeklyStatsArgs(StrictBody):
    tz: Annotated[str, Field(max_length=64, description="An IANA time zone name.")] = "UTC"


# The one result without a REST body: a deleted task (REST answers 204).
class TaskDeleted(BaseModel):
    task_id: UUID
    deleted: bool = True


@dataclass(frozen=True, slots=True)
class ToolContext:
    """What a handler acts with: a session scoped to the caller, and the caller's id."""

    session: AsyncSession
    user_id: str
    signer: CursorSigner
    changes_retention: timedelta

    def page(self, args: PageArgs) -> PageRequest[PageQuery]:
        return PageRequest(PageQuery(limit=args.limit, cursor=args.cursor), self.signer)


Outcome = tuple[BaseModel, str]
"""The structured result and a short sentence for people."""


@dataclass(frozen=True, slots=True)
class Tool(Generic[Args]):
    name: str
    description: str
    args: type[Args]
    result: type[BaseModel]
    needs: Scope
    run: Callable[[ToolContext, Args], Awaitable[Outcome]]
    destructive: bool = False
    idempotent: bool = False


def _precondition(args: TaskWrite) -> Precondition:
    if args.expected_version is None:
        return UNCONDITIONAL
    return Precondition(etag_of(args.expected_version))


def _task(task: TaskPublic, sentence: str) -> Outcome:
    return task, f'{sentence} "{task.title}" (id {task.id}, version {task.version}){_when(task)}.'


def _when(task: TaskPublic) -> str:
    """When it is due, how it recurs and when it reminds, where it does."""
    parts = [] if task.due_at is None else [f"due {task.due_at.isoformat()}"]
    if task.recurrence is not None:
        parts.append(f"repeats {task.recurrence.rule} in {task.recurrence.tz}")
    if task.reminders:
        parts.append(f"{len(task.reminders)} reminder(s)")
    return f", {', '.join(parts)}" if parts else ""


def _more(next_cursor: str | None) -> str:
    return f" More with cursor {next_cursor}." if next_cursor else ""


async def add_task(context: ToolContext, args: TaskCreate) -> Outcome:
    task = await tasks.create_task(context.session, user_id=context.user_id, task_in=args)
    return _task(task, "Added task")


async def list_tasks(context: ToolContext, args: ListTasksArgs) -> Outcome:
    completed = {"all": None, "pending": False, "completed": True}[args.status]
    filters = TaskFilters(
        completed=completed,
        category_id=args.category_id,
        q=args.q,
        tag=args.tag,
        parent_id=args.parent_id,
    )
    rows, next_cursor = await tasks.list_tasks(
        context.session,
        user_id=context.user_id,
        filters=filters,
        sort="-created_at",
        page=context.page(args),
    )
    page = page_of(TaskPublic, rows, next_cursor)
    lines = [
        f"- [{'x' if t.completed else ' '}] {t.title}{_tags(t)} (id {t.id})" for t in page.items
    ]
    return page, "\n".join([f"{len(lines)} task(s), newest first.{_more(next_cursor)}", *lines])


async def get_task(context: ToolContext, args: TaskRef) -> Outcome:
    task = await tasks.get_task(context.session, user_id=context.user_id, task_id=args.task_id)
    return _task(task, "Task")


async def update_task(context: ToolContext, args: UpdateTaskArgs) -> Outcome:
    fields = args.model_fields_set - set(TaskWrite.model_fields)
    task = await tasks.update_task(
        context.session,
        user_id=context.user_id,
        task_id=args.task_id,
        changes={field: getattr(args, field) for field in fields},
        precondition=_precondition(args),
    )
    return _task(task, "Updated task")


async def _set_completed(context: ToolContext, args: TaskWrite, completed: bool) -> TaskPublic:
    return await tasks.set_completed(
        context.session,
        user_id=context.user_id,
        task_id=args.task_id,
        completed=completed,
        precondition=_precondition(args),
    )


async def complete_task(context: ToolContext, args: TaskWrite) -> Outcome:
    task = await _set_completed(context, args, True)
    if not task.completed:  # a recurring task, moved on to its next occurrence
        return _task(task, "Completed this occurrence of")
    return _task(task, "Completed task")


async def reopen_task(context: ToolContext, args: TaskWrite) -> Outcome:
    return _task(await _set_completed(context, args, False), "Reopened task")


async def delete_task(context: ToolContext, args: TaskWrite) -> Outcome:
    await tasks.delete_task(
        context.session,
        user_id=context.user_id,
        task_id=args.task_id,
        precondition=_precondition(args),
    )
    return TaskDeleted(task_id=args.task_id), f"Deleted task {args.task_id}."


def _tags(task: TaskPublic) -> str:
    return f" [{', '.join(task.tags)}]" if task.tags else ""


async def list_tags(context: ToolContext, args: PageArgs) -> Outcome:
    rows, next_cursor = await tags.list_tags(
        context.session, user_id=context.user_id, page=context.page(args)
    )
    page = page_of(TagPublic, rows, next_cursor)
    lines = [f"- {t.name} (id {t.id})" for t in page.items]
    return page, "\n".join([f"{len(lines)} tags, by name.{_more(next_cursor)}", *lines])


async def list_categories(context: ToolContext, args: PageArgs) -> Outcome:
    rows, next_cursor = await categories.list_categories(
        context.session, user_id=context.user_id, page=context.page(args)
    )
    page = page_of(CategoryPublic, rows, next_cursor)
    lines = [f"- {c.name} (id {c.id})" for c in page.items]
    return page, "\n".join([f"{len(lines)} categories, by name.{_more(next_cursor)}", *lines])


async def add_category(context: ToolContext, args: CategoryCreate) -> Outcome:
    category = await categories.create_category(
        context.session, user_id=context.user_id, category_in=args
    )
    public = CategoryPublic.model_validate(category)
    return public, f'Added category "{public.name}" (id {public.id}).'


async def task_history(context: ToolContext, args: TaskHistoryArgs) -> Outcome:
    rows, next_cursor = await history.list_task_history(
        context.session, user_id=context.user_id, task_id=args.task_id, page=context.page(args)
    )
    page = page_of(HistoryPublic, rows, next_cursor)
    lines = [f"- {e.occurred_at.isoformat()} {e.action}: {e.title}" for e in page.items]
    return page, "\n".join([f"{len(lines)} entries, newest first.{_more(next_cursor)}", *lines])


async def list_changes(context: ToolContext, args: ListChangesArgs) -> Outcome:
    page = await changes.list_changes(
        context.session,
        user_id=context.user_id,
        since=args.since,
        limit=args.limit,
        signer=context.signer,
        retention=context.changes_retention,
    )
    more = " More with since=next_since." if page.has_more else ""
    lines = [f"- {c.entity} {c.id}: {c.op} (version {c.version})" for c in page.changes]
    return page, "\n".join([f"{len(lines)} change(s), oldest first.{more}", *lines])


async def weekly_stats(context: ToolContext, args: WeeklyStatsArgs) -> Outcome:
    if args.tz not in known_time_zones():
        raise InvalidInput(("tz",), "tz_unknown")
    week = await stats.weekly_stats(
        context.session, user_id=context.user_id, zone=ZoneInfo(args.tz)
    )
    return week, (
        f"{week.from_} to {week.to} ({week.tz}): {week.created} created, "
        f"{week.completed} completed; {week.open} open, {week.overdue} overdue."
    )


class ToolCall(StrictBody):
    id: BatchOperationId
    tool: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class RunBatchArgs(StrictBody):
    atomic: StrictBool = True
    calls: Annotated[list[ToolCall], Field(min_length=1, max_length=100)]


class ToolCallResult(BaseModel):
    id: str
    ok: bool
    result: Any = Field(description="The tool's structured result, or its problem document.")


class BatchToolResult(BaseModel):
    committed: bool
    results: list[ToolCallResult]


async def run_batch(context: ToolContext, args: RunBatchArgs) -> Outcome:
    """Tool calls in order, each as the tool alone runs; atomic: all or nothing."""
    seen: set[str] = set()
    for index, call in enumerate(args.calls):
        if call.id in seen or call.tool not in TOOLS or call.tool == "run_batch":
            raise InvalidInput(("arguments", "calls", index), "batch_call_refused")
        seen.add(call.id)
    session = context.session
    if args.atomic:
        session.info[DEFERRED] = True
    created: dict[str, str] = {}
    results: list[ToolCallResult] = []
    failed: str | None = None
    for call in args.calls:
        if failed is not None:
            detail = f"Not run: it depends on call {failed}, which failed."
            problem = problem_body(424, "failed_dependency", detail)
            results.append(ToolCallResult(id=call.id, ok=False, result=problem))
            continue
        tool = TOOLS[call.tool]
        try:
            outcome, _ = await tool.run(
                context, tool.args.model_validate(resolved(call.arguments, created))
            )
        except (AppError, ValidationError) as exc:
            results.append(ToolCallResult(id=call.id, ok=False, result=_problem(exc)))
            failed = call.id if args.atomic else None
            continue
        dumped = outcome.model_dump(mode="json", by_alias=True)
        if isinstance(dumped.get("id"), str):
            created[call.id] = dumped["id"]
        results.append(ToolCallResult(id=call.id, ok=True, result=dumped))
    if args.atomic:
        session.info.pop(DEFERRED, None)
        await (session.rollback() if failed else session.commit())
    answer = BatchToolResult(committed=not args.atomic or failed is None, results=results)
    done = sum(result.ok for result in results)
    stored = "stored" if answer.committed else "nothing stored"
    return answer, f"{done} of {len(results)} calls succeeded; {stored}."


def _problem(exc: AppError | ValidationError) -> dict[str, Any]:
    if isinstance(exc, ValidationError):
        errors = messages.validation_errors(exc.errors())
        return problem_body(422, "validation_error", "Some arguments are not valid.", errors=errors)
    return problem_body(exc.status, exc.code, exc.detail)


_TOOLS: list[Tool[Any]] = [
    Tool("add_task", "Add a task (it starts open).", TaskCreate, TaskPublic, "write", add_task),
    Tool(
        "list_tasks",
        "List the user's tasks, newest first, one page at a time.",
        ListTasksArgs,
        Page[TaskPublic],
        "read",
        list_tasks,
        idempotent=True,
    ),
    Tool("get_task", "One task by id.", TaskRef, TaskPublic, "read", get_task, idempotent=True),
    Tool(
        "update_task",
        "Change some fields of a task; fields left out stay as they are.",
        UpdateTaskArgs,
        TaskPublic,
        "write",
        update_task,
        idempotent=True,
    ),
    Tool(
        "complete_task",
        "Mark a task completed (completing a completed task changes nothing).",
        TaskWrite,
        TaskPublic,
        "write",
        complete_task,
        idempotent=True,
    ),
    Tool(
        "reopen_task",
        "Mark a task open again (reopening an open task changes nothing).",
        TaskWrite,
        TaskPublic,
        "write",
        reopen_task,
        idempotent=True,
    ),
    Tool(
        "delete_task",
        "Delete a task; its history stays.",
        TaskWrite,
        TaskDeleted,
        "write",
        delete_task,
        destructive=True,
    ),
    Tool(
        "run_batch",
        "Run tool calls in order, all or nothing by default; `$<id>` in arguments is the id "
        "an earlier call created.",
        RunBatchArgs,
        BatchToolResult,
        "write",
        run_batch,
    ),
    Tool(
        "list_tags",
        "List the user's tags by name (a task's `tags` names them; a new name creates one).",
        PageArgs,
        Page[TagPublic],
        "read",
        list_tags,
        idempotent=True,
    ),
    Tool(
        "list_categories",
        "List the user's categories by name.",
        PageArgs,
        Page[CategoryPublic],
        "read",
        list_categories,
        idempotent=True,
    ),
    Tool(
        "add_category",
        "Add a category (names are unique per user, ignoring case).",
        CategoryCreate,
        CategoryPublic,
        "write",
        add_category,
    ),
    Tool(
        "task_history",
        "A task's history, newest first (also after it was deleted).",
        TaskHistoryArgs,
        Page[HistoryPublic],
        "read",
        task_history,
        idempotent=True,
    ),
    Tool(
        "list_changes",
        "What changed since a sync token (each task and category once, as it is now, "
        "deletions included); without one, every task and category. Keep next_since.",
        ListChangesArgs,
        ChangesPage,
        "read",
        list_changes,
        idempotent=True,
    ),
    Tool(
        "weekly_stats",
        "Tasks created and completed on each of the last seven local days.",
        WeeklyStatsArgs,
        WeeklyStats,
        "read",
        weekly_stats,
        idempotent=True,
    ),
]
TOOLS: dict[str, Tool[Any]] = {tool.name: tool for tool in _TOOLS}
