"""Keyset pagination: signed opaque cursors and the page query every list shares."""

import base64
import binascii
import functools
import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Generic, TypeVar
from uuid import UUID

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from pydantic import AwareDatetime, BaseModel, TypeAdapter, ValidationError
from sqlalchemy import ColumnClause, ColumnElement, and_, bindparam, or_, tuple_
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.sql import Select
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.db import read_rows
from backend.errors import InvalidInput
from backend.models import Page, PageQuery
from backend.openapi import query_parameters
from backend.owned import OWNER

LIMIT, AFTER_VALUE, AFTER_ID = "page_limit", "after_value", "after_id"
"""Names of the parameters a page query binds, besides its `OWNER`."""
PAGED_CACHE_SIZE = 1024
MAC_BYTES = 16

KeyColumn = InstrumentedAttribute[Any] | ColumnClause[Any]
"""A column a keyset orders by: a model's attribute, or a table's or view's column."""
Item = TypeVar("Item", bound=BaseModel)
Record = dict[str, Any]
"""A listed row: its columns by name."""
Listing = TypeVar("Listing", bound=Select[Any])
QueryModel = TypeVar("QueryModel", bound=PageQuery, covariant=True)


class CursorSigner:
    """Signs cursors so that a tampered, foreign or stale-shaped one is refused."""

    def __init__(self, secret: str) -> None:
        self._key = hmac.new(secret.encode(), b"todo-api cursor v1", hashlib.sha256).digest()

    def _mac(self, owner: str, body: bytes) -> bytes:
        message = owner.encode("utf-8", "surrogatepass") + b"\0" + body
        return hmac.new(self._key, message, hashlib.sha256).digest()[:MAC_BYTES]

    def encode(self, owner: str, scope: str, values: list[Any]) -> str:
        # UTF-8, not `\uXXXX` escapes: a title of emoji would take 12 bytes a character.
        body = json.dumps([scope, values], separators=(",", ":"), ensure_ascii=False).encode()
        token = body + self._mac(owner, body)
        return base64.urlsafe_b64encode(token).rstrip(b"=").decode()

    def decode(self, owner: str, scope: str, cursor: str, *, field: str = "cursor") -> list[Any]:
        """The values of `cursor`, if this server signed it for `owner` and `scope`; else
        a 422 on the query parameter `field`."""
        try:
            token = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        except (binascii.Error, ValueError):
            raise bad_cursor(field) from None
        body, mac = token[:-MAC_BYTES], token[-MAC_BYTES:]
        if len(token) <= MAC_BYTES or not hmac.compare_digest(mac, self._mac(owner, body)):
            raise bad_cursor(field)
        cursor_scope, values = json.loads(body)
        if cursor_scope != scope:
            raise bad_cursor(field)
        return list(values)


def bad_cursor(field: str = "cursor") -> InvalidInput:
    return InvalidInput(("query", field), "cursor_invalid")


@dataclass(frozen=True, slots=True)
class PageRequest(Generic[QueryModel]):
    """What the client asked of a list (`query`: its page, and the filters and sort of a
    list that has them), with the means to read and write cursors."""

    query: QueryModel
    signer: CursorSigner

    @property
    def limit(self) -> int:
        return self.query.limit

    @property
    def cursor(self) -> str | None:
        return self.query.cursor


class ListQuery(Generic[QueryModel]):
    """A list's query string as one model (`model`), in one validation per request; the
    list's route documents it with `openapi_extra=...openapi`.

    FastAPI reads a query model, or a parameter, field by field on every request, sent or
    not, walking each field's annotation (optimisation 5 in specs/performance.md).
    Pydantic validates the whole query string in
    one call, with the same messages; the errors are FastAPI's, under `query`."""

    def __init__(self, model: type[QueryModel]) -> None:
        self.model = model
        self.openapi = query_parameters(model)
        self._repeated = frozenset(
            parameter["name"]
            for parameter in self.openapi["parameters"]
            if any(
                option.get("type") == "array"
                for option in [parameter["schema"], *parameter["schema"].get("anyOf", [])]
            )
        )
        """The fields given by repeating their parameter (`?tag=a&tag=b`)."""

    async def __call__(self, request: Request) -> PageRequest[QueryModel]:
        values: Any = request.query_params
        if self._repeated.intersection(values):
            values = {
                name: values.getlist(name) if name in self._repeated else value
                for name, value in values.items()
            }
        try:
            query = self.model.model_validate(values)
        except ValidationError as exc:
            errors = exc.errors(include_url=False)
            raise RequestValidationError(
                [{**error, "loc": ("query", *error["loc"])} for error in errors]
            ) from None
        return PageRequest(query, request.app.state.cursor_signer)


def newest_first(table: Any) -> "Keyset":
    """`table`'s rows newest first (`created_at`, ties by `id`)."""
    return Keyset(
        name="-created_at",
        column=table.c.created_at,
        tiebreak=table.c.id,
        adapter=TypeAdapter(AwareDatetime),
        descending=True,
    )


PAGE = ListQuery(PageQuery)
"""A list with no filters: its query string is its page."""
PageDep = Annotated[PageRequest[PageQuery], Depends(PAGE)]


@dataclass(frozen=True)
class Keyset:
    """An order over one column and a unique tie-breaker, and the predicate to resume it.

    A nullable column sorts its nulls last in both directions.
    """

    name: str
    column: KeyColumn
    tiebreak: KeyColumn
    adapter: TypeAdapter[Any]
    descending: bool = False
    nullable: bool = False
    _paged: dict[tuple[int, bool | None], tuple[Any, Any]] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )

    def order_by(self) -> list[Any]:
        columns = [self.column, self.tiebreak]
        ordered = [column.desc() if self.descending else column.asc() for column in columns]
        if self.nullable:
            ordered[0] = ordered[0].nulls_last()
        return ordered

    def after(self, *, null: bool) -> ColumnElement[bool]:
        """Rows beyond the position bound as `after_value` and `after_id` (`null`: the
        position's value is null, so only the nulls with a later id remain)."""
        tiebreak = bindparam(AFTER_ID, type_=self.tiebreak.type)
        beyond = self.tiebreak < tiebreak if self.descending else self.tiebreak > tiebreak
        if null:
            return and_(self.column.is_(None), beyond)
        row = tuple_(self.column, self.tiebreak)
        position = tuple_(bindparam(AFTER_VALUE, type_=self.column.type), tiebreak)
        later = row < position if self.descending else row > position
        return or_(later, self.column.is_(None)) if self.nullable else later

    def paged(self, statement: Listing, *, resume: bool | None) -> Listing:
        """`statement` in this order, resumed after a position (`resume` says whether its
        value is null) or from the start, limited to the bound `limit`. Built once per
        statement: building and keying a statement costs more than running it."""
        key = (id(statement), resume)
        cached = self._paged.get(key)
        if cached is None or cached[0] is not statement:
            if len(self._paged) >= PAGED_CACHE_SIZE:
                self._paged.clear()  # only reached if a caller builds statements per request
            paged = statement if resume is None else statement.where(self.after(null=resume))
            paged = paged.order_by(*self.order_by()).limit(bindparam(LIMIT))
            cached = self._paged[key] = (statement, paged)
        return cached[1]

    def position_of(self, record: Record) -> list[Any]:
        value = self.adapter.dump_python(record[self.column.key], mode="json")
        return [value, str(record[self.tiebreak.key])]

    def parse(self, values: list[Any]) -> tuple[Any, Any]:
        try:
            value, tiebreak = values
            return self.adapter.validate_python(value), _UUIDS.validate_python(tiebreak)
        except (ValueError, TypeError, ValidationError):
            raise bad_cursor() from None


_UUIDS: TypeAdapter[UUID] = TypeAdapter(UUID)


async def fetch_page(
    session: AsyncSession,
    statement: Listing,
    *,
    keyset: Keyset,
    page: PageRequest[PageQuery],
    owner: str,
    scope: str,
    params: dict[str, Any] | None = None,
) -> tuple[list[Record], str | None]:
    """One page of `statement` in the keyset's order, each row as a `Record`.

    `statement` is built once (a module constant, or one per combination of filters) with
    its owner bound as `owner_id` (see `owned_by`) and its filter values bound by name;
    this fills them in with `owner` and `params`.
    """
    scope = f"{scope}:{keyset.name}"
    values: dict[str, Any] = {**(params or {}), OWNER: owner, LIMIT: page.limit + 1}
    resume = None
    if page.cursor is not None:
        value, tiebreak = keyset.parse(page.signer.decode(owner, scope, page.cursor))
        resume = value is None
        values |= {AFTER_VALUE: value, AFTER_ID: tiebreak}

    # Plain rows (a page is read-only output), zipped into dicts: five times cheaper than
    # `Row._asdict()`, and read by pydantic without attribute lookups.
    names, rows = await read_rows(session, keyset.paged(statement, resume=resume), values)
    records = [dict(zip(names, row, strict=True)) for row in rows]
    if len(records) <= page.limit:
        return records, None
    records = records[: page.limit]
    return records, page.signer.encode(owner, scope, keyset.position_of(records[-1]))


def page_of(model: type[Item], records: Sequence[Record], next_cursor: str | None) -> Page[Item]:
    """The page object of `records` (from `fetch_page`), each shown as `model`."""
    return _page_adapter(model).validate_python({"items": records, "next_cursor": next_cursor})


@functools.cache
def _page_adapter(model: type[Item]) -> TypeAdapter[Page[Item]]:
    return TypeAdapter(Page[model])  # type: ignore[valid-type]
