"""Webhooks: management, Standard Webhooks deliveries from the outbox, retries, refusals,
and the worker (several at once, killed, stopped)."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlmodel import Session
from standardwebhooks import Webhook

from backend.config import Settings
from backend.deliveries.sender import RETRY_DELAYS, is_public
from backend.main import create_app
from backend.worker import LEASE_MARGIN_SECONDS, Worker
from tests.conftest import SECRET, AuthFactory, assert_invalid, assert_problem
from tests.live import Receiver, serving

ALLOWED = ["127.0.0.1"]


@pytest.fixture(scope="module")
def hook_settings(settings: Settings) -> Settings:
    """The suite's settings, with the local receiver allowed and a short timeout."""
    return settings.model_copy(
        update={"webhook_allowed_hosts": ALLOWED, "webhook_timeout_seconds": 1.0}
    )


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.close()


@pytest.fixture(scope="module")
def hook_app(hook_settings: Settings) -> FastAPI:
    return create_app(hook_settings)


@pytest.fixture
def api(hook_app: FastAPI, db: Session) -> Iterator[TestClient]:
    hook_app.state.known_users.clear()
    with TestClient(hook_app) as client:
        yield client


def deliver(settings: Settings, *, later: float = 0) -> int:
    """One worker's pass over what is due `later` seconds from now; how many attempts."""

    async def run() -> int:
        worker = Worker(settings)
        try:
            return await worker.deliver_due(now=datetime.now(UTC) + timedelta(seconds=later))
        finally:
            await worker.close()

    return asyncio.run(run())


def make_hook(api: TestClient, auth: AuthFactory, url: str, **fields: Any) -> dict[str, Any]:
    response = api.post("/api/alice/webhooks", json={"url": url, **fields}, headers=auth())
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def deliveries(api: TestClient, auth: AuthFactory, hook: dict[str, Any]) -> list[dict[str, Any]]:
    response = api.get(f"/api/alice/webhooks/{hook['id']}/deliveries", headers=auth())
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def verified(hook: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    """The body of a received request, once the standard library has verified it."""
    payload: dict[str, Any] = Webhook(hook["secret"]).verify(request["body"], request["headers"])
    return payload


# Management ---------------------------------------------------------------------------


def test_create_webhook_shows_its_secret_once(api: TestClient, auth: AuthFactory) -> None:
    created = make_hook(api, auth, "https://hooks.example.com/todo", events=["task.*"])

    listed = api.get("/api/alice/webhooks", headers=auth()).json()["items"]
    fetched = api.get(f"/api/alice/webhooks/{created['id']}", headers=auth()).json()
    assert created["secret"].startswith("whsec_")
    assert len(Webhook(created["secret"])._whsecret) == 32
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


# Failures and retries -----------------------------------------------------------------


def test_receiver_error_is_retried_with_the_same_id(
    api: TestClient, auth: AuthFactory, hook_settings: Settings, receiver: Receiver
) -> None:
    receiver.answers = [500, 200]
    hook = make_hook(api, auth, receiver.url)
    api.post("/api/alice/tasks", json={"title": "Retried"}, headers=auth())

    deliver(hook_settings)
    [failed] = deliveries(api, auth, hook)
    retry_in = datetime.fromisoformat(failed["next_attempt_at"]) - datetime.now(UTC)
    assert deliver(hook_settings) == 0  # not due yet
    deliver(hook_settings, later=RETRY_DELAYS[0] * 1.3)

    [delivered] = deliveries(api, auth, hook)
    assert failed["status"] == "pending"
    assert failed["last_status"] == 500
    assert failed["last_error"] == "The receiver answered 500."
    assert len(failed["last_response"]) == 1024
    assert timedelta(seconds=3) < retry_in < timedelta(seconds=6.5)
    assert delivered["status"] == "delivered"
    assert delivered["attempts"] == 2
    assert receiver.ids() == [delivered["id"]] * 2
    assert verified(hook, receiver.requests[1])["type"] == "task.created"


def test_every_retry_failing_disables_the_webhook(
    api: TestClient, auth: AuthFactory, hook_settings: Settings, receiver: Receiver
) -> None:
    receiver.answers = [503]
    hook = make_hook(api, auth, receiver.url)
    api.post("/api/alice/tasks", json={"title": "Doomed"}, headers=auth())

    for delay in (0, *RETRY_DELAYS):  # each retry is due `delay` after the (real) attempt
        assert deliver(hook_settings, later=delay * 1.3) == 1

    [delivery] = deliveries(api, auth, hook)
    disabled = api.get(f"/api/alice/webhooks/{hook['id']}", headers=auth()).json()
    api.post("/api/alice/tasks", json={"title": "Not queued"}, headers=auth())
    assert delivery["status"] == "failed"
    assert delivery["attempts"] == len(RETRY_DELAYS) + 1
    assert disabled["enabled"] is False
    assert disabled["disabled_reason"].startswith("8 attempts over a day failed")
    assert len(deliveries(api, auth, hook)) == 1  # a disabled webhook gets nothing new
    assert len(receiver.requests) == 8


def test_gone_disables_the_webhook_at_once_and_enabling_resumes(
    api: TestClient, auth: AuthFactory, hook_settings: Settings, receiver: Receiver
) -> None:
    receiver.answers = [410, 200]
    hook = make_hook(api, auth, receiver.url)
    api.post("/api/alice/tasks", json={"title": "Gone"}, headers=auth())

    deliver(hook_settings)
    disabled = api.get(f"/api/alice/webhooks/{hook['id']}", headers=auth()).json()
    enabled = api.patch(
        f"/api/alice/webhooks/{hook['id']}", json={"enabled": True}, headers=auth()
    ).json()
    api.post("/api/alice/tasks", json={"title": "Back"}, headers=auth())
    deliver(hook_settings)

    assert disabled["enabled"] is False
    assert disabled["disabled_reason"] == "The receiver answered 410 Gone."
    assert enabled["enabled"] is True
    assert enabled["disabled_reason"] is None
    assert [d["status"] for d in deliveries(api, auth, hook)] == ["delivered", "failed"]


def test_slow_receiver_times_out(
    api: TestClient, auth: AuthFactory, hook_settings: Settings, receiver: Receiver
) -> None:
    receiver.delay = 2.5
    hook = make_hook(api, auth, receiver.url)
    api.post("/api/alice/tasks", json={"title": "Slow"}, headers=auth())

    started = time.monotonic()
    deliver(hook_settings)

    [delivery] = deliveries(api, auth, hook)
    assert time.monotonic() - started < 2.4
    assert delivery["status"] == "pending"
    assert delivery["last_status"] is None
    assert delivery["last_error"] == "No answer within 1 s."


def test_redirect_is_not_followed(
    api: TestClient, auth: AuthFactory, hook_settings: Settings, receiver: Receiver
) -> None:
    receiver.answers = [307]
    hook = make_hook(api, auth, receiver.url)
    api.post("/api/alice/tasks", json={"title": "Moved"}, headers=auth())

    deliver(hook_settings)

    [delivery] = deliveries(api, auth, hook)
    assert [request["path"] for request in receiver.requests] == ["/hook"]
    assert delivery["status"] == "pending"
    assert delivery["last_status"] == 307
    assert delivery["last_error"] == "Redirects are not followed."


def test_receiver_down_is_retried(
    api: TestClient, auth: AuthFactory, hook_settings: Settings, receiver: Receiver
) -> None:
    url = receiver.url
    receiver.close()
    hook = make_hook(api, auth, url)
    api.post("/api/alice/tasks", json={"title": "Nobody home"}, headers=auth())

    deliver(hook_settings)

    [delivery] = deliveries(api, auth, hook)
    assert delivery["status"] == "pending"
    assert delivery["last_status"] is None
    assert delivery["last_error"] == "The request failed: ConnectError."


def test_loopback_name_is_refused_at_delivery_unless_allowed(
    client: TestClient, auth: AuthFactory, settings: Settings, receiver: Receiver
) -> None:
    hook = make_hook(client, auth, f"https://localhost:{receiver.port}/hook")
    client.post("/api/alice/tasks", json={"title": "Inside"}, headers=auth())

    deliver(settings)  # nothing allowed

    [delivery] = deliveries(client, auth, hook)
    assert receiver.requests == []
    assert delivery["last_error"] == "localhost resolves to an address that is not public."


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.0.0.1",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.100.100.200",
        "0.0.0.0",  # noqa: S104
        "224.0.0.1",
        "::1",
        "fe80::1",
        "fd00:ec2::254",
        "::ffff:10.0.0.1",
        "ff02::1",
    ],
)
def test_address_inside_the_network_is_not_public(address: str) -> None:
    assert not is_public(ip_address(address))


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"])
def test_address_on_the_internet_is_public(address: str) -> None:
    assert is_public(ip_address(address))


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


# The worker ---------------------------------------------------------------------------


def test_two_workers_never_deliver_one_event_twice(
    api: TestClient, auth: AuthFactory, hook_settings: Settings, receiver: Receiver
) -> None:
    receiver.delay = 0.01
    for n in range(4):
        make_hook(api, auth, f"{receiver.url}?{n}")
    for n in range(15):
        api.post("/api/alice/tasks", json={"title": f"Task {n}"}, headers=auth())

    async def both() -> list[int]:
        workers = [Worker(hook_settings), Worker(hook_settings)]
        try:
            return await asyncio.gather(*(worker.deliver_due() for worker in workers))
        finally:
            for worker in workers:
                await worker.close()

    attempts = asyncio.run(both())

    sent = [(r["path"], r["headers"]["webhook-id"]) for r in receiver.requests]
    assert sum(attempts) == 60
    assert len(sent) == 60
    assert len(set(sent)) == 60
    for n in range(4):
        titles = [
            json.loads(r["body"])["data"]["title"]
            for r in receiver.requests
            if r["path"] == f"/hook?{n}"
        ]
        assert titles == [f"Task {i}" for i in range(15)]


def _worker_process(settings: Settings) -> subprocess.Popen[bytes]:
    env = os.environ | {
        "DATABASE_URL": settings.database_url,
        "JWT_SECRET": SECRET,
        "WEBHOOK_ALLOWED_HOSTS": ",".join(ALLOWED),
        "WEBHOOK_TIMEOUT_SECONDS": str(settings.webhook_timeout_seconds),
        "WORKER_POLL_SECONDS": "0.1",
        "LOG_FORMAT": "json",
    }
    command = [sys.executable, "-c", "from backend.cli import app; app()", "worker"]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)  # noqa: S603


def test_worker_killed_mid_delivery_leaves_it_to_the_next_with_the_same_id(
    api: TestClient, auth: AuthFactory, hook_settings: Settings, receiver: Receiver
) -> None:
    receiver.delay = 0.8
    hook = make_hook(api, auth, receiver.url)
    api.post("/api/alice/tasks", json={"title": "Interrupted"}, headers=auth())
    worker = _worker_process(hook_settings)
    try:
        assert receiver.arrived.wait(20)
        worker.kill()
    finally:
        worker.wait(10)
    receiver.delay = 0

    assert deliver(hook_settings) == 0  # its lease still holds
    deliver(hook_settings, later=hook_settings.webhook_timeout_seconds + LEASE_MARGIN_SECONDS)

    [delivery] = deliveries(api, auth, hook)
    assert receiver.ids() == [delivery["id"]] * 2
    assert delivery["status"] == "delivered"
    assert delivery["attempts"] == 2


def test_worker_finishes_the_delivery_in_flight_on_sigterm(
    api: TestClient, auth: AuthFactory, hook_settings: Settings, receiver: Receiver
) -> None:
    receiver.delay = 0.8
    hook = make_hook(api, auth, receiver.url)
    api.post("/api/alice/tasks", json={"title": "Finished"}, headers=auth())
    worker = _worker_process(hook_settings)
    try:
        assert receiver.arrived.wait(20)
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(10)
    finally:
        worker.kill()

    [delivery] = deliveries(api, auth, hook)
    assert code == 0
    assert delivery["status"] == "delivered"
    assert delivery["attempts"] == 1


def test_serve_with_worker_delivers_at_the_commit(
    hook_settings: Settings, auth: AuthFactory, db: Session, receiver: Receiver
) -> None:
    app = create_app(hook_settings.model_copy(update={"run_worker": True}))
    with serving(app) as base, TestClient(app, base_url=base) as live:
        hook = make_hook(live, auth, receiver.url)
        started = time.monotonic()
        live.post("/api/alice/tasks", json={"title": "Live"}, headers=auth())
        assert receiver.arrived.wait(5)
        waited = time.monotonic() - started

    assert verified(hook, receiver.requests[0])["data"]["title"] == "Live"
    if hook_settings.is_sqlite:  # woken by the commit, not by the poll
        assert waited < 0.9
