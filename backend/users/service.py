"""Users: created just in time from a token's claims, and kept current."""

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
    profile = (claims.email, claims.name)
    if known.get(claims.subject) == profile:
        return
    dialect = session.bind.dialect.name if session.bind else "sqlite"
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    now = utcnow()
    statement = insert(User).values(
        id=claims.subject, email=claims.email, name=claims.name, created_at=now, updated_at=now
    )
    # A claim the token does not carry leaves the stored value alone.
    fresh = {name: value for name, value in zip(("email", "name"), profile, strict=True) if value}
    if fresh:
        statement = statement.on_conflict_do_update(
            index_elements=[User.id],
            set_={**fresh, "updated_at": now},
            where=or_(*(getattr(User, name).is_distinct_from(v) for name, v in fresh.items())),
        )
    else:
        statement = statement.on_conflict_do_nothing(index_elements=[User.id])
    await session.exec(statement)
    await session.commit()
    if len(known) >= KNOWN_USERS_MAX:
        known.clear()
    known[claims.subject] = profile


_USER = select(User).where(owned_by(User.id))


async def get_user(session: AsyncSession, *, user_id: str) -> User:
    user = (await session.exec(_USER, params={OWNER: user_id})).first()
    if user is None:
        raise NotFound
    return user
