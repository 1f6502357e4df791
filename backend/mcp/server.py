"""The MCP server: lists the tools, runs a call as the token's user, answers errors by `code`."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared.exceptions import MCPError
from mcp.types import (
    INVALID_PARAMS,
    CallToolRequestParams,
    CallToolResult,
    ListToolsResult,
    PaginatedRequestParams,
    TextContent,
    ToolAnnotations,
)
from mcp.types import Tool as McpTool
from pydantic import ValidationError
from starlette.requests import Request
from starlette.routing import Route

from backend import messages
from backend.config import Settings
from backend.db import end_session
from backend.deps import authorize
from backend.errors import DATABASE_ERRORS, AppError, InvalidInput, database_error, problem_body
from backend.mcp.auth import MCP_PATH, METADATA_PATH, McpEndpoint, claims_of, resource_metadata
from backend.mcp.tools import TOOLS, Tool, ToolContext

logger = logging.getLogger("todo_api")

INSTRUCTIONS = (
    "Manage the signed-in user's tasks and categories. Every tool acts only for the user "
    "of the bearer token. Errors carry a `code` (as the REST API's problem documents)."
)
# Where REST names where an input came from, a tool names its arguments.
_REST_LOCATIONS = frozenset({"body", "query", "path"})


def describe(tool: Tool[Any]) -> McpTool:
    return McpTool(
        name=tool.name,
        description=tool.description,
        input_schema=tool.args.model_json_schema(),
        output_schema=tool.result.model_json_schema(mode="serialization", by_alias=True),
        annotations=ToolAnnotations(
            read_only_hint=tool.needs == "read",
            destructive_hint=tool.destructive,
            idempotent_hint=tool.idempotent,
            open_world_hint=False,
        ),
    )


async def list_tools(
    _ctx: ServerRequestContext[Any], _params: PaginatedRequestParams | None
) -> ListToolsResult:
    return ListToolsResult(tools=[describe(tool) for tool in TOOLS.values()])


async def call_tool(
    ctx: ServerRequestContext[Any], params: CallToolRequestParams
) -> CallToolResult:
    tool = TOOLS.get(params.name)
    if tool is None:
        raise MCPError(code=INVALID_PARAMS, message=f"Unknown tool: {params.name}")
    request = ctx.request
    assert isinstance(request, Request)
    try:
        return await _run(request, tool, params.arguments or {})
    except AppError as error:
        return _error_result(error)
    except ValidationError as exc:
        invalid = InvalidInput((), "value_error")
        invalid.errors = messages.validation_errors(exc.errors())
        return _error_result(invalid)
    except DATABASE_ERRORS as exc:
        return _error_result(database_error(exc))
    except Exception as exc:
        frame = exc.__traceback__
        while frame is not None and frame.tb_next is not None:
            frame = frame.tb_next
        where = f"{frame.tb_frame.f_code.co_filename}:{frame.tb_lineno}" if frame else "?"
        logger.error("MCP tool %s: unhandled %s at %s", tool.name, type(exc).__name__, where)
        return _error_result(AppError())


async def _run(request: Request, tool: Tool[Any], arguments: dict[str, Any]) -> CallToolResult:
    """The scope is checked before the arguments, as REST checks it before the body."""
    state = request.app.state
    session = state.sessionmaker()
    succeeded = False
    try:
        user_id = await authorize(
            session, claims=claims_of(request), needed=tool.needs, known=state.known_users
        )
        args = tool.args.model_validate(arguments)
        result, text = await tool.run(
            ToolContext(session, user_id, state.cursor_signer, state.changes_retention), args
        )
        succeeded = True
    finally:
        await end_session(session, commit=succeeded and tool.needs == "read")
    return CallToolResult(
        content=[TextContent(type="text", text=text)],
        structured_content=result.model_dump(mode="json", by_alias=True),
    )


def _error_result(error: AppError) -> CallToolResult:
    """A tool error: the REST problem document as structured content, `code` first in text."""
    extra: dict[str, Any] = {}
    text = f"{error.code}: {error.detail}"
    if isinstance(error, InvalidInput):
        errors = [_argument_error(e) for e in error.errors]
        extra["errors"] = errors
        text += "".join(f"\n- {'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors)
    return CallToolResult(
        content=[TextContent(type="text", text=text)],
        structured_content=problem_body(error.status, error.code, error.detail, **extra),
        is_error=True,
    )


def _argument_error(error: dict[str, Any]) -> dict[str, Any]:
    loc = list(error["loc"])
    if loc and loc[0] in _REST_LOCATIONS:
        loc = loc[1:]
    return {**error, "loc": ["arguments", *loc]}


def create_server() -> Server[Any]:
    return Server(
        "todo-api",
        version="1.0.0",
        instructions=INSTRUCTIONS,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )


def mount_mcp(app: FastAPI, settings: Settings) -> None:
    """Add `/mcp` and its protected resource metadata (outside the OpenAPI document)."""
    app.state.mcp_server = create_server()
    metadata = resource_metadata(settings)
    app.router.routes.extend(
        [
            Route(MCP_PATH, McpEndpoint()),
            Route(METADATA_PATH, metadata, methods=["GET"]),
            Route(f"{METADATA_PATH}{MCP_PATH}", metadata, methods=["GET"]),
        ]
    )


@asynccontextmanager
async def mcp_sessions(app: FastAPI) -> AsyncIterator[None]:
    """Run a session manager for the app's lifetime (a new one per lifespan: they run once).

    Stateless, with JSON responses: every POST carries its own call and gets one JSON
    answer, so any replica can serve any request and nothing is kept between them.
    """
    manager = StreamableHTTPSessionManager(
        app=app.state.mcp_server, stateless=True, json_response=True
    )
    async with manager.run():
        app.state.mcp_sessions = manager
        yield
