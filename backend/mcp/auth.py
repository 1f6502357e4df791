"""The `/mcp` door: the same bearer tokens as REST, checked before the SDK sees a byte."""

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from backend.auth import Claims
from backend.config import Settings
from backend.deps import authenticate, limit_caller
from backend.errors import DATABASE_ERRORS, AppError, database_error, problem

CLAIMS = "todo_api.claims"
"""Key in the ASGI scope: the verified caller, for the tool handlers."""

MCP_PATH = "/mcp"
METADATA_PATH = "/.well-known/oauth-protected-resource"


def claims_of(request: Request) -> Claims:
    claims: Claims = request.scope[CLAIMS]
    return claims


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _resource_metadata_url(request: Request) -> str:
    return f"{_base_url(request)}{METADATA_PATH}{MCP_PATH}"


class McpEndpoint:
    """ASGI app of `/mcp`: POST only; a 401 (naming where to learn about this resource) or
    a 503 for a caller it cannot verify; otherwise the request goes to the session manager."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        if request.method != "POST":
            # Stateless: no session to DELETE, and no stream a GET could ever receive on.
            headers = {"Allow": "POST"}
            response = problem(405, "method_not_allowed", "Method Not Allowed", headers=headers)
            await response(scope, receive, send)
            return
        try:
            async with request.app.state.sessionmaker() as session:
                claims = await authenticate(request, session)
            await limit_caller(request, claims)  # the subject's budget, as on every REST route
        except AppError as error:
            await self._refuse(request, error, send)
            return
        except DATABASE_ERRORS as exc:
            await self._refuse(request, database_error(exc), send)
            return
        scope[CLAIMS] = claims
        await request.app.state.mcp_sessions.handle_request(scope, receive, send)

    @staticmethod
    async def _refuse(request: Request, error: AppError, send: Send) -> None:
        headers = dict(error.headers)
        if error.status == 401:
            # MCP authorization: a 401 names the protected resource metadata (RFC 9728).
            challenge = headers["WWW-Authenticate"]
            separator = ", " if "=" in challenge else " "
            metadata = f'resource_metadata="{_resource_metadata_url(request)}"'
            headers["WWW-Authenticate"] = f"{challenge}{separator}{metadata}"
        await error.response(headers)(request.scope, request.receive, send)


def resource_metadata(settings: Settings) -> Any:
    """The route handler of the protected resource metadata document (RFC 9728)."""

    async def protected_resource(request: Request) -> JSONResponse:
        document: dict[str, Any] = {
            "resource": f"{_base_url(request)}{MCP_PATH}",
            "resource_name": "todo-api",
            "bearer_methods_supported": ["header"],
            "scopes_supported": ["read", "write"],
        }
        if settings.jwt_issuer:
            document["authorization_servers"] = [settings.jwt_issuer]
        return JSONResponse(document, headers={"Cache-Control": "public, max-age=3600"})

    return protected_resource
