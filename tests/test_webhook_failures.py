"""Webhook deliveries that fail: retries with the same id, disabling, timeouts,
redirects, and addresses inside the network."""

import time
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address

import pytest
from fastapi.testclient import TestClient

from backend.config import Settings
from backend.dispatch.sender import RETRY_DELAYS, is_public
from tests.conftest import AuthFactory
from tests.live import Receiver
from tests.webhook_client import deliver, deliveries, make_hook, verified

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
        "64:ff9b::a9fe:a9fe",  # NAT64 of the metadata address
        "64:ff9b:1::a00:1",
        "2002:a9fe:a9fe::1",  # 6to4 of it
        "::7f00:1",  # IPv4-compatible loopback
        "fec0::1",  # site-local
        "240.0.0.1",  # reserved
    ],
)
def test_address_inside_the_network_is_not_public(address: str) -> None:
    assert not is_public(ip_address(address))


@pytest.mark.parametrize(
    "address",
    [
        "93.184.216.34",
        "2606:2800:220:1:248:1893:25c8:1946",
        "64:ff9b::5db8:d822",
        "2002:5db8:d822::1",
    ],
)
def test_address_on_the_internet_is_public(address: str) -> None:
    assert is_public(ip_address(address))


def test_an_endless_answer_is_read_no_further_than_64_kib(
    api: TestClient, auth: AuthFactory, hook_settings: Settings, receiver: Receiver
) -> None:
    receiver.endless = True
    hook = make_hook(api, auth, receiver.url)
    api.post("/api/alice/tasks", json={"title": "Chatty receiver"}, headers=auth())

    deliver(hook_settings)

    [delivery] = deliveries(api, auth, hook)
    assert delivery["status"] == "delivered"
    assert delivery["last_response"] == "x" * 1024
    assert receiver.sent < 10 * 2**20  # it stopped reading long before the end


def test_an_answer_that_is_not_text_is_kept_as_text(
    api: TestClient, auth: AuthFactory, hook_settings: Settings, receiver: Receiver
) -> None:
    receiver.answers, receiver.answer = [500], b"\x1f\x8b\x00\xff binary \x00\xc3"
    hook = make_hook(api, auth, receiver.url)
    api.post("/api/alice/tasks", json={"title": "Odd answer"}, headers=auth())

    deliver(hook_settings)

    [delivery] = deliveries(api, auth, hook)
    assert delivery["status"] == "pending"
    assert delivery["last_response"] == "\x1f\ufffd\ufffd\ufffd binary \ufffd\ufffd"
    assert receiver.requests[0]["headers"]["accept-encoding"] == "identity"
