"""Statements of owned rows, built once with the owner bound at execution.

Building and keying a SQLAlchemy statement costs more than running it (an eighth of
a `GET` of one task; specs/performance.md), so the statements every request runs are
module constants: the owner, and any other value, are bound parameters filled in per
request. Row-level security (PostgreSQL) is the second fence behind the owner filter.
"""

from typing import Any, Generic, TypeVar, cast
from uuid import UUID

from sqlalchemy import ColumnElement, bindparam
from sqlmodel import SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import SelectOfScalar

OWNER = "owner_id"
"""The parameter every owned statement binds its owner to."""
ROW_ID = "row_id"

Model = TypeVar("Model", bound=SQLModel)


def owned_by(column: Any) -> ColumnElement[bool]:
    """`column` is the owner bound at execution: the statement is built once and run for
    anyone."""
    return cast(ColumnElement[bool], column == bindparam(OWNER))


class ById(Generic[Model]):
    """One of the owner's rows by id, as an entity: a plain read, or locked until the
    commit (`FOR UPDATE` on PostgreSQL) and refreshed for a write."""

    def __init__(self, model: type[Model]) -> None:
        columns: Any = model
        self._read: SelectOfScalar[Model] = select(model).where(
            owned_by(columns.user_id), columns.id == bindparam(ROW_ID)
        )
        self._locked = self._read.with_for_update().execution_options(populate_existing=True)

    async def get(
        self, session: AsyncSession, *, owner: str, row_id: UUID, for_update: bool = False
    ) -> Model | None:
        statement = self._locked if for_update else self._read
        return (await session.exec(statement, params={OWNER: owner, ROW_ID: row_id})).first()
