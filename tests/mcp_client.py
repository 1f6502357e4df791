"""A live server for the MCP tests, and the official SDK client to call it with."""

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import httpx2
import pytest
from fastapi import FastAPI
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, ListToolsResult
from sqlalchemy import Engine

from backend.config import Settings
from backend.main import create_app
from tests.conftest import make_token
from tests.live import serving

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "test", "version": "1"},
    },
}
"""A JSON-RPC `initialize`, the first message of every MCP client, for raw POSTs."""
MCP_HEADERS = {"Accept": "application/json, text/event-stream"}


@pytest.fixture(scope="module")
def live_app(settings: Settings, engine: Engine) -> Iterator[tuple[FastAPI, str]]:
    """An app served by uvicorn in a thread, on the test database; its base URL."""
    app = create_app(settings)
    with serving(app) as url:
        yield app, url


@pytest.fixture
def base_url(live_app: tuple[FastAPI, str], db: Any) -> str:
    """The live server's URL, for one test (tables are emptied after each)."""
    app, url = live_app
    app.state.known_users.clear()
    return url


class McpCaller:
    """Calls through the SDK's streamable HTTP client, one connection per call."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.token = token

    async def _session(self, work: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"}
        async with (
            httpx2.AsyncClient(headers=headers, timeout=30) as http,
            streamable_http_client(self.url, http_client=http) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            return await work(session)

    def __call__(self, tool: str, /, **arguments: Any) -> CallToolResult:
        async def work(session: ClientSession) -> CallToolResult:
            return await session.call_tool(tool, arguments)

        result: CallToolResult = asyncio.run(self._session(work))
        return result

    def list_tools(self) -> ListToolsResult:
        async def work(session: ClientSession) -> ListToolsResult:
            return await session.list_tools()

        result: ListToolsResult = asyncio.run(self._session(work))
        return result


def structured(result: CallToolResult) -> dict[str, Any]:
    """The structured content of a successful call."""
    assert not result.is_error, result.content
    assert isinstance(result.structured_content, dict)
    assert result.content
    assert result.content[0].type == "text"
    return result.structured_content


def tool_error(result: CallToolResult, code: str) -> dict[str, Any]:
    """The problem document of a failed call, which carries `code`."""
    assert result.is_error, result.structured_content
    problem = result.structured_content
    assert isinstance(problem, dict)
    assert problem["code"] == code, problem
    assert {"type", "title", "status", "detail"} <= problem.keys()
    text = result.content[0]
    assert text.type == "text"
    assert text.text.startswith(f"{code}: ")
    return problem


@pytest.fixture
def mcp_as(base_url: str) -> Callable[..., McpCaller]:
    """`mcp_as("alice")`: a caller with alice's JWT; `mcp_as(token=...)` with any token."""

    def caller(user: str = "alice", *, token: str | None = None) -> McpCaller:
        return McpCaller(f"{base_url}/mcp", token or make_token(user))

    return caller
