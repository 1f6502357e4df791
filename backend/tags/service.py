"""Tags: a user's labels, named once per key (`fields.name_key`), linked to tasks.

A task keeps the names it shows in its own row (`tasks.tags`), so that no read joins;
`task_tags` links it to each tag by the tag's key, for filters, and so that a rename or a
deletion of a tag reaches every task that carries it. Those tasks change then, each with
its history and feed entry, in the transaction of the rename or deletion.
"""

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from uuid import UUID

from pydantic import TypeAdapter
from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession
from uuid6 import uuid7

from backend.conditions import UNCONDITIONAL, Precondition, change_current_row
from backend.db import read_rows
from backend.errors import Conflict, InvalidInput, NotFound
from backend.fields import HistoryAction, by_name, name_key
from backend.models import PageQuery, Tag, TagPublic, Task, TaskPublic, TaskTag
from backend.owned import OWNER, ROW_ID, OwnedTable, owned_by
from backend.pagination import Keyset, PageRequest, Record, fetch_page
from backend.unit_of_work import UnitOfWork

MAX_TAGS_PER_USER = 1000
T = TypeVar("T")

_TAGS = Tag.__table__  # type: ignore[attr-defined]
_LINKS = TaskTag.__table__  # type: ignore[attr-defined]
_TASKS = Task.__table__  # type: ignore[attr-defined]
_ROWS = OwnedTable(Tag)

BY_NAME = Keyset(
    name="name", column=_TAGS.c.name_key, tiebreak=_TAGS.c.id, adapter=TypeAdapter(str)
)
_LISTED = select(*(_TAGS.c[name] for name in TagPublic.model_fields), _TAGS.c.name_key).where(
    owned_by(_TAGS.c.user_id)
)
"""With `name_key`, the page's order (`BY_NAME`), from which the next cursor is made."""
_KNOWN = select(_TAGS.c.name_key, _TAGS.c.name).where(
    owned_by(_TAGS.c.user_id), _TAGS.c.name_key.in_(bindparam("keys", expanding=True))
)
_COUNT = select(func.count()).select_from(_TAGS).where(owned_by(_TAGS.c.user_id))
_NEW = {
    dialect: module.insert(_TAGS).on_conflict_do_nothing(index_elements=["user_id", "name_key"])
    for dialect, module in (("postgresql", postgresql), ("sqlite", sqlite))
}
"""A tag first used: a concurrent write that creates it too leaves one."""
_LINK = insert(_LINKS)
_UNLINK = delete(_LINKS).where(owned_by(_LINKS.c.user_id), _LINKS.c.task_id == bindparam(ROW_ID))
_CARRIERS = (
    select(*(_TASKS.c[name] for name in TaskPublic.model_fields))
    .join(_LINKS, (_LINKS.c.user_id == _TASKS.c.user_id) & (_LINKS.c.task_id == _TASKS.c.id))
    .where(owned_by(_TASKS.c.user_id), _LINKS.c.tag_key == bindparam("key"))
    .with_for_update(of=_TASKS)
)
"""The tasks that carry a tag, locked until the commit (PostgreSQL)."""
_RETAG = (
    update(_TASKS)
    .where(owned_by(_TASKS.c.user_id), _TASKS.c.id == bindparam(ROW_ID))
    .values(tags=bindparam("new_tags"), updated_at=bindparam("at"), version=_TASKS.c.version + 1)
)


async def list_tags(
    session: AsyncSession, *, user_id: str, page: PageRequest[PageQuery]
) -> tuple[list[Record], str | None]:
    return await fetch_page(
        session, _LISTED, keyset=BY_NAME, page=page, owner=user_id, scope="tags"
    )


async def get_tag(
    session: AsyncSession, *, user_id: str, tag_id: UUID, for_update: bool = False
) -> TagPublic:
    row = await _ROWS.get(session, owner=user_id, row_id=tag_id, for_update=for_update)
    if row is None:
        raise NotFound
    return TagPublic.model_validate(row)


async def resolve_tags(session: AsyncSession, work: UnitOfWork, names: list[str]) -> list[str]:
    """The names a task with tags `names` shows: an existing tag's own spelling where one
    has the key, else the name given, for which `work` creates the tag (422 past
    `MAX_TAGS_PER_USER`)."""
    wanted = {name_key(name): name for name in reversed(names)}
    if not wanted:
        return []
    params = {OWNER: work.user_id, "keys": list(wanted)}
    _, known = await read_rows(session, _KNOWN, params)
    spelled = {str(key): str(name) for key, name in known}
    new = [key for key in wanted if key not in spelled]
    if new:
        (count,) = (await read_rows(session, _COUNT, {OWNER: work.user_id}))[1][0]
        if count + len(new) > MAX_TAGS_PER_USER:
            raise InvalidInput(("body", "tags"), "tags_too_many")
        dialect = (await session.connection()).dialect.name
        rows = [_tag_row(work, wanted[key], key) for key in new]
        work.execute(_NEW[dialect], rows, guarded=False)
    return by_name([spelled.get(key, wanted[key]) for key in wanted])


def link_tags(work: UnitOfWork, task_id: UUID, names: list[str], *, replacing: bool) -> None:
    """`work` links the task to exactly the tags `names` (after its own row is written)."""
    if replacing:
        work.execute(_UNLINK, {OWNER: work.user_id, ROW_ID: task_id}, guarded=False)
    if names:
        rows = [
            {"user_id": work.user_id, "task_id": task_id, "tag_key": name_key(n)} for n in names
        ]
        work.execute(_LINK, rows, guarded=False)


def _tag_row(work: UnitOfWork, name: str, key: str) -> dict[str, Any]:
    return {
        "user_id": work.user_id,
        "id": uuid7(),
        "name": name,
        "name_key": key,
        "created_at": work.at,
        "updated_at": work.at,
        "version": 1,
    }


async def rename_tag(
    session: AsyncSession,
    *,
    user_id: str,
    tag_id: UUID,
    name: str,
    precondition: Precondition = UNCONDITIONAL,
) -> TagPublic:
    """Rename the tag, and every task that carries it with it; onto another tag's name
    is 409."""

    async def change(tag: TagPublic) -> TagPublic:
        if name == tag.name:
            return tag
        work = UnitOfWork(user_id)
        updates = {"name": name, "updated_at": work.at, "version": tag.version + 1}
        values = updates | {"name_key": name_key(name)}
        params = _ROWS.params(user_id, tag_id, read_version=tag.version, values=values)
        work.execute(_ROWS.update, params, guarded=True)
        await _retag(session, work, name_key(tag.name), lambda names: [*names, name])
        try:
            await work.commit(session)
        except IntegrityError:
            await session.rollback()
            raise Conflict("A tag with that name already exists.") from None
        return tag.model_copy(update=updates)

    return await _change(session, user_id, tag_id, change, precondition)


async def delete_tag(
    session: AsyncSession,
    *,
    user_id: str,
    tag_id: UUID,
    precondition: Precondition = UNCONDITIONAL,
) -> None:
    """Delete the tag; every task that carries it loses it."""

    async def change(tag: TagPublic) -> None:
        work = UnitOfWork(user_id)
        await _retag(session, work, name_key(tag.name), lambda names: names)
        params = _ROWS.params(user_id, tag_id, read_version=tag.version)
        work.execute(_ROWS.delete, params, guarded=True)  # its links go with it
        await work.commit(session)

    await _change(session, user_id, tag_id, change, precondition)


async def _retag(
    session: AsyncSession,
    work: UnitOfWork,
    key: str,
    rename: Callable[[list[str]], list[str]],
) -> None:
    """Each task carrying the tag of `key` shows `rename(its other names)` now, with its
    history and feed entry."""
    names, rows = await read_rows(session, _CARRIERS, {OWNER: work.user_id, "key": key})
    for row in rows:
        task = TaskPublic.model_validate(dict(zip(names, row, strict=True)))
        shown = by_name(rename([n for n in task.tags if name_key(n) != key]))
        changed = task.model_copy(
            update={"tags": shown, "updated_at": work.at, "version": task.version + 1}
        )
        params = {OWNER: work.user_id, ROW_ID: task.id, "new_tags": shown, "at": work.at}
        work.execute(_RETAG, params, guarded=False)  # locked, or SQLite's one writer
        diff = {"tags": {"from": task.tags, "to": shown}}
        work.record(task.id, task.title, HistoryAction.updated, diff)
        work.changed("task", changed, HistoryAction.updated)


async def _change(
    session: AsyncSession,
    user_id: str,
    tag_id: UUID,
    change: Callable[[TagPublic], Awaitable[T]],
    precondition: Precondition,
) -> T:
    return await change_current_row(
        session,
        read=lambda locked: get_tag(session, user_id=user_id, tag_id=tag_id, for_update=locked),
        change=change,
        precondition=precondition,
    )
