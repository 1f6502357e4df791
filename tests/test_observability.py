"""Request ids, the JSON access log line, and the Prometheus metrics at `/metrics`."""

import json
import logging
import logging.config
import os
import pty
import re
import select
import subprocess
import sys
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from sqlmodel import Session

from backend.config import Settings
from backend.main import create_app
from backend.observability import JsonFormatter, logging_config, request_id_var
from tests.conftest import AuthFactory, Factory, assert_problem

HEX_ID = re.compile(r"[0-9a-f]{32}")
TASK_ROUTE = "/api/{user_id}/tasks/{task_id}"


def _samples(text: str, name: str) -> dict[tuple[str, str, str], float]:
    """`{(method, route, status): value}` of one metric's samples."""
    return {
        (s.labels["method"], s.labels["route"], s.labels["status"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


def _gauge(text: str, name: str) -> float:
    values = [s.value for f in text_string_to_metric_families(text) for s in f.samples]
    names = [s.name for f in text_string_to_metric_families(text) for s in f.samples]
    return values[names.index(name)]


def _access_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    formatter = JsonFormatter()
    return [
        json.loads(formatter.format(record))
        for record in caplog.records
        if record.name == "todo_api.access"
    ]


def test_metrics_count_requests_by_route_template_and_status(
    settings: Settings, db: Session, auth: AuthFactory
) -> None:
    with TestClient(create_app(settings)) as client:
        created = client.post("/api/alice/tasks", json={"title": "A"}, headers=auth("alice"))
        task_path = f"/api/alice/tasks/{created.json()['id']}"
        for _ in range(2):
            client.get(task_path, headers=auth("alice"))
        client.get(task_path, headers=auth("bob"))
        client.get("/nowhere")
        response = client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    counts = _samples(response.text, "http_requests_total")
    assert counts[("POST", "/api/{user_id}/tasks", "201")] == 1
    assert counts[("GET", TASK_ROUTE, "200")] == 2
    assert counts[("GET", TASK_ROUTE, "403")] == 1
    assert counts[("GET", "unrouted", "404")] == 1
    assert (
        _samples(response.text, "http_request_duration_seconds_count")[("GET", TASK_ROUTE, "200")]
        == 2
    )
    assert created.json()["id"] not in response.text
    assert "alice" not in response.text
    assert _gauge(response.text, "http_requests_in_flight") == 1  # the scrape itself
    assert _gauge(response.text, "db_pool_size") >= 1
    assert _gauge(response.text, "db_pool_checked_out") == 0


def test_metrics_token_guards_metrics(settings: Settings) -> None:
    token = "a-metrics-scrape-token"
    app = create_app(settings.model_copy(update={"metrics_token": SecretStr(token)}))

    with TestClient(app) as client:
        anonymous = client.get("/metrics")
        wrong = client.get("/metrics", headers={"Authorization": "Bearer nope"})
        scraper = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})

    assert_problem(anonymous, 401, "not_authenticated")
    assert_problem(wrong, 401, "not_authenticated")
    assert scraper.status_code == 200
    assert "http_requests_total" in scraper.text


def test_access_log_line_is_json_with_fields_and_no_secrets(
    client: TestClient, auth: AuthFactory, make_task: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    task = make_task("alice")
    headers = auth("alice")
    caplog.set_level(logging.INFO, logger="todo_api.access")

    response = client.get(f"/api/alice/tasks/{task['id']}?fields=secret-query", headers=headers)

    assert response.status_code == 200
    [line] = _access_lines(caplog)
    assert line["method"] == "GET"
    assert line["route"] == TASK_ROUTE
    assert line["status"] == 200
    assert isinstance(line["duration_ms"], float)
    assert line["request_id"] == response.headers["x-request-id"]
    assert {"time", "level", "logger", "message"} <= line.keys()
    text = json.dumps(line)
    token = headers["Authorization"].removeprefix("Bearer ")
    for secret in (token, "secret-query", task["id"], "alice"):
        assert secret not in text


def test_request_id_from_client_is_echoed_and_logged(
    client: TestClient, auth: AuthFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="todo_api.access")

    response = client.get(
        "/api/alice/tasks", headers={**auth("alice"), "X-Request-ID": "req-2024.06:abc_1"}
    )

    assert response.status_code == 200
    assert response.headers["x-request-id"] == "req-2024.06:abc_1"
    assert [line["request_id"] for line in _access_lines(caplog)] == ["req-2024.06:abc_1"]


def test_request_id_is_generated_when_absent(client: TestClient) -> None:
    first, second = client.get("/healthz"), client.get("/healthz")

    assert first.status_code == 200
    assert HEX_ID.fullmatch(first.headers["x-request-id"])
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


@pytest.mark.parametrize("given", ["has spaces", "x" * 129, 'quote"d', "tab\there", ""])
def test_unsafe_request_id_is_replaced(client: TestClient, given: str) -> None:
    response = client.get("/healthz", headers={"X-Request-ID": given})

    assert response.status_code == 200
    assert HEX_ID.fullmatch(response.headers["x-request-id"])


def test_errors_carry_the_request_id(client: TestClient) -> None:
    headers = {"X-Request-ID": "trace-me"}

    responses = [
        client.get("/nowhere", headers=headers),
        client.get("/api/alice/tasks", headers=headers),
        client.post("/api/alice/tasks", content=b"{", headers=headers),
    ]

    assert [response.status_code for response in responses] == [404, 401, 401]
    assert all(response.headers["x-request-id"] == "trace-me" for response in responses)


def test_log_lines_inside_a_request_carry_its_id() -> None:
    record = logging.LogRecord("todo_api", logging.WARNING, __file__, 1, "m %s", ("x",), None)
    context = request_id_var.set("inside")
    try:
        line = json.loads(JsonFormatter().format(record))
    finally:
        request_id_var.reset(context)

    assert line == {**line, "message": "m x", "level": "WARNING", "request_id": "inside"}


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_no_log_format_prints_a_traceback_or_its_text(log_format: str) -> None:
    """SECURITY-CASES #39: an error is named by its type; its text may hold SQL and values."""
    config = logging_config(Settings(log_format=log_format))
    formatter = logging.config.DictConfigurator(config).configure_formatter(
        config["formatters"][log_format]
    )
    try:
        raise ValueError("UPDATE idempotency_keys SET body='secret'")
    except ValueError:
        record = logging.getLogger("todo_api").makeRecord(
            "todo_api", logging.WARNING, __file__, 1, "settling failed", (), sys.exc_info()
        )
    record.stack_info = "Stack (most recent call last): ..."

    line = formatter.format(record)

    assert "settling failed" in line
    assert "ValueError" in line
    for leak in ("secret", "Traceback", "Stack", "\n"):
        assert leak not in line


class _Stderr:
    def __init__(self, terminal: bool) -> None:
        self.terminal = terminal

    def isatty(self) -> bool:
        return self.terminal


@pytest.mark.parametrize(
    ("configured", "terminal", "expected"),
    [
        (None, True, "text"),
        (None, False, "json"),
        ("json", True, "json"),
        ("text", False, "text"),
    ],
)
def test_log_format_is_text_on_a_terminal_unless_log_format_says(
    monkeypatch: pytest.MonkeyPatch, configured: str | None, terminal: bool, expected: str
) -> None:
    monkeypatch.setattr(sys, "stderr", _Stderr(terminal))

    config = logging_config(Settings(log_format=configured))

    assert config["handlers"]["stderr"]["formatter"] == expected


def test_serve_on_a_terminal_logs_text_lines(tmp_path: Any) -> None:
    """`todo-api serve` with its standard error on a pseudo-terminal: lines a person reads."""
    controller, terminal = pty.openpty()
    environment = {k: v for k, v in os.environ.items() if k != "LOG_FORMAT"}
    environment |= {"DATABASE_URL": f"sqlite:///{tmp_path}/t.db", "JWT_SECRET": "s" * 40}
    server = subprocess.Popen(
        [sys.executable, "-c", "from backend.cli import app; app()", "serve", "--port", "0"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=terminal,
        env=environment,
    )
    os.close(terminal)
    try:
        output = b""
        deadline = time.monotonic() + 30
        while b"Uvicorn running" not in output and time.monotonic() < deadline:
            if select.select([controller], [], [], 1)[0]:
                output += os.read(controller, 4096)
    finally:
        server.terminate()
        server.wait(timeout=10)
        os.close(controller)

    lines = output.decode().splitlines()
    assert any("Uvicorn running" in line for line in lines), output
    assert not any(line.lstrip().startswith("{") for line in lines)
