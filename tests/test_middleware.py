"""Middleware: the body read whole before a request takes its turn; turns in order."""

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.types import Message, Receive, Scope, Send

from backend.config import Settings
from backend.main import MAX_BODY_BYTES, create_app
from backend.middleware import Admission, LimitBody

Answer = tuple[int, dict[str, Any]]


def _scope(path: str = "/api/alice/tasks") -> Scope:
    return {"type": "http", "method": "GET", "path": path, "headers": [], "query_string": b""}


class Held:
    """An app whose requests start, note their path, and end when released."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.running = 0
        self.most = 0
        self.release = asyncio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.started.append(scope["path"])
        self.running += 1
        self.most = max(self.most, self.running)
        message = await receive()
        if scope["path"] not in {"/healthz", "/metrics"}:
            await self.release.wait()
        self.running -= 1
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": message.get("body", b"")})


async def _call(app: Callable[..., Awaitable[None]], scope: Scope, body: bytes = b"") -> Answer:
    """The status and the JSON body (if any) of one request with `body`, sent at once."""
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    status = sent[0]["status"]
    headers = {k.decode(): v.decode() for k, v in sent[0].get("headers", [])}
    content = b"".join(message.get("body", b"") for message in sent[1:])
    parsed = json.loads(content) if "json" in headers.get("content-type", "") else {}
    return status, {"headers": headers, "body": parsed, "raw": content}


def test_requests_past_the_limit_wait_their_turn_in_order_of_arrival() -> None:
    async def scenario() -> Held:
        held = Held()
        app = Admission(held, limit=2, wait_seconds=5)
        calls = []
        for number in range(5):
            calls.append(asyncio.ensure_future(_call(app, _scope(f"/r{number}"))))
            await asyncio.sleep(0.01)
        assert held.started == ["/r0", "/r1"]
        held.release.set()
        answers = await asyncio.gather(*calls)
        assert [status for status, _ in answers] == [200] * 5
        return held

    held = asyncio.run(scenario())
    assert held.started == ["/r0", "/r1", "/r2", "/r3", "/r4"]
    assert held.most == 2


def test_a_request_that_waits_past_the_pool_timeout_is_503_db_unavailable() -> None:
    async def scenario() -> tuple[Answer, Answer]:
        held = Held()
        app = Admission(held, limit=1, wait_seconds=0.05)
        first = asyncio.ensure_future(_call(app, _scope("/first")))
        await asyncio.sleep(0.01)
        waited = await _call(app, _scope("/second"))
        held.release.set()
        return await first, waited

    first, waited = asyncio.run(scenario())
    assert first[0] == 200
    status, answer = waited
    assert status == 503
    assert answer["body"]["code"] == "db_unavailable"
    assert "retry-after" in answer["headers"]


def test_health_and_metrics_never_wait_their_turn() -> None:
    async def scenario() -> list[Answer]:
        held = Held()
        app = Admission(held, limit=1, wait_seconds=0.05)
        busy = asyncio.ensure_future(_call(app, _scope("/busy")))
        await asyncio.sleep(0.01)
        answers = [await _call(app, _scope(path)) for path in ("/healthz", "/metrics")]
        held.release.set()
        await busy
        return answers

    assert [status for status, _ in asyncio.run(scenario())] == [200, 200]


def test_a_slow_upload_holds_no_turn_and_the_app_gets_its_whole_body() -> None:
    async def scenario() -> tuple[Held, Answer]:
        held = Held()
        app = LimitBody(Admission(held, limit=1, wait_seconds=5), max_bytes=MAX_BODY_BYTES)
        trickle: asyncio.Queue[Message] = asyncio.Queue()

        async def send(message: Message) -> None:
            pass

        slow = asyncio.ensure_future(app(_scope("/slow"), trickle.get, send))
        await trickle.put({"type": "http.request", "body": b'{"title": ', "more_body": True})
        await asyncio.sleep(0.01)
        assert held.started == []  # still uploading: no turn taken
        held.release.set()
        quick = await _call(app, _scope("/quick"), b'{"title": "quick"}')
        await trickle.put({"type": "http.request", "body": b'"slow"}', "more_body": False})
        await slow
        return held, quick

    held, (status, answer) = asyncio.run(scenario())
    assert held.started == ["/quick", "/slow"]
    assert status == 200
    assert answer["raw"] == b'{"title": "quick"}'


def test_turns_default_to_the_pool_size(settings: Settings) -> None:
    def turns(app: Any) -> int:
        admission = next(m for m in app.user_middleware if m.cls is Admission)
        limit: int = admission.kwargs["limit"]
        return limit

    assert turns(create_app(settings.model_copy(update={"db_pool_size": 7}))) == 7
    tuned = settings.model_copy(update={"db_pool_size": 7, "request_concurrency": 3})
    assert turns(create_app(tuned)) == 3
