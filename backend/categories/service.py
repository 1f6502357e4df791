"""Categories: a user's own labels for tasks, unique by name ignoring case."""

from typing import Any
from uuid import UUID

from pydantic import TypeAdapter
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession
from uuid6 import uuid7

from backend.conditions import UNCONDITIONAL, Precondition, change_current_row
from backend.errors import Conflict, NotFound
from backend.fields import HistoryAction, name_key
from backend.models import Category, CategoryCreate, CategoryPublic, PageQuery
from backend.owned import OwnedTable, owned_by
from backend.pagination import Keyset, PageRequest, Record, fetch_page
from backend.tasks.service import uncategorize_tasks
from backend.unit_of_work import UnitOfWork

BY_NAME = Keyset(
    name="name",
    column=Category.name_key,  # type: ignore[arg-type]
    tiebreak=Category.id,  # type: ignore[arg-type]
    adapter=TypeAdapter(str),
)


_TABLE = Category.__table__  # type: ignore[attr-defined]
_ROWS = OwnedTable(Category)


async def get_category(
    session: AsyncSession, *, user_id: str, category_id: UUID, for_update: bool = False
) -> CategoryPublic:
    """The caller's category; `for_update` locks its row until the commit (PostgreSQL)."""
    row = await _ROWS.get(session, owner=user_id, row_id=category_id, for_update=for_update)
    if row is None:
        raise NotFound
    return CategoryPublic.model_validate(row)


_LISTED = select(_TABLE).where(owned_by(_TABLE.c.user_id))
"""The caller's categories; the owner is bound per request."""


async def list_categories(
    session: AsyncSession, *, user_id: str, page: PageRequest[PageQuery]
) -> tuple[list[Record], str | None]:
    return await fetch_page(
        session, _LISTED, keyset=BY_NAME, page=page, owner=user_id, scope="categories"
    )


async def create_category(
    session: AsyncSession, *, user_id: str, category_in: CategoryCreate
) -> CategoryPublic:
    work = UnitOfWork(user_id)
    row = {
        "user_id": user_id,
        "id": uuid7(),
        **dict(category_in),
        "name_key": name_key(category_in.name),
        "created_at": work.at,
        "updated_at": work.at,
        "version": 1,
    }
    category = CategoryPublic.model_validate(row)
    work.execute(_ROWS.insert, row, guarded=False)
    work.changed("category", category, HistoryAction.created)
    await _commit(session, work)
    return category


async def update_category(
    session: AsyncSession,
    *,
    user_id: str,
    category_id: UUID,
    changes: dict[str, Any],
    precondition: Precondition = UNCONDITIONAL,
) -> CategoryPublic:
    """Apply `changes` (field: new value); a change that changes nothing writes nothing."""

    async def change(category: CategoryPublic) -> CategoryPublic:
        updates = {
            field: value for field, value in changes.items() if getattr(category, field) != value
        }
        if not updates:
            return category
        work = UnitOfWork(user_id)
        updates |= {"updated_at": work.at, "version": category.version + 1}
        changed = category.model_copy(update=updates)
        values = updates | {"name_key": name_key(changed.name)}
        params = _ROWS.params(user_id, category_id, read_version=category.version, values=values)
        work.execute(_ROWS.update, params, guarded=True)
        work.changed("category", changed, HistoryAction.updated)
        await _commit(session, work)
        return changed

    return await change_current_row(
        session,
        read=lambda locked: get_category(
            session, user_id=user_id, category_id=category_id, for_update=locked
        ),
        change=change,
        precondition=precondition,
    )


async def delete_category(
    session: AsyncSession,
    *,
    user_id: str,
    category_id: UUID,
    precondition: Precondition = UNCONDITIONAL,
) -> None:
    """Delete a category; its tasks stay, uncategorized, each with a history entry."""

    async def change(category: CategoryPublic) -> None:
        work = UnitOfWork(user_id)
        await uncategorize_tasks(session, work=work, category_id=category_id)
        params = _ROWS.params(user_id, category_id, read_version=category.version)
        work.execute(_ROWS.delete, params, guarded=True)
        work.changed("category", category, HistoryAction.deleted)
        await work.commit(session)

    await change_current_row(
        session,
        read=lambda locked: get_category(
            session, user_id=user_id, category_id=category_id, for_update=locked
        ),
        change=change,
        precondition=precondition,
    )


async def _commit(session: AsyncSession, work: UnitOfWork) -> None:
    try:
        await work.commit(session)
    except IntegrityError:
        await session.rollback()
        raise Conflict("A category with that name already exists.") from None
