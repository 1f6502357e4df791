"""CORS for configured frontend origins: preflights, exposed headers, credentials."""

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlmodel import Session

from backend.config import ConfigurationError, Settings, get_settings
from backend.main import CORS_EXPOSED_HEADERS, create_app
from tests.conftest import AuthFactory, assert_problem

FRONTEND = "https://app.example"
TASKS = "/api/alice/tasks"


def _app(settings: Settings, **cors: object) -> FastAPI:
    return create_app(settings.model_copy(update={"cors_origins": [FRONTEND], **cors}))


@pytest.fixture(scope="module")
def cors_app(settings: Settings) -> FastAPI:
    return _app(settings)


@pytest.fixture
def browser(cors_app: FastAPI, db: Session) -> Iterator[TestClient]:
    cors_app.state.known_users.clear()
    with TestClient(cors_app, headers={"Origin": FRONTEND}) as client:
        yield client


def _preflight(client: TestClient, method: str, *headers: str) -> dict[str, str]:
    request_headers = {"Access-Control-Request-Method": method}
    if headers:
        request_headers["Access-Control-Request-Headers"] = ", ".join(headers)
    response = client.options(TASKS, headers=request_headers)
    assert response.status_code == 200, response.text
    return dict(response.headers)


def _listed(value: str) -> set[str]:
    return {item.strip().lower() for item in value.split(",")}


def test_preflight_allows_the_api_headers(browser: TestClient) -> None:
    asked = ("Authorization", "Content-Type", "If-Match", "Idempotency-Key", "X-Request-ID")

    headers = _preflight(browser, "PATCH", *asked)

    assert headers["access-control-allow-origin"] == FRONTEND
    assert "PATCH" in headers["access-control-allow-methods"]
    assert {name.lower() for name in asked} <= _listed(headers["access-control-allow-headers"])
    assert "if-none-match" in _listed(headers["access-control-allow-headers"])
    assert "access-control-allow-credentials" not in headers


def test_preflight_with_an_unknown_header_is_400(browser: TestClient) -> None:
    response = browser.options(
        TASKS,
        headers={
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "X-Evil",
        },
    )

    body = assert_problem(response, 400, "cors_refused")
    assert body["detail"] == "Disallowed CORS headers"
    assert response.headers["access-control-allow-origin"] == FRONTEND
    assert "x-evil" not in _listed(response.headers["access-control-allow-headers"])


@pytest.mark.parametrize(("origin", "refused"), [(FRONTEND, False), ("https://evil.example", True)])
def test_preflight_has_a_request_id_and_a_log_line(
    browser: TestClient, caplog: pytest.LogCaptureFixture, origin: str, refused: bool
) -> None:
    caplog.set_level(logging.INFO, logger="todo_api.access")

    response = browser.options(
        TASKS,
        headers={"Origin": origin, "Access-Control-Request-Method": "GET", "X-Request-ID": "pf-1"},
    )

    assert response.status_code == (400 if refused else 200)
    assert response.headers["x-request-id"] == "pf-1"
    if refused:
        assert_problem(response, 400, "cors_refused")
    [line] = [vars(r) for r in caplog.records if r.name == "todo_api.access"]
    assert (line["request_id"], line["method"], line["status"]) == (
        "pf-1",
        "OPTIONS",
        response.status_code,
    )


def test_create_task_exposes_location_etag_and_replay_header(
    browser: TestClient, auth: AuthFactory
) -> None:
    headers = auth() | {"Idempotency-Key": "cors-1"}
    browser.post(TASKS, json={"title": "Buy milk"}, headers=headers)

    response = browser.post(TASKS, json={"title": "Buy milk"}, headers=headers)

    assert response.status_code == 201
    assert response.headers["access-control-allow-origin"] == FRONTEND
    exposed = _listed(response.headers["access-control-expose-headers"])
    assert {"location", "etag", "idempotent-replayed"} <= exposed
    assert {name.lower() for name in CORS_EXPOSED_HEADERS} == exposed
    assert {"location", "etag", "idempotent-replayed"} <= response.headers.keys()
    assert "access-control-allow-credentials" not in response.headers


def test_exposes_rate_limit_retry_and_request_id_headers(browser: TestClient) -> None:
    response = browser.get("/healthz")

    assert response.status_code == 200
    exposed = _listed(response.headers["access-control-expose-headers"])
    assert {"retry-after", "ratelimit", "ratelimit-policy", "x-request-id"} <= exposed


def test_error_answers_carry_cors_headers(browser: TestClient) -> None:
    response = browser.get(TASKS)

    assert response.status_code == 401
    assert response.headers["access-control-allow-origin"] == FRONTEND


def test_disallowed_origin_gets_no_cors_headers(browser: TestClient, auth: AuthFactory) -> None:
    preflight = browser.options(
        TASKS, headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"}
    )
    response = browser.get(TASKS, headers=auth() | {"Origin": "https://evil.example"})

    assert_problem(preflight, 400, "cors_refused")
    assert "access-control-allow-origin" not in preflight.headers
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers
    assert response.headers["vary"] == "Accept, Origin"


def test_no_cors_origins_means_no_cors_headers(client: TestClient) -> None:
    response = client.get("/healthz", headers={"Origin": FRONTEND})

    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers


def test_credentials_are_allowed_when_configured(settings: Settings) -> None:
    app = _app(settings, cors_allow_credentials=True)

    with TestClient(app, headers={"Origin": FRONTEND}) as client:
        response = client.options(TASKS, headers={"Access-Control-Request-Method": "GET"})

    assert response.status_code == 200
    assert response.headers["access-control-allow-credentials"] == "true"
    assert response.headers["access-control-allow-origin"] == FRONTEND


def test_start_up_refuses_any_origin_with_credentials(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ENVIRONMENT", "test")
    monkeypatch.setenv("JWT_SECRET", "a-secret-that-is-long-enough-for-hs256!")
    monkeypatch.setenv("CORS_ORIGINS", "*")
    monkeypatch.setenv("CORS_ALLOW_CREDENTIALS", "true")
    get_settings.cache_clear()

    try:
        with pytest.raises(ConfigurationError, match="CORS_ALLOW_CREDENTIALS") as refused:
            create_app()
    finally:
        get_settings.cache_clear()

    assert "CORS_ORIGINS" in str(refused.value)


def test_any_origin_without_credentials_is_accepted() -> None:
    settings = Settings(_env_file=None, environment="test", cors_origins="*")

    assert settings.cors_origins == ["*"]
    assert settings.cors_allow_credentials is False
