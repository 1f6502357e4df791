"""Personal access tokens: created by a signed-in user, shown once, stored as digests."""

import hashlib
import secrets
from datetime import timedelta
from uuid import UUID

from pydantic import AwareDatetime, TypeAdapter
from sqlalchemy import bindparam, func, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.auth import Claims, Scope
from backend.db import scope_to, utcnow
from backend.errors import Conflict, InvalidInput, InvalidToken, NotFound
from backend.fields import TokenScope
from backend.models import PageQuery, PersonalToken, TokenCreate
from backend.owned import OWNER, ROW_ID, ById, owned_by
from backend.pagination import Keyset, PageRequest, Record, fetch_page

PAT_PREFIX = "todo_pat_"
HINT_LENGTH = len(PAT_PREFIX) + 4
MAX_TOKENS_PER_USER = 100
LAST_USED_RESOLUTION = timedelta(minutes=1)
"""`last_used_at` is written at most this often per token, not on every request."""

GRANTS: dict[TokenScope, frozenset[Scope]] = {
    TokenScope.read: frozenset({"read"}),
    TokenScope.write: frozenset({"read", "write"}),
}

NEWEST_FIRST = Keyset(
    name="-created_at",
    column=PersonalToken.created_at,  # type: ignore[arg-type]
    tiebreak=PersonalToken.id,  # type: ignore[arg-type]
    adapter=TypeAdapter(AwareDatetime),
    descending=True,
)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


_LISTED = select(PersonalToken).where(owned_by(PersonalToken.user_id))
"""The caller's tokens; the owner is bound per request."""


_BY_ID = ById(PersonalToken)


async def list_tokens(
    session: AsyncSession, *, user_id: str, page: PageRequest[PageQuery]
) -> tuple[list[Record], str | None]:
    return await fetch_page(
        session, _LISTED, keyset=NEWEST_FIRST, page=page, owner=user_id, scope="tokens"
    )


async def create_token(
    session: AsyncSession, *, user_id: str, token_in: TokenCreate
) -> tuple[PersonalToken, str]:
    """The new token's row and its secret, which is not stored and cannot be shown again."""
    now = utcnow()
    if token_in.expires_at is not None and token_in.expires_at <= now:
        raise InvalidInput(("body", "expires_at"), "Must be in the future.", "expires_in_past")
    count = select(func.count()).where(PersonalToken.user_id == user_id)
    if (await session.exec(count)).one() >= MAX_TOKENS_PER_USER:
        raise Conflict(f"At most {MAX_TOKENS_PER_USER} personal access tokens per user.")
    secret = PAT_PREFIX + secrets.token_urlsafe(32)
    token = PersonalToken.model_validate(
        token_in,
        update={
            "user_id": user_id,
            "token_hash": _digest(secret),
            "hint": secret[:HINT_LENGTH],
            "created_at": now,
        },
    )
    session.add(token)
    await session.commit()
    return token, secret


async def delete_token(session: AsyncSession, *, user_id: str, token_id: UUID) -> None:
    """Revoke at once: the next request with that token is refused."""
    token = await _BY_ID.get(session, owner=user_id, row_id=token_id)
    if token is None:
        raise NotFound
    await session.delete(token)
    await session.commit()


_BY_DIGEST = select(PersonalToken).where(col(PersonalToken.token_hash) == bindparam("digest"))
_USED = (
    update(PersonalToken)
    .where(owned_by(PersonalToken.user_id), col(PersonalToken.id) == bindparam(ROW_ID))
    .values(last_used_at=bindparam("used_at"))
)


async def verify_personal_token(session: AsyncSession, *, token: str) -> Claims:
    """The claims of a personal access token, found by its digest (the one query here
    that cannot start from an owner: the token is what names the owner)."""
    digest = _digest(token)
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
