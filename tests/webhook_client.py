"""Webhook test support: a hook-enabled app and client, a receiver, one worker's pass,
and helpers that go through the API (a pytest plugin: `tests/conftest.py`)."""

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlmodel import Session
from standardwebhooks import Webhook

from backend.config import Settings
from backend.main import create_app
from backend.worker import Worker
from tests.conftest import AuthFactory
from tests.live import Receiver

ALLOWED = ["127.0.0.1"]


@pytest.fixture(scope="session")
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


@pytest.fixture(scope="session")
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
