"""What every protected operation (tests/operations.py) answered a request, in one batch."""

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import httpx2
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlmodel import Session
from starlette.types import ASGIApp

from tests.conftest import TABLES
from tests.operations import PROTECTED, never_seen_url

PROBLEM_JSON = "application/problem+json"

HeaderList = Mapping[str, str] | Sequence[tuple[str, str]]

assert len(PROTECTED) >= 20, "the OpenAPI document lost its user routes"


class Outcome(NamedTuple):
    """What matters in an answer to a refused request."""

    status: int
    code: str | None
    www_authenticate: str | None
    retry_after: bool = False
    leaks_token: bool = False


MISSING = Outcome(401, "not_authenticated", "Bearer")
INVALID = Outcome(401, "invalid_token", 'Bearer error="invalid_token"')
UNAVAILABLE = Outcome(503, "auth_unavailable", None, retry_after=True)


def _leaks(text: str, token: str | None) -> bool:
    """The body holds the token, or one of its segments (the signature above all)."""
    if not token:
        return False
    return token in text or any(len(part) >= 8 and part in text for part in token.split("."))


def outcome(response: httpx2.Response, token: str | None = None) -> Outcome:
    content_type = response.headers.get("content-type")
    code = response.json().get("code") if content_type == PROBLEM_JSON else f"<{content_type}>"
    return Outcome(
        status=response.status_code,
        code=code,
        www_authenticate=response.headers.get("www-authenticate"),
        retry_after="retry-after" in response.headers,
        leaks_token=_leaks(response.text, token),
    )


async def _send_all(
    app: ASGIApp, subject: str, headers: HeaderList | None, params: Mapping[str, str] | None
) -> list[httpx2.Response]:
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as client:
        return [
            await client.request(
                op.method, never_seen_url(op, subject), json={}, headers=headers, params=params
            )
            for op in PROTECTED
        ]


def send_every_operation(
    client: TestClient,
    subject: str,
    headers: HeaderList | None = None,
    params: Mapping[str, str] | None = None,
) -> dict[str, httpx2.Response]:
    """Each operation's answer, sent with an empty JSON body (401 comes before 422).

    The requests run on the TestClient's event loop, one after another, without a thread
    hop per message: the same app and lifespan, several times faster."""
    assert client.portal is not None, "use the TestClient inside `with`"
    responses = client.portal.call(_send_all, client.app, subject, headers, params)
    return {str(op): response for op, response in zip(PROTECTED, responses, strict=True)}


def call_every_operation(
    client: TestClient,
    subject: str,
    headers: HeaderList | None = None,
    *,
    params: Mapping[str, str] | None = None,
    token: str | None = None,
) -> dict[str, Outcome]:
    """Each operation's outcome (see `Outcome`)."""
    responses = send_every_operation(client, subject, headers, params)
    return {op: outcome(response, token) for op, response in responses.items()}


def every(expected: Outcome) -> dict[str, Outcome]:
    return {str(op): expected for op in PROTECTED}


def refused_operations(client: TestClient, subject: str, headers: HeaderList) -> dict[str, int]:
    """The operations (with their status) that did not serve a valid token's request:
    401, 403 or any 5xx. A 404 or 422 for the made-up id or the empty body is served."""
    responses = send_every_operation(client, subject, headers)
    return {
        op: response.status_code
        for op, response in responses.items()
        if response.status_code in (401, 403) or response.status_code >= 500
    }


def stored_rows(db: Session) -> dict[str, int]:
    """How many rows each table holds (a refused request must leave them all empty)."""
    counts = {
        table: db.connection().execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one()  # noqa: S608
        for table in TABLES
    }
    db.rollback()
    return counts


NOTHING_STORED = dict.fromkeys(TABLES, 0)
