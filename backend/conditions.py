"""Conditional requests: ETags from versions, `If-Match` for writes, `If-None-Match` for reads."""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Protocol, TypeVar

from fastapi import Depends, Header, Response
from pydantic import BaseModel
from sqlalchemy.orm.exc import StaleDataError
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.errors import Conflict, PreconditionFailed
from backend.openapi import problem_response

T = TypeVar("T")
Model = TypeVar("Model", bound=BaseModel)


class HasVersion(Protocol):
    version: int


V = TypeVar("V", bound=HasVersion)


MAX_ATTEMPTS = 5
"""Unconditional writes that lose a race are re-read and re-applied this many times."""
MAX_CONDITION_LENGTH = 1024
"""A longer `If-Match` is malformed (412), a longer `If-None-Match` matches nothing."""


def etag_of(version: int) -> str:
    return f'"{version}"'


@dataclass(frozen=True, slots=True)
class Precondition:
    """What `If-Match` asks of the current version; `None` when the header is absent."""

    header: str | None = None

    @property
    def given(self) -> bool:
        return self.header is not None

    def allows(self, version: int) -> bool:
        """Strong comparison (RFC 9110): `*`, or one of the listed tags is this version's."""
        if self.header is None or self.header.strip() == "*":
            return True
        if len(self.header) > MAX_CONDITION_LENGTH:
            return False
        return etag_of(version) in (tag.strip() for tag in self.header.split(","))

    def check(self, row: V) -> V:
        """`row`, if it is the version asked for; else 412 with its ETag."""
        if not self.allows(row.version):
            raise PreconditionFailed(etag_of(row.version))
        return row


async def if_match(
    if_match: Annotated[
        str | None,
        Header(
            alias="If-Match",
            description="The resource's ETag: the write happens only if it is still current.",
        ),
    ] = None,
) -> Precondition:
    return Precondition(if_match)


UNCONDITIONAL = Precondition()

IfMatchDep = Annotated[Precondition, Depends(if_match)]
IfNoneMatch = Annotated[
    str | None,
    Header(alias="If-None-Match", description="An ETag the client holds: 304 if still current."),
]


NOT_MODIFIED: dict[int | str, dict[str, Any]] = {
    304: {
        "description": "The client's copy (`If-None-Match`) is current.",
        "headers": {"ETag": {"description": "The current ETag.", "schema": {"type": "string"}}},
    }
}
PRECONDITION_FAILED: dict[int | str, dict[str, Any]] = {
    412: problem_response(
        412,
        "precondition_failed",
        "`If-Match` names an older version (`precondition_failed`); "
        "the `ETag` header carries the current one.",
        headers={"ETag": "The current version's ETag."},
    )
}


def with_etag(model: type[Model], row: HasVersion, response: Response) -> Model:
    """`row` as `model`, with its version as the response's `ETag`."""
    response.headers["ETag"] = etag_of(row.version)
    return model.model_validate(row)


def not_modified(if_none_match: str | None, version: int) -> Response | None:
    """A 304 when the client's copy is current, else None."""
    if if_none_match is None or len(if_none_match) > MAX_CONDITION_LENGTH:
        return None
    tags = {candidate.strip().removeprefix("W/") for candidate in if_none_match.split(",")}
    if "*" in tags or etag_of(version) in tags:
        return Response(status_code=304, headers={"ETag": etag_of(version)})
    return None


async def change_current_row(
    session: AsyncSession,
    *,
    read: Callable[[bool], Awaitable[V]],
    change: Callable[[V], Awaitable[T]],
    precondition: Precondition,
) -> T:
    """Read the row (`read(True)`: locked until the commit, `FOR UPDATE` on PostgreSQL),
    hold it to `If-Match`, and `change` it with statements guarded by the version read,
    which raise `StaleDataError` where the row moved meanwhile (SQLite has no row lock).

    Then a conditional request answers 412 with the current ETag; an unconditional one is
    read again and changed again (last writer wins, and the history still records exactly
    what each write changed).
    """
    for _ in range(MAX_ATTEMPTS):
        row = precondition.check(await read(True))
        try:
            return await change(row)
        except StaleDataError:
            await session.rollback()
            if precondition.given:
                raise PreconditionFailed(etag_of((await read(False)).version)) from None
    raise Conflict("The resource is changing too fast; try again.")
