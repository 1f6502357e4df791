"""Webhooks: management, and Standard Webhooks deliveries from the outbox (the
worker's side: test_webhook_failures.py, test_worker.py)."""

import base64
import time
from datetime import datetime
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import event, text
from sqlmodel import Session

from backend.config import Settings
from tests.conftest import AuthFactory, assert_invalid, assert_problem
from tests.live import Receiver
from tests.webhook_client import deliver, deliveries, make_hook, verified

# Management ---------------------------------------------------------------------------


def test_create_webhook_shows_its_secret_once(api: TestClient, auth: AuthFactory) -> None:
    created = make_hook(api, auth, "https://hooks.example.com/todo", events=["task.*"])

    listed = api.get("/api/alice/webhooks", headers=auth()).json()["items"]
    fetched = api.get(f"/api/alice/webhooks/{created['id']}", headers=auth()).json()
    assert created["secret"].startswith("whsec_")
    assert len(base64.b64decode(created["secret"].removeprefix("whsec_"))) == 32
    assert created["url"] == "https://hooks.example.com/todo"
    assert created["events"] == ["task.*"]
    assert created["enabled"] is True
    assert [item["id"] for item in listed] == [created["id"]]
    assert "secret" not in fetched
    assert "secret" not in listed[0]
    assert fetched == {k: v for k, v in created.items() if k != "secret"}


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("http://hooks.example.com/todo", "webhook_url_not_https"),
        ("https://127.0.0.1/hook", "webhook_url_not_public"),
        ("https://10.1.2.3/hook", "webhook_url_not_public"),
        ("https://169.254.169.254/latest/meta-data", "webhook_url_not_public"),
        ("https://[::1]/hook", "webhook_url_not_public"),
        ("https://[::ffff:127.0.0.1]/hook", "webhook_url_not_public"),
        ("ftp://hooks.example.com/todo", "url_scheme"),
        ("https://ü.example.com/" + "x" * 2060, "webhook_url_too_long"),
        ("not a url", "url_parsing"),
    ],
)
def test_create_webhook_refuses_a_url_it_must_not_call(
    client: TestClient, auth: AuthFactory, url: str, error: str
) -> None:
    response = client.post("/api/alice/webhooks", json={"url": url}, headers=auth())

    [found] = assert_invalid(response, "url")
    assert found["type"] == error


def test_create_webhook_allows_plain_http_to_an_allowed_host(
    api: TestClient, auth: AuthFactory
) -> None:
    assert make_hook(api, auth, "http://127.0.0.1:9/hook")["url"] == "http://127.0.0.1:9/hook"


def test_create_webhook_past_ten_is_409(client: TestClient, auth: AuthFactory) -> None:
    for n in range(10):
        make_hook(client, auth, f"https://hooks.example.com/{n}")

    response = client.post(
        "/api/alice/webhooks", json={"url": "https://hooks.example.com/11"}, headers=auth()
    )

    assert_problem(response, 409, "conflict")


def test_update_webhook_changes_only_what_is_sent(client: TestClient, auth: AuthFactory) -> None:
    hook = make_hook(client, auth, "https://hooks.example.com/a")

    response = client.patch(
        f"/api/alice/webhooks/{hook['id']}",
        json={"events": ["task.completed", "task.completed", "category.*"]},
        headers=auth(),
    )

    assert response.status_code == 200, response.text
    assert response.json()["events"] == ["category.*", "task.completed"]
    assert response.json()["url"] == hook["url"]
    assert response.json()["version"] == 2


def test_delete_webhook_drops_its_deliveries(
    api: TestClient, auth: AuthFactory, db: Session, receiver: Receiver
) -> None:
    hook = make_hook(api, auth, receiver.url)
    api.post("/api/alice/tasks", json={"title": "Never sent"}, headers=auth())

    assert api.delete(f"/api/alice/webhooks/{hook['id']}", headers=auth()).status_code == 204

    assert db.exec(text("SELECT count(*) FROM webhook_deliveries")).one()[0] == 0  # type: ignore[call-overload]
    assert api.get(f"/api/alice/webhooks/{hook['id']}", headers=auth()).status_code == 404


# Deliveries ---------------------------------------------------------------------------


def test_delivery_verifies_with_the_standard_library(
    api: TestClient, auth: AuthFactory, hook_settings: Settings, receiver: Receiver
) -> None:
    hook = make_hook(api, auth, receiver.url)
    task = api.post("/api/alice/tasks", json={"title": "Ship it"}, headers=auth()).json()

    assert deliver(hook_settings) == 1

    [request] = receiver.requests
    payload = verified(hook, request)
    [delivery] = deliveries(api, auth, hook)
    assert payload["type"] == "task.created"
    assert payload["data"] == api.get(f"/api/alice/tasks/{task['id']}", headers=auth()).json()
    assert datetime.fromisoformat(payload["timestamp"]) == datetime.fromisoformat(
        task["created_at"]
    )
    assert request["headers"]["webhook-id"] == delivery["id"]
    assert request["headers"]["content-type"] == "application/json"
    assert abs(int(request["headers"]["webhook-timestamp"]) - time.time()) < 60
    assert delivery["status"] == "delivered"
    assert delivery["attempts"] == 1
    assert delivery["last_status"] == 200
    assert delivery["last_response"] == "received"
    assert delivery["type"] == "task.created"
    assert delivery["next_attempt_at"] is None


def test_only_a_user_with_an_enabled_webhook_writes_to_the_outbox(
    api: TestClient, auth: AuthFactory, hook_app: FastAPI, receiver: Receiver
) -> None:
    statements: list[str] = []

    def seen(_connection: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    def outbox_writes(user: str) -> int:
        statements.clear()
        api.post(f"/api/{user}/tasks", json={"title": "Counted"}, headers=auth(user))
        return sum("INSERT INTO webhook_deliveries" in s for s in statements)

    engine = hook_app.state.engine.sync_engine
    event.listen(engine, "before_cursor_execute", seen)
    try:
        make_hook(api, auth, receiver.url)
        api.post(
            "/api/bob/webhooks", json={"url": receiver.url, "enabled": False}, headers=auth("bob")
        )
        counts = outbox_writes("alice"), outbox_writes("bob"), outbox_writes("carol")
    finally:
        event.remove(engine, "before_cursor_execute", seen)

    assert counts == (1, 0, 0)


def test_deletion_delivers_the_id(
    api: TestClient, auth: AuthFactory, hook_settings: Settings, receiver: Receiver
) -> None:
    task = api.post("/api/alice/tasks", json={"title": "Gone soon"}, headers=auth()).json()
    hook = make_hook(api, auth, receiver.url)
    api.delete(f"/api/alice/tasks/{task['id']}", headers=auth())

    deliver(hook_settings)

    assert next(verified(hook, r) for r in receiver.requests)["data"] == {"id": task["id"]}
    assert verified(hook, receiver.requests[0])["type"] == "task.deleted"


def test_events_filter_delivers_only_what_is_subscribed(
    api: TestClient, auth: AuthFactory, hook_settings: Settings, receiver: Receiver
) -> None:
    hook = make_hook(api, auth, receiver.url, events=["task.completed", "category.deleted"])
    task = api.post("/api/alice/tasks", json={"title": "Filtered"}, headers=auth()).json()
    api.patch(f"/api/alice/tasks/{task['id']}", json={"title": "Renamed"}, headers=auth())
    api.patch(f"/api/alice/tasks/{task['id']}/complete", headers=auth())
    category = api.post("/api/alice/categories", json={"name": "Work"}, headers=auth()).json()
    api.delete(f"/api/alice/categories/{category['id']}", headers=auth())

    deliver(hook_settings)

    types = [verified(hook, request)["type"] for request in receiver.requests]
    assert types == ["task.completed", "category.deleted"]


def test_deliveries_keep_the_feed_order(
    api: TestClient, auth: AuthFactory, hook_settings: Settings, receiver: Receiver
) -> None:
    hook = make_hook(api, auth, receiver.url)
    task = api.post("/api/alice/tasks", json={"title": "v0"}, headers=auth()).json()
    for n in range(1, 8):
        api.patch(f"/api/alice/tasks/{task['id']}", json={"title": f"v{n}"}, headers=auth())

    deliver(hook_settings)

    titles = [verified(hook, request)["data"]["title"] for request in receiver.requests]
    assert titles == [f"v{n}" for n in range(8)]


def test_events_never_reach_another_users_webhook(
    api: TestClient, auth: AuthFactory, hook_settings: Settings, receiver: Receiver
) -> None:
    alice = make_hook(api, auth, receiver.url)
    bob_hook = api.post(
        "/api/bob/webhooks", json={"url": receiver.url + "?bob"}, headers=auth("bob")
    ).json()
    api.post("/api/alice/tasks", json={"title": "Alice's"}, headers=auth())
    api.post("/api/bob/tasks", json={"title": "Bob's"}, headers=auth("bob"))

    deliver(hook_settings)

    by_path = {r["path"]: r for r in receiver.requests}
    assert verified(alice, by_path["/hook"])["data"]["title"] == "Alice's"
    assert verified(bob_hook, by_path["/hook?bob"])["data"]["title"] == "Bob's"
    assert len(receiver.requests) == 2


def test_a_write_that_rolls_back_delivers_nothing(
    api: TestClient, auth: AuthFactory, hook_settings: Settings, receiver: Receiver
) -> None:
    task = api.post("/api/alice/tasks", json={"title": "Kept"}, headers=auth()).json()
    hook = make_hook(api, auth, receiver.url)
    stale = api.patch(
        f"/api/alice/tasks/{task['id']}",
        json={"title": "Lost"},
        headers=auth() | {"If-Match": '"9"'},
    )
    refused = api.post(
        "/api/alice/tasks",
        json={"title": "x", "category_id": "00000000-0000-7000-8000-000000000001"},
        headers=auth(),
    )

    assert stale.status_code == 412
    assert refused.status_code == 422
    assert deliver(hook_settings) == 0
    assert deliveries(api, auth, hook) == []
    assert receiver.requests == []


def test_a_category_deletion_delivers_each_detached_task(
    api: TestClient, auth: AuthFactory, hook_settings: Settings, receiver: Receiver
) -> None:
    category = api.post("/api/alice/categories", json={"name": "Home"}, headers=auth()).json()
    task = api.post(
        "/api/alice/tasks", json={"title": "Sweep", "category_id": category["id"]}, headers=auth()
    ).json()
    hook = make_hook(api, auth, receiver.url)
    api.delete(f"/api/alice/categories/{category['id']}", headers=auth())

    deliver(hook_settings)

    payloads = [verified(hook, request) for request in receiver.requests]
    assert [p["type"] for p in payloads] == ["task.updated", "category.deleted"]
    assert payloads[0]["data"]["id"] == task["id"]
    assert payloads[0]["data"]["category_id"] is None


# Secrets, pings, redeliveries ---------------------------------------------------------


def test_rotated_secret_signs_with_old_and_new(
    api: TestClient, auth: AuthFactory, hook_settings: Settings, receiver: Receiver
) -> None:
    hook = make_hook(api, auth, receiver.url)
    rotated = api.post(f"/api/alice/webhooks/{hook['id']}/rotate-secret", headers=auth())
    api.post("/api/alice/tasks", json={"title": "Signed twice"}, headers=auth())

    deliver(hook_settings)

    [request] = receiver.requests
    assert rotated.status_code == 200
    assert rotated.json()["secret"] != hook["secret"]
    assert len(request["headers"]["webhook-signature"].split(" ")) == 2
    assert verified(hook, request) == verified(rotated.json(), request)


def test_rotated_secret_stops_signing_with_the_old_after_a_day(
    api: TestClient, auth: AuthFactory, hook_settings: Settings, receiver: Receiver
) -> None:
    hook = make_hook(api, auth, receiver.url)
    rotated = api.post(f"/api/alice/webhooks/{hook['id']}/rotate-secret", headers=auth()).json()
    api.post("/api/alice/tasks", json={"title": "A day later"}, headers=auth())

    deliver(hook_settings, later=24 * 3600 + 60)

    [request] = receiver.requests
    assert len(request["headers"]["webhook-signature"].split(" ")) == 1
    assert verified(rotated, request)["type"] == "task.created"


def test_ping_then_redeliver_sends_the_same_id_again(
    api: TestClient, auth: AuthFactory, hook_settings: Settings, receiver: Receiver
) -> None:
    hook = make_hook(api, auth, receiver.url)

    ping = api.post(f"/api/alice/webhooks/{hook['id']}/ping", headers=auth())
    deliver(hook_settings)
    again = api.post(
        f"/api/alice/webhooks/{hook['id']}/deliveries/{ping.json()['id']}/redeliver",
        headers=auth(),
    )
    deliver(hook_settings)

    assert ping.status_code == 202
    assert ping.json()["status"] == "pending"
    assert again.status_code == 202
    assert again.json()["status"] == "pending"
    assert again.json()["attempts"] == 0
    assert receiver.ids() == [ping.json()["id"]] * 2
    assert verified(hook, receiver.requests[0]) == {
        "type": "webhook.ping",
        "timestamp": verified(hook, receiver.requests[0])["timestamp"],
        "data": {"webhook_id": hook["id"]},
    }
    assert deliveries(api, auth, hook)[0]["status"] == "delivered"
