"""RequestConcurrency: at most so many requests at work, the others in order of arrival, each turn
given back however its request ends."""

import asyncio
import contextlib
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import Session
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.types import Message, Receive, Scope, Send

from backend.config import Settings
from backend.errors import DatabaseUnavailable
from backend.main import create_app
from backend.middleware import (
    RequestConcurrency,
    RequestSession,
    SessionPerRequest,
    request_session,
)
from tests.conftest import AuthFactory


def test_requests_past_the_limit_wait_their_turn_in_order_of_arrival() -> None:
    async def scenario() -> tuple[list[int], int]:
        turns = RequestConcurrency(2, wait_seconds=5)
        started: list[int] = []
        release = asyncio.Event()
        running = most = 0

        async def work(number: int) -> None:
            nonlocal running, most
            await turns.take()
            started.append(number)
            running += 1
            most = max(most, running)
            await release.wait()
            running -= 1
            turns.give_back()

        tasks = []
        for number in range(5):
            tasks.append(asyncio.ensure_future(work(number)))
            await asyncio.sleep(0.01)
        assert started == [0, 1]
        release.set()
        await asyncio.gather(*tasks)
        return started, most

    started, most = asyncio.run(scenario())
    assert started == [0, 1, 2, 3, 4]
    assert most == 2


def test_a_request_that_waits_past_the_pool_timeout_is_db_unavailable() -> None:
    async def scenario() -> None:
        turns = RequestConcurrency(1, wait_seconds=0.05)
        await turns.take()
        waiting = RequestSession(async_sessionmaker(class_=AsyncSession), turns)
        with pytest.raises(DatabaseUnavailable):
            await waiting.take_turn()
        await waiting.end(commit=False)  # gives back no turn: it had none
        with pytest.raises(DatabaseUnavailable):
            await turns.take()

    asyncio.run(scenario())


@pytest.mark.parametrize("ending", ["answered", "raised", "cancelled"])
def test_the_session_middleware_gives_the_turn_back_however_the_request_ends(
    ending: str,
) -> None:
    async def scenario() -> bool:
        turns = RequestConcurrency(1, wait_seconds=0.05)

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            await request_session(scope).take_turn()
            if ending == "raised":
                raise RuntimeError
            if ending == "cancelled":
                raise asyncio.CancelledError
            await send({"type": "http.response.start", "status": 200, "headers": []})

        async def receive() -> Message:
            return {"type": "http.request", "body": b""}

        async def send(message: Message) -> None:
            pass

        state = SimpleNamespace(sessionmaker=async_sessionmaker(), turns=turns)
        scope = {
            "type": "http",
            "method": "GET",
            "path": "/",
            "headers": [],
            "app": SimpleNamespace(state=state),
        }
        with contextlib.suppress(RuntimeError, asyncio.CancelledError):
            await SessionPerRequest(app)(scope, receive, send)
        await turns.take()  # 503 if the turn was kept
        return True

    assert asyncio.run(scenario())


def test_every_user_request_gives_its_turn_back(
    settings: Settings, auth: AuthFactory, db: Session
) -> None:
    app = create_app(settings.model_copy(update={"request_concurrency": 1}))
    with TestClient(app) as client:
        for path, status in [("tasks", 200), ("tasks/0193a5f2-7c1e-7d3a-9b2e-4f6a8c0d1e2f", 404)]:
            assert client.get(f"/api/alice/{path}", headers=auth("alice")).status_code == status
        assert client.get("/api/alice/tasks").status_code == 401  # refused: took no turn
        assert client.post("/api/alice/tasks", json={}, headers=auth("alice")).status_code == 422
        assert client.get("/api/alice/tasks", headers=auth("alice")).status_code == 200


def test_turns_default_to_the_pool_size(settings: Settings) -> None:
    def turns(update: dict[str, int]) -> int:
        with TestClient(create_app(settings.model_copy(update=update))) as client:
            app_turns: RequestConcurrency = client.app.state.turns  # type: ignore[attr-defined]
            return app_turns._turns._value

    assert turns({"db_pool_size": 7}) == 7
    assert turns({"db_pool_size": 7, "request_concurrency": 3}) == 3
