"""MCP authentication and ownership: the same tokens, scopes and 404s as REST."""

from collections.abc import Callable
from typing import Any

import httpx2
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from mcp import MCPError
from sqlmodel import Session, select

from backend.models import Category, Task, TaskHistory, User
from tests.conftest import AuthFactory, assert_problem, make_token
from tests.mcp_client import INITIALIZE, MCP_HEADERS, McpCaller, structured, tool_error
from tests.operations import create_pat

McpAs = Callable[..., McpCaller]


def _post(base_url: str, headers: dict[str, str] | None = None) -> httpx2.Response:
    return httpx2.post(
        f"{base_url}/mcp", json=INITIALIZE, headers=MCP_HEADERS | (headers or {}), timeout=10
    )


def _metadata_url(base_url: str) -> str:
    return f"{base_url}/.well-known/oauth-protected-resource/mcp"


def test_mcp_without_a_token_is_401_naming_the_resource_metadata(base_url: str) -> None:
    response = _post(base_url)

    assert_problem(response, 401, "not_authenticated")
    assert response.headers["www-authenticate"] == (
        f'Bearer resource_metadata="{_metadata_url(base_url)}"'
    )


@pytest.mark.parametrize(
    "authorization",
    ["Bearer not-a-jwt", f"Bearer {make_token('alice', secret='x' * 40)}", "Bearer todo_pat_x"],
)
def test_mcp_with_an_invalid_token_is_401_invalid_token(base_url: str, authorization: str) -> None:
    response = _post(base_url, {"Authorization": authorization})

    assert_problem(response, 401, "invalid_token")
    assert response.headers["www-authenticate"] == (
        f'Bearer error="invalid_token", resource_metadata="{_metadata_url(base_url)}"'
    )
    assert authorization.split()[1] not in response.text


def test_sdk_client_with_a_bad_token_gets_no_tools(mcp_as: McpAs) -> None:
    with pytest.raises(ExceptionGroup) as caught:
        mcp_as(token="not-a-jwt").list_tools()

    assert caught.group_contains(MCPError, depth=None)


def test_sdk_client_with_an_expired_token_cannot_call_a_tool(mcp_as: McpAs, db: Session) -> None:
    expired = make_token("alice", iat=1_000_000_000, exp=1_000_000_600)

    with pytest.raises(ExceptionGroup):
        mcp_as(token=expired)("add_task", title="Sneaky")

    assert db.exec(select(Task)).all() == []


@pytest.mark.parametrize("method", ["GET", "DELETE", "PUT"])
def test_mcp_answers_only_post(base_url: str, method: str) -> None:
    headers = MCP_HEADERS | {"Authorization": f"Bearer {make_token('alice')}"}

    response = httpx2.request(method, f"{base_url}/mcp", headers=headers, timeout=10)

    assert_problem(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "POST"


def test_protected_resource_metadata_describes_the_mcp_resource(base_url: str) -> None:
    for url in (_metadata_url(base_url), f"{base_url}/.well-known/oauth-protected-resource"):
        response = httpx2.get(url, timeout=10)

        assert response.status_code == 200
        document = response.json()
        assert document["resource"] == f"{base_url}/mcp"
        assert document["bearer_methods_supported"] == ["header"]
        assert document["scopes_supported"] == ["read", "write"]


def test_mcp_is_not_a_rest_operation(app: FastAPI) -> None:
    paths = app.openapi()["paths"]

    assert not [path for path in paths if "mcp" in path or "well-known" in path]


def test_read_token_can_call_read_tools(
    mcp_as: McpAs, client: TestClient, auth: AuthFactory, make_task: Any
) -> None:
    task = make_task("alice", title="Mine")
    pat = create_pat(client, auth, "alice", scope="read")["token"]

    listed = structured(mcp_as(token=pat)("list_tasks"))

    assert [t["id"] for t in listed["items"]] == [task["id"]]


@pytest.mark.parametrize(
    ("tool", "arguments"),
    [
        ("add_task", {"title": "Sneaky"}),
        ("add_category", {"name": "Sneaky"}),
        ("complete_task", {"task_id": None}),
        ("delete_task", {"task_id": None}),
        ("update_task", {"task_id": None, "title": "Sneaky"}),
        ("reopen_task", {"task_id": "not even a uuid"}),
    ],
)
def test_read_token_is_refused_every_write_tool(
    mcp_as: McpAs,
    client: TestClient,
    auth: AuthFactory,
    make_task: Any,
    db: Session,
    tool: str,
    arguments: dict[str, Any],
) -> None:
    task = make_task("alice", title="Mine")
    pat = create_pat(client, auth, "alice", scope="read")["token"]
    if arguments.get("task_id", "") is None:
        arguments = arguments | {"task_id": task["id"]}

    problem = tool_error(mcp_as(token=pat)(tool, **arguments), "insufficient_scope")

    assert problem["status"] == 403
    stored = db.exec(select(Task)).one()
    assert (stored.title, stored.completed, stored.version) == ("Mine", False, 1)
    assert db.exec(select(Category)).all() == []
    assert len(db.exec(select(TaskHistory)).all()) == 1


def test_write_token_can_call_write_tools(
    mcp_as: McpAs, client: TestClient, auth: AuthFactory, db: Session
) -> None:
    pat = create_pat(client, auth, "alice", scope="write")["token"]

    task = structured(mcp_as(token=pat)("add_task", title="Scripted"))

    assert db.exec(select(Task)).one().user_id == "alice"
    assert task["title"] == "Scripted"


def test_first_call_creates_the_user_from_the_token(mcp_as: McpAs, db: Session) -> None:
    token = make_token("carol", email="carol@example.com", name="Carol")

    structured(mcp_as(token=token)("list_tasks"))

    user = db.exec(select(User)).one()
    assert (user.id, user.email, user.name) == ("carol", "carol@example.com", "Carol")


def test_another_users_ids_are_not_found(
    mcp_as: McpAs, make_task: Any, make_category: Any, db: Session
) -> None:
    bobs_category = make_category("bob", name="Bob's")
    bobs = make_task("bob", title="Bob's", category_id=bobs_category["id"])
    alice = mcp_as("alice")

    calls = [
        ("get_task", {}),
        ("update_task", {"title": "Mine now"}),
        ("complete_task", {}),
        ("reopen_task", {}),
        ("delete_task", {}),
        ("task_history", {}),
    ]
    for tool, arguments in calls:
        problem = tool_error(alice(tool, task_id=bobs["id"], **arguments), "not_found")
        assert problem["status"] == 404
    foreign = tool_error(
        alice("add_task", title="Mine", category_id=bobs_category["id"]), "validation_error"
    )

    assert foreign["errors"][0]["loc"] == ["arguments", "category_id"]
    assert structured(alice("list_tasks"))["items"] == []
    assert structured(alice("list_categories"))["items"] == []
    stored = db.exec(select(Task)).one()
    assert (stored.user_id, stored.title, stored.completed, stored.version) == (
        "bob",
        "Bob's",
        False,
        1,
    )
