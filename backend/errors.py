"""Error classes that carry their status and code, rendered as RFC 9457 problem documents."""

import logging
import re
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException

from backend import messages
from backend.asgi import route_path

logger = logging.getLogger("todo_api")

PROBLEM_JSON = "application/problem+json"
RETRY_AFTER_SECONDS = "1"
AUTH_RETRY_AFTER_SECONDS = "10"

CODES_BY_STATUS = {
    400: "bad_request",
    401: "not_authenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    412: "precondition_failed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    428: "precondition_required",
    429: "rate_limited",
    503: "db_unavailable",
}


class AppError(Exception):
    """An answer the service means to give: its status, `code` and a sentence for people."""

    status = 500
    code = "internal_error"
    detail = "The server could not complete the request."

    def __init__(self, detail: str | None = None, *, headers: dict[str, str] | None = None):
        super().__init__(detail or self.detail)
        self.detail = detail or self.detail
        self.headers = headers or {}

    def response(self, headers: dict[str, str] | None = None) -> "JSONResponse":
        """This error as its problem document (with `headers` in place of its own)."""
        extra = {"errors": self.errors} if isinstance(self, InvalidInput) else {}
        return problem(
            self.status, self.code, self.detail, headers=headers or self.headers, **extra
        )


class NotAuthenticated(AppError):
    status = 401
    code = "not_authenticated"
    detail = "This request needs a bearer token."

    def __init__(self, detail: str | None = None):
        super().__init__(detail, headers={"WWW-Authenticate": "Bearer"})


class InvalidToken(AppError):
    status = 401
    code = "invalid_token"
    detail = "The bearer token is not valid."

    def __init__(self, detail: str | None = None):
        super().__init__(detail, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})


class Forbidden(AppError):
    status = 403
    code = "forbidden"
    detail = "This token may not act for that user."


class InsufficientScope(AppError):
    status = 403
    code = "insufficient_scope"
    detail = "This token's scope does not allow this request."

    def __init__(self, scope: str, detail: str | None = None):
        super().__init__(
            detail,
            headers={"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{scope}"'},
        )


class AuthUnavailable(AppError):
    status = 503
    code = "auth_unavailable"
    detail = "The identity provider's keys cannot be fetched; try again shortly."

    def __init__(self) -> None:
        super().__init__(headers={"Retry-After": AUTH_RETRY_AFTER_SECONDS})


class NotFound(AppError):
    status = 404
    code = "not_found"
    detail = "No such resource."


class Conflict(AppError):
    status = 409
    code = "conflict"
    detail = "The request conflicts with the current state of the resource."


class PreconditionFailed(AppError):
    status = 412
    code = "precondition_failed"
    detail = "The resource has changed since that version was read; reload it and try again."

    def __init__(self, current_etag: str):
        super().__init__(headers={"ETag": current_etag})


class InvalidInput(AppError):
    """A 422 about one field, for rules that only the service can check."""

    status = 422
    code = "validation_error"
    detail = "Some fields of the request are not valid; errors lists each."

    def __init__(self, loc: tuple[str | int, ...], error_type: str, msg: str | None = None):
        super().__init__()
        msg = msg or messages.rule_message(error_type, loc)
        self.errors = [{"loc": list(loc), "msg": msg, "type": error_type}]


class CorsRefused(AppError):
    """A CORS preflight asking for an origin, method or header this API does not allow."""

    status = 400
    code = "cors_refused"


class SyncExpired(AppError):
    """A sync token older than the change feed keeps deletions: the client starts over."""

    status = 410
    code = "sync_expired"
    detail = "This sync token is older than the change feed keeps; start a new sync without it."


class PayloadTooLarge(AppError):
    status = 413
    code = "payload_too_large"
    detail = "The request body is too large."


class RateLimited(AppError):
    status = 429
    code = "rate_limited"
    detail = "Too many requests; try again after the time in Retry-After."

    def __init__(self, retry_after_seconds: int) -> None:
        super().__init__(headers={"Retry-After": str(max(1, retry_after_seconds))})


class DatabaseUnavailable(AppError):
    status = 503
    code = "db_unavailable"
    detail = "The database is unavailable; try again shortly."

    def __init__(self) -> None:
        super().__init__(headers={"Retry-After": RETRY_AFTER_SECONDS})


class DeadlineExceeded(AppError):
    status = 503
    code = "timeout"
    detail = "The request took too long; try again shortly."

    def __init__(self) -> None:
        super().__init__(headers={"Retry-After": RETRY_AFTER_SECONDS})


# SQLSTATEs of a statement or lock wait cut short by the server's own timeouts.
TIMEOUT_SQLSTATES = frozenset({"57014", "55P03"})


def problem_body(status: int, code: str, detail: str, **extra: Any) -> dict[str, Any]:
    """The problem document itself, for answers that are not HTTP responses (MCP tools)."""
    return {
        "type": "about:blank",
        "title": messages.title(code),
        "status": status,
        "detail": detail,
        "code": code,
        **extra,
    }


def problem(
    status: int,
    code: str,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = problem_body(status, code, detail, **extra)
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


async def _app_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    return exc.response()


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = CODES_BY_STATUS.get(exc.status_code, "error")
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    headers = dict(exc.headers or {})
    if exc.status_code == 404:
        detail = NotFound.detail
    if exc.status_code == 400:
        detail = "The body is not valid UTF-8 JSON, or is nested too deep."
    if exc.status_code == 405:
        detail = "This path does not take that method; the Allow header lists the ones it does."
        headers["Allow"] = ", ".join(_allowed_methods(request))
    return problem(exc.status_code, code, detail, headers=headers)


def _allowed_methods(request: Request) -> list[str]:
    """The methods documented for this path (Starlette names only the first route's)."""
    table: list[tuple[re.Pattern[str], list[str]]] | None = getattr(
        request.app.state, "allowed_methods", None
    )
    if table is None:
        table = [
            (
                re.compile(re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(path))),
                sorted(m.upper() for m in item),
            )
            for path, item in request.app.openapi()["paths"].items()
        ]
        request.app.state.allowed_methods = table
    path = route_path(request.scope)  # without --root-path, as the paths are documented
    return next((methods for pattern, methods in table if pattern.fullmatch(path)), [])


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = messages.validation_errors(exc.errors())
    return problem(422, "validation_error", InvalidInput.detail, errors=errors)


DATABASE_ERRORS = (PoolTimeoutError, OperationalError, InterfaceError)


def database_error(exc: Exception) -> AppError:
    """What a failed database call answers: `timeout` for the server's own timeouts, else
    `db_unavailable`."""
    sqlstate = getattr(getattr(exc, "orig", None), "sqlstate", None)
    error = DeadlineExceeded() if sqlstate in TIMEOUT_SQLSTATES else DatabaseUnavailable()
    logger.warning("database error answered %s: %s", error.code, type(exc).__name__)
    return error


async def _database_error(_request: Request, exc: Exception) -> JSONResponse:
    return database_error(exc).response()


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(PoolTimeoutError, _database_error)
    app.add_exception_handler(OperationalError, _database_error)
    app.add_exception_handler(InterfaceError, _database_error)
