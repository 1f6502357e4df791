"""Personal access tokens: created by a signed-in user, shown once, stored as digests."""

import hashlib
import secrets
from datetime import timedelta
from uuid import UUID

from sqlalchemy import bindparam, func, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from uuid6 import uuid7

from backend.auth import Claims, Scope
from backend.db import scope_to, utcnow
from backend.errors import Conflict, InvalidInput, InvalidToken, NotFound
from backend.fields import TokenScope
from backend.models import PageQuery, PersonalToken, TokenCreate, TokenCreated
from backend.owned import OWNER, ROW_ID, OwnedTable, owned_by
from backend.pagination import PageRequest, Record, fetch_page, newest_first
from backend.unit_of_work import UnitOfWork

PAT_PREFIX = "todo_pat_"
HINT_LENGTH = len(PAT_PREFIX) + 4
MAX_TOKENS_PER_USER = 100
LAST_USED_RESOLUTION = timedelta(minutes=1)
"""`last_used_at` is written at most this often per token, not on every request."""

GRANTS: dict[TokenScope, frozenset[Scope]] = {
    TokenScope.read: frozenset({"read"}),
    TokenScope.write: frozenset({"read", "write"}),
}

NEWEST_FIRST = newest_first(PersonalToken.__table__)  # type: ignore[attr-defined]


def token_digest(token: str) -> str:
    """What is stored of a secret token: its SHA-256, in hex."""
    return hashlib.sha256(token.encode()).hexdigest()


_LISTED = select(PersonalToken).where(owned_by(PersonalToken.user_id))
"""The caller's tokens; the owner is bound per request."""


_ROWS = OwnedTable(PersonalToken)
_COUNT = select(func.count()).where(owned_by(PersonalToken.user_id))


async def list_tokens(
    session: AsyncSession, *, user_id: str, page: PageRequest[PageQuery]
) -> tuple[list[Record], str | None]:
    return await fetch_page(
        session, _LISTED, keyset=NEWEST_FIRST, page=page, owner=user_id, scope="tokens"
    )


async def create_token(
    session: AsyncSession, *, user_id: str, token_in: TokenCreate
) -> TokenCreated:
    """The new token with its secret, which is not stored and cannot be shown again."""
    work = UnitOfWork(user_id)
    if token_in.expires_at is not None and token_in.expires_at <= work.at:
        raise InvalidInput(("body", "expires_at"), "expires_in_past")
    if (await session.exec(_COUNT, params={OWNER: user_id})).one() >= MAX_TOKENS_PER_USER:
        raise Conflict(f"At most {MAX_TOKENS_PER_USER} personal access tokens per user.")
    secret = PAT_PREFIX + secrets.token_urlsafe(32)
    row = {
        "user_id": user_id,
        "id": uuid7(),
        **dict(token_in),
        "token_hash": token_digest(secret),
        "hint": secret[:HINT_LENGTH],
        "created_at": work.at,
        "last_used_at": None,
    }
    work.execute(_ROWS.insert, row, guarded=False)
    await work.commit(session)
    return TokenCreated.model_validate(row | {"token": secret})


async def delete_token(session: AsyncSession, *, user_id: str, token_id: UUID) -> None:
    """Revoke at once: the next request with that token is refused."""
    if await _ROWS.get(session, owner=user_id, row_id=token_id, for_update=True) is None:
        raise NotFound
    work = UnitOfWork(user_id)
    # Unguarded: a revocation racing another (SQLite has no row lock) deletes nothing more.
    work.execute(_ROWS.delete, _ROWS.params(user_id, token_id), guarded=False)
    await work.commit(session)


_BY_DIGEST = select(PersonalToken).where(col(PersonalToken.token_hash) == bindparam("digest"))
_USED = (
    update(PersonalToken)
    .where(owned_by(PersonalToken.user_id), col(PersonalToken.id) == bindparam(ROW_ID))
    .values(last_used_at=bindparam("used_at"))
)


async def is_token_accepted(session: AsyncSession, *, digest: str) -> bool:
    """Whether the personal access token of `digest` is still accepted (not revoked, not
    expired): an open event stream asks now and then."""
    await scope_to(session, token_lookup=digest)
    row = (await session.exec(_BY_DIGEST, params={"digest": digest})).first()
    return row is not None and (row.expires_at is None or row.expires_at > utcnow())


async def verify_personal_token(session: AsyncSession, *, token: str) -> Claims:
    """The claims of a personal access token, found by its digest (the one query here
    that cannot start from an owner: the token is what names the owner)."""
    digest = token_digest(token)
    await scope_to(session, token_lookup=digest)
    row = (await session.exec(_BY_DIGEST, params={"digest": digest})).first()
    now = utcnow()
    if row is None or (row.expires_at is not None and row.expires_at <= now):
        await session.rollback()
        raise InvalidToken
    await scope_to(session, user_id=row.user_id)
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
        await session.exec(_USED, params={OWNER: row.user_id, ROW_ID: row.id, "used_at": now})
    await session.commit()
    return Claims(subject=row.user_id, scopes=GRANTS[TokenScope(row.scope)])
