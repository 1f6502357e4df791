"""Rate limits: per token subject after authentication, per address before it, the 429
problem and the RateLimit headers, and one budget shared through Redis by two apps."""

import logging
import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlmodel import Session

from backend.config import Settings
from backend.main import create_app
from tests.conftest import AuthFactory, assert_problem
from tests.mcp_client import INITIALIZE, MCP_HEADERS

AppFactory = Callable[..., FastAPI]


@pytest.fixture
def limited_app(settings: Settings, db: Session) -> AppFactory:
    """`limited_app(rate_limit_user="3/minute")`: an app of its own with those settings."""

    def build(**changes: Any) -> FastAPI:
        return create_app(settings.model_copy(update=changes))

    return build


def _remaining(response: Any, policy: str) -> int:
    match = re.search(rf'"{policy}";r=(\d+);t=(\d+)', response.headers["ratelimit"])
    assert match is not None, response.headers["ratelimit"]
    return int(match.group(1))


def _clients(*apps: FastAPI) -> Iterator[list[TestClient]]:
    clients = [TestClient(app) for app in apps]
    for client in clients:
        client.__enter__()
    yield clients
    for client in clients:
        client.__exit__(None, None, None)


def test_requests_past_user_budget_are_429_with_headers(
    limited_app: AppFactory, auth: AuthFactory
) -> None:
    app = limited_app(rate_limit_user="3/minute")

    with TestClient(app) as client:
        answered = [client.get("/api/alice/tasks", headers=auth("alice")) for _ in range(3)]
        refused = client.get("/api/alice/tasks", headers=auth("alice"))

    assert [response.status_code for response in answered] == [200, 200, 200]
    assert [_remaining(response, "user") for response in answered] == [2, 1, 0]
    assert re.fullmatch(
        r'"ip";q=\d+;w=60, "user";q=3;w=60', answered[0].headers["ratelimit-policy"]
    )
    assert_problem(refused, 429, "rate_limited")
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert re.search(r'"user";r=0;t=\d+', refused.headers["ratelimit"])
    assert '"user";q=3;w=60' in refused.headers["ratelimit-policy"]


def test_each_user_has_a_budget_of_their_own(limited_app: AppFactory, auth: AuthFactory) -> None:
    app = limited_app(rate_limit_user="2/minute")

    with TestClient(app) as client:
        for _ in range(2):
            client.get("/api/alice/tasks", headers=auth("alice"))
        alice = client.get("/api/alice/tasks", headers=auth("alice"))
        bob = client.get("/api/bob/tasks", headers=auth("bob"))

    assert_problem(alice, 429, "rate_limited")
    assert bob.status_code == 200
    assert _remaining(bob, "user") == 1


def test_a_token_for_another_user_spends_its_own_subject_budget(
    limited_app: AppFactory, auth: AuthFactory
) -> None:
    app = limited_app(rate_limit_user="1/minute")

    with TestClient(app) as client:
        forbidden = client.get("/api/bob/tasks", headers=auth("alice"))
        alice = client.get("/api/alice/tasks", headers=auth("alice"))
        bob = client.get("/api/bob/tasks", headers=auth("bob"))

    assert_problem(forbidden, 403, "forbidden")
    assert_problem(alice, 429, "rate_limited")
    assert bob.status_code == 200


def test_mcp_calls_count_against_the_subjects_budget(
    limited_app: AppFactory, auth: AuthFactory
) -> None:
    app = limited_app(rate_limit_user="2/minute")
    headers = auth("alice") | MCP_HEADERS

    with TestClient(app) as client:
        rest = client.get("/api/alice/tasks", headers=auth("alice"))
        calls = [client.post("/mcp", json=INITIALIZE, headers=headers) for _ in range(2)]

    assert rest.status_code == 200
    assert calls[0].status_code == 200, calls[0].text
    assert re.search(r'"user";r=0;t=\d+', calls[0].headers["ratelimit"])
    assert_problem(calls[1], 429, "rate_limited")
    assert int(calls[1].headers["retry-after"]) >= 1


def test_requests_past_address_budget_are_429_before_authentication(
    limited_app: AppFactory, auth: AuthFactory
) -> None:
    app = limited_app(rate_limit_ip="2/minute")

    with TestClient(app) as client:
        anonymous = [client.get("/api/alice/tasks") for _ in range(2)]
        refused = client.get("/api/alice/tasks", headers=auth("alice"))

    assert [response.status_code for response in anonymous] == [401, 401]
    assert anonymous[0].headers["ratelimit"].startswith('"ip";r=1;t=')
    assert anonymous[0].headers["ratelimit-policy"] == '"ip";q=2;w=60'
    assert_problem(refused, 429, "rate_limited")
    assert refused.headers["ratelimit"].startswith('"ip";r=0;t=')
    assert int(refused.headers["retry-after"]) >= 1


@pytest.mark.parametrize("root_path", ["", "/todo"])  # `todo-api serve --root-path /todo`
def test_health_and_metrics_are_not_limited(limited_app: AppFactory, root_path: str) -> None:
    app = limited_app(rate_limit_ip="1/minute")
    paths = [f"{root_path}{path}" for path in ("/healthz", "/readyz", "/metrics")]

    with TestClient(app, root_path=root_path) as client:
        responses = [client.get(path) for path in paths * 2]

    assert [response.status_code for response in responses] == [200] * 6
    assert not any("ratelimit" in response.headers for response in responses)


def test_disabled_limits_send_no_headers(limited_app: AppFactory, auth: AuthFactory) -> None:
    app = limited_app(rate_limit_enabled=False, rate_limit_user="1/minute")

    with TestClient(app) as client:
        responses = [client.get("/api/alice/tasks", headers=auth("alice")) for _ in range(2)]

    assert [response.status_code for response in responses] == [200, 200]
    assert "ratelimit" not in responses[1].headers


def test_two_apps_on_one_redis_share_one_budget(
    limited_app: AppFactory, auth: AuthFactory, redis_url: str
) -> None:
    shared = {
        "redis_url": redis_url,
        "rate_limit_key_prefix": f"todo-api-test-{uuid.uuid4().hex}",
        "rate_limit_user": "4/minute",
    }
    first, second = limited_app(**shared), limited_app(**shared)

    for one, other in _clients(first, second):
        answered = [
            client.get("/api/alice/tasks", headers=auth("alice"))
            for client in (one, other, one, other)
        ]
        refused = [client.get("/api/alice/tasks", headers=auth("alice")) for client in (one, other)]

    assert [response.status_code for response in answered] == [200] * 4
    assert [_remaining(response, "user") for response in answered] == [3, 2, 1, 0]
    for response in refused:
        assert_problem(response, 429, "rate_limited")


def test_redis_outage_falls_back_to_memory_limits(
    limited_app: AppFactory, auth: AuthFactory, caplog: pytest.LogCaptureFixture
) -> None:
    app = limited_app(redis_url="redis://127.0.0.1:1/0", rate_limit_user="2/minute")

    with caplog.at_level(logging.WARNING, logger="todo_api"), TestClient(app) as client:
        responses = [client.get("/api/alice/tasks", headers=auth("alice")) for _ in range(3)]

    assert [response.status_code for response in responses[:2]] == [200, 200]
    assert _remaining(responses[1], "user") == 0
    assert_problem(responses[2], 429, "rate_limited")
    warnings = [r.getMessage() for r in caplog.records if "rate-limit storage" in r.getMessage()]
    assert len(warnings) == 1  # once per failover, not once per request
    assert "127.0.0.1" not in warnings[0]  # names the error's type, never the URL
