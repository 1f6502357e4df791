"""Users: created just in time from a token's claims, and kept current."""

import functools
from typing import Any

from sqlalchemy import or_
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.auth import Claims
from backend.db import utcnow
from backend.errors import NotFound
from backend.models import User
from backend.owned import OWNER, owned_by

KNOWN_USERS_MAX = 10_000

KnownUsers = dict[str, tuple[str | None, str | None]]
"""Claims already written, per subject: a request whose claims match writes nothing."""


async def ensure_user(session: AsyncSession, *, claims: Claims, known: KnownUsers) -> None:
    """Create the caller's user row from its claims, or bring its email and name up to
    date; nothing when these claims were already written."""
    profile = (claims.email, claims.name)
    if known.get(claims.subject) == profile:
        return
    # A claim the token does not carry leaves the stored value alone.
    fresh = tuple(name for name, value in zip(("email", "name"), profile, strict=True) if value)
    now = utcnow()
    values = {"id": claims.subject, "email": claims.email, "name": claims.name}
    dialect = session.bind.dialect.name if session.bind else "sqlite"
    await session.exec(
        _upsert(dialect, fresh), params=values | {"created_at": now, "updated_at": now}
    )
    await session.commit()
    if len(known) >= KNOWN_USERS_MAX:
        known.clear()
    known[claims.subject] = profile


@functools.cache
def _upsert(dialect: str, fresh: tuple[str, ...]) -> Any:
    """The user's upsert on `dialect`, updating the claims in `fresh` where they differ;
    built once per combination (statements are built once: optimisation 1)."""
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    statement = insert(User)
    if not fresh:
        return statement.on_conflict_do_nothing(index_elements=[User.id])
    return statement.on_conflict_do_update(
        index_elements=[User.id],
        set_={
            **{name: statement.excluded[name] for name in fresh},
            "updated_at": statement.excluded.updated_at,
        },
        where=or_(
            *(getattr(User, name).is_distinct_from(statement.excluded[name]) for name in fresh)
        ),
    )


_USER = select(User).where(owned_by(User.id))


async def get_user(session: AsyncSession, *, user_id: str) -> User:
    user = (await session.exec(_USER, params={OWNER: user_id})).first()
    if user is None:
        raise NotFound
    return user
