"""Subtasks: the tree of a user's tasks (`tasks.parent_id`), at most `MAX_DEPTH` deep and
without cycles, walked with recursive queries (both databases have `WITH RECURSIVE`).

The task writes themselves stay in `tasks.service`: a completion completes the open
descendants, a deletion deletes every descendant, each in the same unit of work with its
own history and feed entry; this module answers what the tree holds.
"""

from typing import Any
from uuid import UUID

from sqlalchemy import bindparam, func, literal, select
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.db import read_rows
from backend.errors import InvalidInput
from backend.models import Task, TaskPublic
from backend.owned import OWNER, ROW_ID, owned_by

MAX_DEPTH = 5
"""A top-level task is at depth 1; a subtask of a task at depth 5 is refused."""

_TASKS = Task.__table__  # type: ignore[attr-defined]
_t = _TASKS.c


def _below() -> Any:
    """The descendants of the task `row_id`, each with its depth under it (1: a child)."""
    below = (
        select(_t.id, literal(1).label("depth"))
        .where(owned_by(_t.user_id), _t.parent_id == bindparam(ROW_ID))
        .cte("below", recursive=True)
    )
    return below.union_all(
        select(_t.id, below.c.depth + 1).where(
            _t.user_id == bindparam(OWNER),
            _t.parent_id == below.c.id,
            below.c.depth <= MAX_DEPTH,  # a bound, should a cycle ever be stored
        )
    )


def _above() -> Any:
    """The task `parent` and its ancestors, each with its distance (1: the task itself)."""
    above = (
        select(_t.id, _t.parent_id, literal(1).label("depth"))
        .where(owned_by(_t.user_id), _t.id == bindparam("parent"))
        .cte("above", recursive=True)
    )
    return above.union_all(
        select(_t.id, _t.parent_id, above.c.depth + 1).where(
            _t.user_id == bindparam(OWNER),
            _t.id == above.c.parent_id,
            above.c.depth <= MAX_DEPTH,
        )
    )


_BELOW = _below()
_SUBTREE = select(
    func.coalesce(func.max(_BELOW.c.depth), 0),
    func.count().filter(_BELOW.c.id == bindparam("parent")),
)
"""How deep the task's subtree goes under it, and whether the parent is in it."""
_ABOVE = _above()
_DEPTH = select(func.count(), func.max(_ABOVE.c.depth))
_PUBLIC = [_t[name] for name in TaskPublic.model_fields]
_DESCENDANTS = (
    select(*_PUBLIC)
    .join(_BELOW, _BELOW.c.id == _t.id)
    .where(owned_by(_t.user_id))
    .order_by(_BELOW.c.depth.desc(), _t.id)
    .with_for_update(of=_TASKS)
)
"""Deepest first: deleted in this order, no task outlives its parent's row."""
_OPEN_DESCENDANTS = _DESCENDANTS.where(_t.completed.is_(False))


async def check_parent(
    session: AsyncSession, *, user_id: str, task_id: UUID | None, parent_id: UUID
) -> None:
    """422 on `parent_id` unless it is another task of the caller that `task_id` (None:
    a new task) may hang under: not the task itself nor one of its descendants, and the
    task's subtree no deeper than `MAX_DEPTH` there."""
    params = {OWNER: user_id, ROW_ID: task_id, "parent": parent_id}
    _, ((found, depth),) = await read_rows(session, _DEPTH, params)
    if not found:
        raise InvalidInput(("body", "parent_id"), "parent_not_found")
    height = 1
    if task_id is not None:
        _, ((below, inside),) = await read_rows(session, _SUBTREE, params)
        if parent_id == task_id or inside:
            raise InvalidInput(("body", "parent_id"), "parent_cycle")
        height += below
    if depth + height > MAX_DEPTH:
        raise InvalidInput(("body", "parent_id"), "parent_too_deep")


async def descendants(
    session: AsyncSession, *, user_id: str, task_id: UUID, open_only: bool = False
) -> list[TaskPublic]:
    """The task's descendants (or its open ones), locked until the commit (PostgreSQL)."""
    statement = _OPEN_DESCENDANTS if open_only else _DESCENDANTS
    names, rows = await read_rows(session, statement, {OWNER: user_id, ROW_ID: task_id})
    return [TaskPublic.model_validate(dict(zip(names, row, strict=True))) for row in rows]
