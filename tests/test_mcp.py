"""MCP tools over streamable HTTP (the SDK's client, a live server): every tool's success,
its stored rows, and that a change made through MCP is the one REST shows."""

from collections.abc import Callable
from uuid import UUID

from fastapi.testclient import TestClient
from sqlmodel import Session, col, select

from backend.fields import HistoryAction
from backend.models import Category, Task, TaskHistory
from tests.conftest import AuthFactory
from tests.mcp_client import McpCaller, structured, tool_error

McpAs = Callable[..., McpCaller]
TOOLS = {
    "add_task", "list_tasks", "get_task", "update_task", "complete_task", "reopen_task",
    "delete_task", "list_categories", "add_category", "task_history", "weekly_stats",
    "list_changes", "list_tags", "run_batch",
}  # fmt: skip
READ_ONLY = {
    "list_tasks", "get_task", "list_categories", "task_history", "weekly_stats", "list_changes",
    "list_tags",
}  # fmt: skip


def _history(db: Session, task_id: str) -> list[TaskHistory]:
    statement = select(TaskHistory).where(TaskHistory.task_id == UUID(task_id))
    return list(
        db.exec(statement.order_by(col(TaskHistory.occurred_at), col(TaskHistory.id))).all()
    )


def test_list_tools_describes_every_tool_with_input_and_output_schemas(mcp_as: McpAs) -> None:
    tools = mcp_as("alice").list_tools().tools

    assert {tool.name for tool in tools} == TOOLS
    for tool in tools:
        assert tool.description
        assert tool.input_schema["type"] == "object"
        assert tool.output_schema is not None
        assert tool.output_schema["type"] == "object"
        assert tool.annotations is not None
        assert tool.annotations.read_only_hint is (tool.name in READ_ONLY)
    add_task = next(tool for tool in tools if tool.name == "add_task")
    assert add_task.input_schema["required"] == ["title"]
    assert add_task.input_schema["additionalProperties"] is False


def test_add_task_returns_the_task_and_stores_it_with_history(mcp_as: McpAs, db: Session) -> None:
    result = mcp_as("alice")(
        "add_task", title="  Buy milk  ", priority="high", due_at="2030-01-01T09:00:00+02:00"
    )

    task = structured(result)
    assert (task["title"], task["priority"], task["due_at"]) == (
        "Buy milk",
        "high",
        "2030-01-01T07:00:00Z",
    )
    assert (task["completed"], task["version"]) == (False, 1)
    assert "Buy milk" in result.content[0].text  # type: ignore[union-attr]
    stored = db.exec(select(Task)).one()
    assert (stored.user_id, str(stored.id), stored.title) == ("alice", task["id"], "Buy milk")
    assert [entry.action for entry in _history(db, task["id"])] == [HistoryAction.created]


def test_tags_through_tools_name_filter_and_list(mcp_as: McpAs) -> None:
    alice = mcp_as("alice")

    tagged = structured(alice("add_task", title="Tagged", tags=["Work", "home"]))
    alice("add_task", title="Plain")
    retagged = structured(alice("update_task", task_id=tagged["id"], tags=["WORK", "later"]))
    listed = alice("list_tasks", tag=["work"])
    tags = structured(alice("list_tags"))

    assert tagged["tags"] == ["home", "Work"]
    assert retagged["tags"] == ["later", "Work"]
    assert [t["title"] for t in structured(listed)["items"]] == ["Tagged"]
    assert "Tagged [later, Work]" in listed.content[0].text  # type: ignore[union-attr]
    assert [t["name"] for t in tags["items"]] == ["home", "later", "Work"]


def test_subtasks_through_tools(mcp_as: McpAs) -> None:
    alice = mcp_as("alice")
    parent = structured(alice("add_task", title="Trip"))
    child = structured(alice("add_task", title="Flights", parent_id=parent["id"]))

    children = structured(alice("list_tasks", parent_id=parent["id"]))
    alice("complete_task", task_id=parent["id"])

    assert [t["id"] for t in children["items"]] == [child["id"]]
    assert structured(alice("get_task", task_id=child["id"]))["completed"] is True


def test_recurrence_and_reminders_through_tools(mcp_as: McpAs) -> None:
    alice = mcp_as("alice")
    recurrence = {"rule": "FREQ=MONTHLY;BYMONTHDAY=-1", "tz": "Europe/Paris", "from": "due"}
    task = structured(
        alice(
            "add_task",
            title="Pay rent",
            due_at="2027-01-31T09:00:00Z",
            recurrence=recurrence,
            reminders=[{"before": "P1D"}],
        )
    )

    done = alice("complete_task", task_id=task["id"])
    moved = structured(alice("update_task", task_id=task["id"], reminders=[{"before": "PT2H"}]))

    assert (task["recurrence"], task["reminders"]) == (recurrence, [{"before": "P1D"}])
    assert structured(done)["due_at"] == "2027-02-28T09:00:00Z"
    assert "Completed this occurrence" in done.content[0].text  # type: ignore[union-attr]
    assert "repeats FREQ=MONTHLY;BYMONTHDAY=-1" in done.content[0].text  # type: ignore[union-attr]
    assert (moved["reminders"], moved["completed"]) == ([{"before": "PT2H"}], False)


def test_run_batch_is_all_or_nothing_with_references(mcp_as: McpAs, db: Session) -> None:
    alice = mcp_as("alice")

    stored = structured(
        alice(
            "run_batch",
            calls=[
                {"id": "trip", "tool": "add_task", "arguments": {"title": "Trip"}},
                {
                    "id": "flights",
                    "tool": "add_task",
                    "arguments": {"title": "Flights", "parent_id": "$trip"},
                },
            ],
        )
    )
    refused = structured(
        alice(
            "run_batch",
            calls=[
                {"id": "a", "tool": "add_task", "arguments": {"title": "Not kept"}},
                {"id": "b", "tool": "get_task", "arguments": {"task_id": "$a", "x": 1}},
                {"id": "c", "tool": "add_task", "arguments": {"title": "Not run"}},
            ],
        )
    )

    trip, flights = (result["result"] for result in stored["results"])
    assert stored["committed"] is True
    assert flights["parent_id"] == trip["id"]
    assert refused["committed"] is False
    assert [r["ok"] for r in refused["results"]] == [True, False, False]
    assert refused["results"][1]["result"]["code"] == "validation_error"
    assert refused["results"][2]["result"]["status"] == 424
    assert sorted(task.title for task in db.exec(select(Task)).all()) == ["Flights", "Trip"]


def test_add_category_and_a_task_in_it(mcp_as: McpAs, db: Session) -> None:
    alice = mcp_as("alice")

    category = structured(alice("add_category", name="Home", color="#00AA00"))
    task = structured(alice("add_task", title="Paint", category_id=category["id"]))

    assert (category["name"], category["color"], category["version"]) == ("Home", "#00AA00", 1)
    assert task["category_id"] == category["id"]
    stored = db.exec(select(Category)).one()
    assert (stored.user_id, str(stored.id)) == ("alice", category["id"])


def test_add_category_with_a_taken_name_is_a_conflict(mcp_as: McpAs, db: Session) -> None:
    alice = mcp_as("alice")
    structured(alice("add_category", name="Home"))

    problem = tool_error(alice("add_category", name="HOME"), "conflict")

    assert problem["status"] == 409
    assert len(db.exec(select(Category)).all()) == 1


def test_list_categories_by_name_with_pages(mcp_as: McpAs) -> None:
    alice = mcp_as("alice")
    for name in ("work", "Home", "errands"):
        structured(alice("add_category", name=name))

    first = structured(alice("list_categories", limit=2))
    rest = structured(alice("list_categories", limit=2, cursor=first["next_cursor"]))

    assert [c["name"] for c in first["items"]] == ["errands", "Home"]
    assert [c["name"] for c in rest["items"]] == ["work"]
    assert rest["next_cursor"] is None


def test_list_tasks_filters_by_status_text_and_category(mcp_as: McpAs) -> None:
    alice = mcp_as("alice")
    home = structured(alice("add_category", name="Home"))
    milk = structured(alice("add_task", title="Buy milk", category_id=home["id"]))
    bread = structured(alice("add_task", title="Buy bread"))
    structured(alice("add_task", title="Call mum"))
    structured(alice("complete_task", task_id=bread["id"]))

    def titles(**arguments: object) -> list[str]:
        return [t["title"] for t in structured(alice("list_tasks", **arguments))["items"]]

    assert titles() == ["Call mum", "Buy bread", "Buy milk"]
    assert titles(status="pending") == ["Call mum", "Buy milk"]
    assert titles(status="completed") == ["Buy bread"]
    assert titles(q="BUY") == ["Buy bread", "Buy milk"]
    assert titles(category_id=home["id"]) == [milk["title"]]
    assert titles(category_id="none") == ["Call mum", "Buy bread"]


def test_list_tasks_pages_with_the_cursor(mcp_as: McpAs) -> None:
    alice = mcp_as("alice")
    for title in ("one", "two", "three"):
        structured(alice("add_task", title=title))

    first = structured(alice("list_tasks", limit=2))
    rest = structured(alice("list_tasks", limit=2, cursor=first["next_cursor"]))

    assert [t["title"] for t in first["items"]] == ["three", "two"]
    assert [t["title"] for t in rest["items"]] == ["one"]
    assert rest["next_cursor"] is None
    tool_error(alice("list_tasks", cursor="not-a-cursor"), "validation_error")


def test_get_task_returns_the_task(mcp_as: McpAs) -> None:
    alice = mcp_as("alice")
    task = structured(alice("add_task", title="Read"))

    assert structured(alice("get_task", task_id=task["id"])) == task


def test_update_task_changes_only_the_given_fields(mcp_as: McpAs, db: Session) -> None:
    alice = mcp_as("alice")
    task = structured(alice("add_task", title="Read", description="a book", priority="low"))

    updated = structured(alice("update_task", task_id=task["id"], title="Read more"))
    cleared = structured(alice("update_task", task_id=task["id"], description=None))

    assert (updated["title"], updated["description"], updated["priority"]) == (
        "Read more",
        "a book",
        "low",
    )
    assert (cleared["description"], cleared["version"]) == (None, 3)
    entries = _history(db, task["id"])
    assert [entry.action for entry in entries] == ["created", "updated", "updated"]
    assert entries[1].changes == {"title": {"from": "Read", "to": "Read more"}}
    assert entries[2].changes == {"description": {"from": "a book", "to": None}}


def test_update_task_at_a_stale_version_is_precondition_failed(mcp_as: McpAs, db: Session) -> None:
    alice = mcp_as("alice")
    task = structured(alice("add_task", title="Read"))
    structured(alice("update_task", task_id=task["id"], title="Read twice", expected_version=1))

    problem = tool_error(
        alice("update_task", task_id=task["id"], title="Lost", expected_version=1),
        "precondition_failed",
    )

    assert problem["status"] == 412
    assert db.exec(select(Task)).one().title == "Read twice"


def test_complete_and_reopen_task_are_idempotent_with_history(mcp_as: McpAs, db: Session) -> None:
    alice = mcp_as("alice")
    task = structured(alice("add_task", title="Water plants"))

    done = structured(alice("complete_task", task_id=task["id"]))
    again = structured(alice("complete_task", task_id=task["id"]))
    reopened = structured(alice("reopen_task", task_id=task["id"]))

    assert (done["completed"], done["version"]) == (True, 2)
    assert done["completed_at"] is not None
    assert again == done
    assert (reopened["completed"], reopened["completed_at"], reopened["version"]) == (
        False,
        None,
        3,
    )
    actions = [entry.action for entry in _history(db, task["id"])]
    assert actions == ["created", "completed", "reopened"]


def test_delete_task_removes_it_and_keeps_its_history(mcp_as: McpAs, db: Session) -> None:
    alice = mcp_as("alice")
    task = structured(alice("add_task", title="Old"))

    deleted = structured(alice("delete_task", task_id=task["id"]))

    assert deleted == {"task_id": task["id"], "deleted": True}
    tool_error(alice("get_task", task_id=task["id"]), "not_found")
    assert db.exec(select(Task)).all() == []
    entries = structured(alice("task_history", task_id=task["id"]))["items"]
    assert [entry["action"] for entry in entries] == ["deleted", "created"]


def test_task_history_is_newest_first_with_pages(mcp_as: McpAs) -> None:
    alice = mcp_as("alice")
    task = structured(alice("add_task", title="Plan"))
    structured(alice("update_task", task_id=task["id"], priority="high"))
    structured(alice("complete_task", task_id=task["id"]))

    first = structured(alice("task_history", task_id=task["id"], limit=2))
    rest = structured(alice("task_history", task_id=task["id"], cursor=first["next_cursor"]))

    assert [e["action"] for e in first["items"]] == ["completed", "updated"]
    assert [e["action"] for e in rest["items"]] == ["created"]
    assert first["items"][1]["changes"] == {"priority": {"from": "none", "to": "high"}}


def test_weekly_stats_counts_the_last_seven_local_days(mcp_as: McpAs) -> None:
    alice = mcp_as("alice")
    task = structured(alice("add_task", title="Stretch"))
    structured(alice("add_task", title="Run"))
    structured(alice("complete_task", task_id=task["id"]))

    week = structured(alice("weekly_stats", tz="Europe/Paris"))

    assert week["tz"] == "Europe/Paris"
    assert (week["created"], week["completed"], week["open"]) == (2, 1, 1)
    assert len(week["days"]) == 7
    assert week["days"][-1]["date"] == week["to"]
    assert "from" in week
    tool_error(alice("weekly_stats", tz="Mars/Olympus"), "validation_error")


def test_invalid_arguments_are_validation_errors_naming_the_argument(
    mcp_as: McpAs, db: Session
) -> None:
    alice = mcp_as("alice")

    blank = tool_error(alice("add_task", title="   "), "validation_error")
    unknown = tool_error(alice("add_task", title="Ok", owner="bob"), "validation_error")
    not_uuid = tool_error(alice("get_task", task_id="42"), "validation_error")
    before_year_1 = alice("add_task", title="Ok", due_at="0001-01-01T00:00:00+05:00")
    out_of_range = tool_error(before_year_1, "validation_error")

    assert blank["errors"][0]["loc"] == ["arguments", "title"]
    assert blank["errors"][0]["msg"] == "Title must not be empty."  # as REST says it
    assert unknown["errors"][0]["msg"] == "“owner” is not a field of this request."
    assert unknown["errors"][0]["loc"] == ["arguments", "owner"]
    assert not_uuid["errors"][0]["loc"] == ["arguments", "task_id"]
    assert out_of_range["errors"][0]["loc"] == ["arguments", "due_at"]
    assert db.exec(select(Task)).all() == []


def test_change_through_mcp_is_visible_through_rest_with_its_history(
    mcp_as: McpAs, client: TestClient, auth: AuthFactory
) -> None:
    alice = mcp_as("alice")
    task = structured(alice("add_task", title="Ship it"))
    done = structured(alice("complete_task", task_id=task["id"]))

    response = client.get(f"/api/alice/tasks/{task['id']}", headers=auth("alice"))
    entries = client.get(f"/api/alice/tasks/{task['id']}/history", headers=auth("alice"))

    assert response.status_code == 200
    assert response.json() == done
    assert response.headers["etag"] == '"2"'
    assert entries.status_code == 200
    newest = entries.json()["items"][0]
    assert newest["action"] == "completed"
    assert newest["changes"]["completed"] == {"from": False, "to": True}


def test_list_changes_syncs_what_changed_since_its_token(mcp_as: McpAs) -> None:
    alice = mcp_as("alice")
    kept = structured(alice("add_task", title="Kept"))
    gone = structured(alice("add_task", title="Gone"))
    start = structured(alice("list_changes"))
    structured(alice("delete_task", task_id=gone["id"]))

    since = structured(alice("list_changes", since=start["next_since"], limit=10))

    assert [(c["id"], c["op"]) for c in start["changes"]] == [
        (kept["id"], "upsert"),
        (gone["id"], "upsert"),
    ]
    assert start["changes"][0]["data"] == kept
    assert [(c["id"], c["op"], c["data"]) for c in since["changes"]] == [
        (gone["id"], "delete", None)
    ]
    assert since["has_more"] is False
    tool_error(alice("list_changes", since="tampered"), "validation_error")
