"""Recurring tasks: RFC 5545 rules on the wall clock of a zone; completing one records
that occurrence and moves the same task on to the next (decision 35)."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from backend.config import Settings
from tests.conftest import AuthFactory, Factory, assert_invalid
from tests.live import Receiver
from tests.webhook_client import deliver, make_hook, verified

WEEKLY_PARIS = {"rule": "FREQ=WEEKLY;BYDAY=MO", "tz": "Europe/Paris"}


def entries_of(client: TestClient, auth: AuthFactory, task_id: str) -> list[dict[str, Any]]:
    """The task's history, newest first."""
    response = client.get(f"/api/alice/history?task_id={task_id}", headers=auth())
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def complete(client: TestClient, auth: AuthFactory, task: dict[str, Any], **headers: str) -> Any:
    response = client.patch(f"/api/alice/tasks/{task['id']}/complete", headers=auth() | headers)
    assert response.status_code == 200, response.text
    return response


def test_create_recurring_task_shows_its_rule(
    client: TestClient, auth: AuthFactory, make_task: Factory
) -> None:
    task = make_task(due_at="2027-01-04T08:00:00Z", recurrence=WEEKLY_PARIS)

    fetched = client.get(f"/api/alice/tasks/{task['id']}", headers=auth()).json()
    assert task["recurrence"] == WEEKLY_PARIS | {"from": "due"}
    assert fetched["recurrence"] == task["recurrence"]  # where its series stands is not shown


def test_complete_recurring_task_moves_it_to_its_next_occurrence(
    client: TestClient, auth: AuthFactory, make_task: Factory
) -> None:
    task = make_task(due_at="2027-01-04T08:00:00Z", recurrence=WEEKLY_PARIS)

    moved = complete(client, auth, task).json()

    assert moved["id"] == task["id"]
    assert moved["completed"] is False
    assert moved["completed_at"] is None
    assert moved["due_at"] == "2027-01-11T08:00:00Z"
    assert moved["version"] == task["version"] + 2
    entries = entries_of(client, auth, task["id"])
    assert [entry["action"] for entry in entries][:2] == ["rescheduled", "completed"]
    assert entries[1]["changes"]["occurrence_due_at"] == "2027-01-04T08:00:00Z"
    assert entries[0]["changes"]["due_at"] == {
        "from": "2027-01-04T08:00:00Z",
        "to": "2027-01-11T08:00:00Z",
    }
    tasks = client.get("/api/alice/tasks", headers=auth()).json()["items"]
    assert len(tasks) == 1  # the same task, never another


def test_weekly_completions_for_a_year_keep_the_local_hour(
    client: TestClient, auth: AuthFactory, make_task: Factory
) -> None:
    task = make_task(due_at="2027-01-04T08:00:00Z", recurrence=WEEKLY_PARIS)
    seen = set()
    for _ in range(52):
        task = complete(client, auth, task).json()
        seen.add(task["due_at"][11:16])

    assert task["due_at"] == "2028-01-03T08:00:00Z"
    assert seen == {"08:00", "07:00"}  # 09:00 in Paris, in winter then in summer


def test_count_three_completes_for_good_on_the_third(
    client: TestClient, auth: AuthFactory, make_task: Factory
) -> None:
    recurrence = {"rule": "FREQ=DAILY;COUNT=3", "tz": "America/New_York"}
    task = make_task(due_at="2027-01-04T14:00:00Z", recurrence=recurrence)

    first = complete(client, auth, task).json()
    second = complete(client, auth, first).json()
    third = complete(client, auth, second).json()

    assert [first["due_at"], second["due_at"]] == ["2027-01-05T14:00:00Z", "2027-01-06T14:00:00Z"]
    assert (first["completed"], second["completed"], third["completed"]) == (False, False, True)
    assert third["due_at"] == second["due_at"]
    actions = [entry["action"] for entry in entries_of(client, auth, task["id"])]
    assert actions.count("completed") == 3
    assert actions.count("rescheduled") == 2


def test_retried_completion_with_an_idempotency_key_advances_once(
    client: TestClient, auth: AuthFactory, make_task: Factory
) -> None:
    task = make_task(due_at="2027-01-04T08:00:00Z", recurrence=WEEKLY_PARIS)

    first = complete(client, auth, task, **{"Idempotency-Key": "done-1"}).json()
    retried = complete(client, auth, task, **{"Idempotency-Key": "done-1"}).json()

    assert retried == first
    fetched = client.get(f"/api/alice/tasks/{task['id']}", headers=auth()).json()
    assert fetched["due_at"] == "2027-01-11T08:00:00Z"


def test_retried_completion_with_the_same_if_match_advances_once(
    client: TestClient, auth: AuthFactory, make_task: Factory
) -> None:
    task = make_task(due_at="2027-01-04T08:00:00Z", recurrence=WEEKLY_PARIS)
    etag = f'"{task["version"]}"'

    complete(client, auth, task, **{"If-Match": etag})
    retried = client.patch(
        f"/api/alice/tasks/{task['id']}/complete", headers=auth() | {"If-Match": etag}
    )

    assert retried.status_code == 412
    fetched = client.get(f"/api/alice/tasks/{task['id']}", headers=auth()).json()
    assert fetched["due_at"] == "2027-01-11T08:00:00Z"


def test_patch_completed_and_put_completed_advance_as_complete_does(
    client: TestClient, auth: AuthFactory, make_task: Factory
) -> None:
    task = make_task(due_at="2027-01-04T08:00:00Z", recurrence=WEEKLY_PARIS)
    url = f"/api/alice/tasks/{task['id']}"

    patched = client.patch(url, json={"completed": True}, headers=auth()).json()
    replaced = client.put(
        url,
        json={"title": "A task", "due_at": patched["due_at"], "recurrence": WEEKLY_PARIS}
        | {"completed": True},
        headers=auth(),
    ).json()

    assert patched["due_at"] == "2027-01-11T08:00:00Z"
    assert (replaced["due_at"], replaced["completed"]) == ("2027-01-18T08:00:00Z", False)


def test_last_day_of_the_month_and_the_31st(
    client: TestClient, auth: AuthFactory, make_task: Factory
) -> None:
    last = make_task(
        due_at="2027-01-31T17:00:00Z",
        recurrence={"rule": "FREQ=MONTHLY;BYMONTHDAY=-1", "tz": "UTC"},
    )
    the_31st = make_task(
        due_at="2027-01-31T17:00:00Z", recurrence={"rule": "FREQ=MONTHLY", "tz": "UTC"}
    )

    moved = complete(client, auth, last).json()
    skipped = complete(client, auth, the_31st).json()

    assert moved["due_at"] == "2027-02-28T17:00:00Z"
    assert skipped["due_at"] == "2027-03-31T17:00:00Z"  # RFC 5545: February has no 31st


def test_a_time_the_spring_change_skips_happens_when_the_clocks_jump(
    client: TestClient, auth: AuthFactory, make_task: Factory
) -> None:
    # 02:30 does not exist in Paris on 28 March 2027: the clocks go from 02:00 to 03:00.
    recurrence = {"rule": "FREQ=DAILY", "tz": "Europe/Paris"}
    task = make_task(due_at="2027-03-27T01:30:00Z", recurrence=recurrence)

    gap = complete(client, auth, task).json()
    after = complete(client, auth, gap).json()

    assert gap["due_at"] == "2027-03-28T01:00:00Z"  # 03:00 CEST, the first valid instant
    assert after["due_at"] == "2027-03-29T00:30:00Z"  # 02:30 CEST again


def test_an_ambiguous_autumn_time_takes_the_first(
    client: TestClient, auth: AuthFactory, make_task: Factory
) -> None:
    # 02:30 happens twice in Paris on 31 October 2027: at 00:30 and at 01:30 UTC.
    recurrence = {"rule": "FREQ=DAILY", "tz": "Europe/Paris"}
    task = make_task(due_at="2027-10-30T00:30:00Z", recurrence=recurrence)

    moved = complete(client, auth, task).json()

    assert moved["due_at"] == "2027-10-31T00:30:00Z"


def test_from_completion_counts_from_the_completion_day(
    client: TestClient, auth: AuthFactory, make_task: Factory
) -> None:
    recurrence = {"rule": "FREQ=DAILY;INTERVAL=3", "tz": "UTC", "from": "completion"}
    task = make_task(due_at="2020-01-01T18:00:00Z", recurrence=recurrence)

    moved = complete(client, auth, task).json()

    today = datetime.now(UTC).date()
    assert moved["due_at"] == f"{today + timedelta(days=3)}T18:00:00Z"
    assert moved["recurrence"]["from"] == "completion"


def test_changing_due_at_or_the_rule_changes_the_same_task(
    client: TestClient, auth: AuthFactory, make_task: Factory
) -> None:
    recurrence = {"rule": "FREQ=WEEKLY;COUNT=2", "tz": "UTC"}
    task = make_task(due_at="2027-01-04T08:00:00Z", recurrence=recurrence)
    url = f"/api/alice/tasks/{task['id']}"

    moved = client.patch(url, json={"due_at": "2027-01-06T10:00:00Z"}, headers=auth()).json()
    second = complete(client, auth, moved).json()
    last = complete(client, auth, second).json()

    assert second["due_at"] == "2027-01-13T10:00:00Z"  # the series goes on from the new time
    assert last["completed"] is True  # and its count was kept: two occurrences in all
    rule = {"rule": "FREQ=DAILY", "tz": "UTC"}
    reopened = client.patch(url, json={"completed": False, "recurrence": rule}, headers=auth())
    assert reopened.json()["recurrence"] == rule | {"from": "due"}
    assert len(client.get("/api/alice/tasks", headers=auth()).json()["items"]) == 1


def test_recurrence_set_to_null_stops_it(
    client: TestClient, auth: AuthFactory, make_task: Factory
) -> None:
    task = make_task(due_at="2027-01-04T08:00:00Z", recurrence=WEEKLY_PARIS)
    url = f"/api/alice/tasks/{task['id']}"

    client.patch(url, json={"recurrence": None}, headers=auth())
    done = complete(client, auth, task).json()

    assert (done["recurrence"], done["completed"]) == (None, True)


@pytest.mark.parametrize(
    ("recurrence", "field"),
    [
        ({"rule": "FREQ=HOURLY", "tz": "UTC"}, "rule"),
        ({"rule": "FREQ=DAILY;BYSETPOS=1", "tz": "UTC"}, "rule"),
        ({"rule": "FREQ=WEEKLY;BYDAY=-1FR", "tz": "UTC"}, "rule"),
        ({"rule": "FREQ=DAILY;COUNT=2;UNTIL=20280101T000000Z", "tz": "UTC"}, "rule"),
        ({"rule": "FREQ=DAILY;UNTIL=20280101", "tz": "UTC"}, "rule"),
        ({"rule": "FREQ=DAILY;UNTIL=20200101T000000Z", "tz": "UTC"}, "rule"),
        ({"rule": "FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30", "tz": "UTC"}, "rule"),
        ({"rule": "FREQ=WEEKLY;BYMONTH=4,6;BYMONTHDAY=31,-31", "tz": "UTC"}, "rule"),
        ({"rule": "FREQ=MONTHLY;INTERVAL=3;BYMONTH=1", "tz": "UTC"}, "rule"),
        ({"rule": "FREQ=YEARLY;INTERVAL=29", "tz": "UTC"}, "rule"),
        ({"rule": "FREQ=DAILY;UNTIL=20270230T000000Z", "tz": "UTC"}, "rule"),
        ({"rule": "FREQ=DAILY", "tz": "Mars/Olympus"}, "tz"),
        ({"rule": "FREQ=DAILY", "tz": "../../etc/passwd"}, "tz"),
        ({"rule": "FREQ=DAILY", "tz": "UTC", "from": "start"}, "from"),
        ({"rule": "FREQ=DAILY", "tz": "UTC", "anchor": "2027-01-01T00:00:00"}, "anchor"),
    ],
)
def test_a_rule_outside_the_subset_is_422_naming_the_field(
    client: TestClient, auth: AuthFactory, recurrence: dict[str, str], field: str
) -> None:
    body = {"title": "x", "due_at": "2019-06-01T08:00:00Z", "recurrence": recurrence}

    response = client.post("/api/alice/tasks", json=body, headers=auth())

    errors = assert_invalid(response)
    assert any(error["loc"][-1] == field for error in errors), errors


@pytest.mark.parametrize("due_at", ["0999-06-01T08:00:00Z", "9950-06-01T08:00:00Z"])
def test_a_recurring_tasks_due_time_falls_in_1900_to_9900(
    client: TestClient, auth: AuthFactory, due_at: str
) -> None:
    body = {
        "title": "x",
        "due_at": due_at,
        "recurrence": {"rule": "FREQ=DAILY", "tz": "Asia/Tokyo"},
    }

    response = client.post("/api/alice/tasks", json=body, headers=auth())

    [error] = assert_invalid(response, "due_at")
    assert error["type"] == "recurrence_out_of_range"


def test_a_recurrence_needs_a_due_time(
    client: TestClient, auth: AuthFactory, make_task: Factory
) -> None:
    response = client.post(
        "/api/alice/tasks", json={"title": "x", "recurrence": WEEKLY_PARIS}, headers=auth()
    )
    task = make_task(due_at="2027-01-04T08:00:00Z", recurrence=WEEKLY_PARIS)
    cleared = client.patch(f"/api/alice/tasks/{task['id']}", json={"due_at": None}, headers=auth())

    [error] = assert_invalid(response, "due_at")
    assert error["type"] == "recurrence_needs_due_at"
    assert_invalid(cleared, "due_at")


def test_occurrences_preview_the_series_on_the_wall_clock(
    client: TestClient, auth: AuthFactory, make_task: Factory
) -> None:
    task = make_task(
        due_at="2027-03-22T08:00:00Z", recurrence=WEEKLY_PARIS | {"rule": "FREQ=WEEKLY;COUNT=4"}
    )
    url = f"/api/alice/tasks/{task['id']}/occurrences"

    page = client.get(url, headers=auth()).json()
    first_two = client.get(f"{url}?limit=2", headers=auth()).json()["items"]

    assert page["next_cursor"] is None
    assert [item["at"] for item in page["items"]] == [
        "2027-03-22T08:00:00Z",
        "2027-03-29T07:00:00Z",  # summer time: 09:00 is 07:00 UTC
        "2027-04-05T07:00:00Z",
        "2027-04-12T07:00:00Z",
    ]
    assert {item["local"] for item in page["items"]} == {
        "2027-03-22T09:00:00",
        "2027-03-29T09:00:00",
        "2027-04-05T09:00:00",
        "2027-04-12T09:00:00",
    }
    assert first_two == page["items"][:2]


@pytest.mark.parametrize("limit", ["0", "51", "ten"])
def test_occurrences_limit_outside_1_to_50_is_422(
    client: TestClient, auth: AuthFactory, make_task: Factory, limit: str
) -> None:
    task = make_task(due_at="2027-01-04T08:00:00Z", recurrence=WEEKLY_PARIS)

    response = client.get(
        f"/api/alice/tasks/{task['id']}/occurrences?limit={limit}", headers=auth()
    )

    assert_invalid(response, "limit")


def test_occurrences_of_a_task_that_does_not_recur_is_an_empty_page(
    client: TestClient, auth: AuthFactory, make_task: Factory
) -> None:
    task = make_task(due_at="2027-01-04T08:00:00Z")

    response = client.get(f"/api/alice/tasks/{task['id']}/occurrences", headers=auth())

    assert response.json() == {"items": [], "next_cursor": None}


def test_weekly_statistics_count_every_completed_occurrence(
    client: TestClient, auth: AuthFactory, make_task: Factory
) -> None:
    task = make_task(due_at="2027-01-04T08:00:00Z", recurrence={"rule": "FREQ=DAILY", "tz": "UTC"})
    for _ in range(3):
        task = complete(client, auth, task).json()

    stats = client.get("/api/alice/stats/weekly?tz=UTC", headers=auth()).json()

    assert stats["completed"] == 3
    assert stats["open"] == 1


def test_a_recurring_completion_tells_webhooks_completed_then_rescheduled(
    api: TestClient, auth: AuthFactory, hook_settings: Settings, receiver: Receiver
) -> None:
    hook = make_hook(api, auth, receiver.url, events=["task.completed", "task.rescheduled"])
    body = {"title": "Plants", "due_at": "2027-01-04T08:00:00Z", "recurrence": WEEKLY_PARIS}
    task = api.post("/api/alice/tasks", json=body, headers=auth()).json()

    api.patch(f"/api/alice/tasks/{task['id']}/complete", headers=auth())
    deliver(hook_settings)

    told = [verified(hook, request) for request in receiver.requests]
    assert [(b["type"], b["data"]["completed"], b["data"]["due_at"]) for b in told] == [
        ("task.completed", True, "2027-01-04T08:00:00Z"),
        ("task.rescheduled", False, "2027-01-11T08:00:00Z"),
    ]
    assert [b["data"]["version"] for b in told] == [2, 3]
    [change] = api.get("/api/alice/changes", headers=auth()).json()["changes"]
    assert (change["version"], change["data"]["due_at"]) == (3, "2027-01-11T08:00:00Z")


def test_a_recurring_subtask_moves_on_when_its_parent_completes(
    client: TestClient, auth: AuthFactory, make_task: Factory
) -> None:
    parent = make_task(title="Weekly review")
    child = make_task(
        title="Water the plants",
        parent_id=parent["id"],
        due_at="2027-01-04T08:00:00Z",
        recurrence=WEEKLY_PARIS,
    )

    complete(client, auth, parent)

    moved = client.get(f"/api/alice/tasks/{child['id']}", headers=auth()).json()
    assert (moved["completed"], moved["due_at"]) == (False, "2027-01-11T08:00:00Z")
    actions = [entry["action"] for entry in entries_of(client, auth, child["id"])]
    assert actions[:2] == ["rescheduled", "completed"]
