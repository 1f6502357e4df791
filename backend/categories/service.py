"""Categories: a user's own labels for tasks, unique by name ignoring case."""

from typing import Any
from uuid import UUID

from pydantic import TypeAdapter
from sqlalchemy.exc import IntegrityError
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.conditions import UNCONDITIONAL, Precondition, write_once_current
from backend.db import utcnow
from backend.errors import Conflict, NotFound
from backend.models import Category, CategoryCreate, PageQuery
from backend.owned import ById, owned_by
from backend.pagination import Keyset, PageRequest, Record, fetch_page
from backend.tasks.service import uncategorize_tasks

BY_NAME = Keyset(
    name="name",
    column=Category.name_key,  # type: ignore[arg-type]
    tiebreak=Category.id,  # type: ignore[arg-type]
    adapter=TypeAdapter(str),
)


def name_key(name: str) -> str:
    return name.casefold()


_BY_ID = ById(Category)


async def get_category(
    session: AsyncSession, *, user_id: str, category_id: UUID, for_update: bool = False
) -> Category:
    """The caller's category; `for_update` locks its row until the commit (PostgreSQL)."""
    category = await _BY_ID.get(session, owner=user_id, row_id=category_id, for_update=for_update)
    if category is None:
        raise NotFound
    return category


_LISTED = select(Category).where(owned_by(Category.user_id))
"""The caller's categories; the owner is bound per request."""


async def list_categories(
    session: AsyncSession, *, user_id: str, page: PageRequest[PageQuery]
) -> tuple[list[Record], str | None]:
    return await fetch_page(
        session, _LISTED, keyset=BY_NAME, page=page, owner=user_id, scope="categories"
    )


async def create_category(
    session: AsyncSession, *, user_id: str, category_in: CategoryCreate
) -> Category:
    now = utcnow()
    category = Category.model_validate(
        category_in,
        update={
            "user_id": user_id,
            "name_key": name_key(category_in.name),
            "created_at": now,
            "updated_at": now,
        },
    )
    session.add(category)
    await _commit(session)
    return category


async def update_category(
    session: AsyncSession,
    *,
    user_id: str,
    category_id: UUID,
    changes: dict[str, Any],
    precondition: Precondition = UNCONDITIONAL,
) -> Category:
    """Apply `changes` (field: new value); a change that changes nothing writes nothing."""

    async def write() -> Category:
        category = precondition.check(
            await get_category(session, user_id=user_id, category_id=category_id, for_update=True)
        )
        changed = {
            field: value for field, value in changes.items() if getattr(category, field) != value
        }
        if not changed:
            return category
        for field, value in changed.items():
            setattr(category, field, value)
        category.name_key = name_key(category.name)
        category.updated_at = utcnow()
        session.add(category)
        await _commit(session)
        return category

    return await write_once_current(
        session,
        write,
        precondition=precondition,
        reread=lambda: get_category(session, user_id=user_id, category_id=category_id),
    )


async def delete_category(
    session: AsyncSession,
    *,
    user_id: str,
    category_id: UUID,
    precondition: Precondition = UNCONDITIONAL,
) -> None:
    """Delete a category; its tasks stay, uncategorized, each with a history entry."""

    async def write() -> None:
        category = precondition.check(
            await get_category(session, user_id=user_id, category_id=category_id, for_update=True)
        )
        await uncategorize_tasks(session, user_id=user_id, category_id=category_id, at=utcnow())
        await session.delete(category)
        await session.commit()

    await write_once_current(
        session,
        write,
        precondition=precondition,
        reread=lambda: get_category(session, user_id=user_id, category_id=category_id),
    )


async def _commit(session: AsyncSession) -> None:
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise Conflict("A category with that name already exists.") from None
