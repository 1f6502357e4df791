"""The worker: several at once, killed mid-delivery, stopped by SIGTERM, inside the
server; pruning."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlmodel import Session

from backend.config import Settings
from backend.dispatch import service as dispatch
from backend.main import create_app
from backend.worker import LEASE_MARGIN_SECONDS, Worker
from tests.conftest import SECRET, AuthFactory
from tests.live import Receiver, serving
from tests.webhook_client import ALLOWED, deliver, deliveries, make_hook, verified

# The worker ---------------------------------------------------------------------------


def test_worker_prunes_finished_deliveries_past_retention_only(
    api: TestClient, auth: AuthFactory, db: Session, hook_settings: Settings, receiver: Receiver
) -> None:
    hook = make_hook(api, auth, receiver.url)
    for title in ("old", "recent"):
        api.post("/api/alice/tasks", json={"title": title}, headers=auth())
    deliver(hook_settings)
    api.post("/api/alice/tasks", json={"title": "pending, however old"}, headers=auth())
    long_ago = datetime.now(UTC) - timedelta(days=hook_settings.webhook_delivery_retention_days + 1)
    for status in ("delivered", "pending"):
        db.exec(  # type: ignore[call-overload]
            text(
                "UPDATE webhook_deliveries SET created_at = :at WHERE id = ("
                "SELECT id FROM webhook_deliveries WHERE status = :status ORDER BY seq LIMIT 1)"
            ),
            params={"at": long_ago, "status": status},
        )
    db.commit()

    async def prune() -> int:
        worker = Worker(hook_settings)
        try:
            return (await worker.prune()).deliveries
        finally:
            await worker.close()

    assert asyncio.run(prune()) == 1
    left = [(d["type"], d["status"]) for d in deliveries(api, auth, hook)]
    assert sorted(left) == [("task.created", "delivered"), ("task.created", "pending")]


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


def test_a_result_recorded_after_the_lease_ran_out_is_dropped(
    api: TestClient, auth: AuthFactory, hook_settings: Settings, receiver: Receiver
) -> None:
    hook = make_hook(api, auth, receiver.url)
    api.post("/api/alice/tasks", json={"title": "Slow worker"}, headers=auth())

    async def race() -> tuple[bool, bool]:
        slow, fast = Worker(hook_settings), Worker(hook_settings)
        try:
            now = datetime.now(UTC)
            [late] = await slow.claim(limit=1, now=now)
            past_lease = now + timedelta(seconds=hook_settings.webhook_timeout_seconds + 60)
            [taken] = await fast.claim(limit=1, now=past_lease)
            await fast.attempt(taken)
            async with slow.engine.connect() as connection:
                result = dispatch.Result("failed", None, 500, "late", None, disable="late")
                dropped = not await dispatch.record(connection, late, result, now)
            return dropped, taken.id == late.id and taken.attempt == 2
        finally:
            await slow.close()
            await fast.close()

    assert asyncio.run(race()) == (True, True)
    [delivery] = deliveries(api, auth, hook)
    webhook = api.get(f"/api/alice/webhooks/{hook['id']}", headers=auth()).json()
    assert delivery["status"] == "delivered"
    assert delivery["attempts"] == 2
    assert webhook["enabled"] is True


def test_a_redelivery_waits_for_the_delivery_in_flight(
    api: TestClient, auth: AuthFactory, hook_settings: Settings, receiver: Receiver
) -> None:
    hook = make_hook(api, auth, receiver.url)
    api.post("/api/alice/tasks", json={"title": "first"}, headers=auth())
    deliver(hook_settings)
    api.post("/api/alice/tasks", json={"title": "second"}, headers=auth())
    first = deliveries(api, auth, hook)[-1]

    async def claims() -> tuple[int, int]:
        worker = Worker(hook_settings)
        try:
            [in_flight] = await worker.claim(limit=10)  # "second", leased
            api.post(
                f"/api/alice/webhooks/{hook['id']}/deliveries/{first['id']}/redeliver",
                headers=auth(),
            )
            while_in_flight = len(await worker.claim(limit=10))
            await worker.attempt(in_flight)
            return while_in_flight, len(await worker.claim(limit=10))
        finally:
            await worker.close()

    assert asyncio.run(claims()) == (0, 1)
