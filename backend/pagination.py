"""Keyset pagination: signed opaque cursors and the page query every list shares."""

import base64
import binascii
import functools
import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar
from uuid import UUID

from fastapi import Depends, Query, Request
from pydantic import BaseModel, TypeAdapter, ValidationError
from sqlalchemy import ColumnElement, and_, bindparam, or_, tuple_
from sqlalchemy.orm import InstrumentedAttribute
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import Select, SelectOfScalar

from backend.errors import InvalidInput
from backend.models import Page

DEFAULT_LIMIT = 50
MAX_LIMIT = 100
MAC_BYTES = 16

Item = TypeVar("Item", bound=BaseModel)


class CursorSigner:
    """Signs cursors so that a tampered, foreign or stale-shaped one is refused."""

    def __init__(self, secret: str) -> None:
        self._key = hmac.new(secret.encode(), b"todo-api cursor v1", hashlib.sha256).digest()

    def _mac(self, owner: str, body: bytes) -> bytes:
        message = owner.encode("utf-8", "surrogatepass") + b"\0" + body
        return hmac.new(self._key, message, hashlib.sha256).digest()[:MAC_BYTES]

    def encode(self, owner: str, scope: str, values: list[Any]) -> str:
        body = json.dumps([scope, values], separators=(",", ":")).encode()
        token = body + self._mac(owner, body)
        return base64.urlsafe_b64encode(token).rstrip(b"=").decode()

    def decode(self, owner: str, scope: str, cursor: str) -> list[Any]:
        try:
            token = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        except (binascii.Error, ValueError):
            raise _bad_cursor() from None
        body, mac = token[:-MAC_BYTES], token[-MAC_BYTES:]
        if len(token) <= MAC_BYTES or not hmac.compare_digest(mac, self._mac(owner, body)):
            raise _bad_cursor()
        cursor_scope, values = json.loads(body)
        if cursor_scope != scope:
            raise _bad_cursor()
        return list(values)


def _bad_cursor() -> InvalidInput:
    return InvalidInput(("query", "cursor"), "Not a cursor of this list.", "cursor_invalid")


@dataclass(frozen=True, slots=True)
class PageRequest:
    """What the client asked of a list page, with the means to read and write cursors."""

    limit: int
    cursor: str | None
    signer: CursorSigner


async def page_request(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=1024)] = None,
) -> PageRequest:
    return PageRequest(limit=limit, cursor=cursor, signer=request.app.state.cursor_signer)


PageDep = Annotated[PageRequest, Depends(page_request)]


@dataclass(frozen=True)
class Keyset:
    """An order over one column and a unique tie-breaker, and the predicate to resume it.

    A nullable column sorts its nulls last in both directions.
    """

    name: str
    column: InstrumentedAttribute[Any]
    tiebreak: InstrumentedAttribute[Any]
    adapter: TypeAdapter[Any]
    descending: bool = False
    nullable: bool = False

    def order_by(self) -> list[Any]:
        columns = [self.column, self.tiebreak]
        ordered = [column.desc() if self.descending else column.asc() for column in columns]
        if self.nullable:
            ordered[0] = ordered[0].nulls_last()
        return ordered

    def after(self, value: Any, tiebreak: Any) -> ColumnElement[bool]:
        tiebreak_param = bindparam(None, tiebreak, type_=self.tiebreak.type)
        beyond = (
            self.tiebreak < tiebreak_param if self.descending else self.tiebreak > tiebreak_param
        )
        if value is None:
            return and_(self.column.is_(None), beyond)
        row = tuple_(self.column, self.tiebreak)
        position = tuple_(bindparam(None, value, type_=self.column.type), tiebreak_param)
        later = row < position if self.descending else row > position
        return or_(later, self.column.is_(None)) if self.nullable else later

    def position_of(self, row: Any) -> list[Any]:
        values = [getattr(row, self.column.key), getattr(row, self.tiebreak.key)]
        return [self.adapter.dump_python(values[0], mode="json"), str(values[1])]

    def parse(self, values: list[Any]) -> tuple[Any, Any]:
        try:
            value, tiebreak = values
            return self.adapter.validate_python(value), _UUIDS.validate_python(tiebreak)
        except (ValueError, TypeError, ValidationError):
            raise _bad_cursor() from None


_UUIDS: TypeAdapter[UUID] = TypeAdapter(UUID)


async def fetch_page(
    session: AsyncSession,
    statement: SelectOfScalar[Any] | Select[Any],
    *,
    keyset: Keyset,
    page: PageRequest,
    owner: str,
    scope: str,
) -> tuple[Sequence[Any], str | None]:
    """Run one page of `statement`, an owner-scoped select (of entities or of rows), in the
    keyset's order."""
    scope = f"{scope}:{keyset.name}"
    if page.cursor is not None:
        value, tiebreak = keyset.parse(page.signer.decode(owner, scope, page.cursor))
        statement = statement.where(keyset.after(value, tiebreak))
    statement = statement.order_by(*keyset.order_by()).limit(page.limit + 1)
    # Rows through the session's connection: a page is read-only output, and plain rows
    # skip the ORM's identity map and entity loading (most of a page query's cost).
    connection = await session.connection()
    rows = (await connection.execute(statement)).all()
    if len(rows) <= page.limit:
        return rows, None
    rows = rows[: page.limit]
    return rows, page.signer.encode(owner, scope, keyset.position_of(rows[-1]))


def page_of(model: type[Item], rows: Sequence[object], next_cursor: str | None) -> Page[Item]:
    """The page object of `rows`, each shown as `model` (read from its attributes)."""
    page = {"items": rows, "next_cursor": next_cursor}
    return _page_adapter(model).validate_python(page, from_attributes=True)


@functools.cache
def _page_adapter(model: type[Item]) -> TypeAdapter[Page[Item]]:
    return TypeAdapter(Page[model])  # type: ignore[valid-type]
