"""Statements of owned rows, built once with the owner bound at execution.

Building and keying a SQLAlchemy statement costs more than running it (optimisation 1 in
specs/performance.md), so the statements every request runs are module constants: the
owner, and any other value, are bound parameters filled in per request. Row-level
security (PostgreSQL) is the second fence behind the owner filter.
"""

from typing import Any, cast
from uuid import UUID

from sqlalchemy import ColumnElement, Table, bindparam, delete, insert, select, update
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.db import read_rows

OWNER = "owner_id"
"""The parameter every owned statement binds its owner to."""
ROW_ID = "row_id"
READ_VERSION = "read_version"


def owned_by(column: Any) -> ColumnElement[bool]:
    """`column` is the owner bound at execution: the statement is built once and run for
    anyone."""
    return cast(ColumnElement[bool], column == bindparam(OWNER))


class OwnedTable:
    """The statements of one owned table: a row by id, plain or locked until the commit
    (`FOR UPDATE` on PostgreSQL), an `INSERT` of a row's values, and the `UPDATE` (its `SET`
    is the parameters named after columns) and `DELETE` of one row, which match it only
    while it is still at the version it was read at, where the table has versions. Rows
    are plain dicts of the table's columns, never entities."""

    def __init__(self, model: type[SQLModel]) -> None:
        self.table: Table = model.__table__  # type: ignore[attr-defined]
        c = self.table.c
        by_id = (owned_by(c.user_id), c.id == bindparam(ROW_ID))
        guard = (*by_id, c.version == bindparam(READ_VERSION)) if "version" in c else by_id
        self._read = select(self.table).where(*by_id)
        self._locked = self._read.with_for_update()
        self.insert = insert(self.table)
        self.update = update(self.table).where(*guard)
        self.delete = delete(self.table).where(*guard)

    async def get(
        self, session: AsyncSession, *, owner: str, row_id: UUID, for_update: bool = False
    ) -> dict[str, Any] | None:
        statement = self._locked if for_update else self._read
        names, rows = await read_rows(session, statement, {OWNER: owner, ROW_ID: row_id})
        return dict(zip(names, rows[0], strict=True)) if rows else None

    @staticmethod
    def params(
        owner: str,
        row_id: UUID,
        *,
        read_version: int | None = None,
        values: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The parameters of `update` or `delete` on one row (read at `read_version`), with
        the new `values` of an update."""
        guard = {} if read_version is None else {READ_VERSION: read_version}
        return {OWNER: owner, ROW_ID: row_id, **guard, **(values or {})}
