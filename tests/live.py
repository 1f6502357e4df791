"""A live server for the tests that need real connections (MCP, event streams), an
event-stream reader, and a webhook receiver."""

import contextlib
import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest
import uvicorn
from fastapi import FastAPI

from tests.conftest import free_port


@contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """`app` served by uvicorn in a thread; its base URL."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


class Stream:
    """An event stream, read in a thread of its own: `status`, and its `events` as they
    arrive, each `{"event", "id", "data", "retry"}` (what its lines gave). `close` hangs up
    at once, as a browser tab that goes away does."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        parts = urlsplit(url)
        self.status: int | None = None
        self.events: list[dict[str, Any]] = []
        self.ended = threading.Event()
        self.error: Exception | None = None
        self._opened = threading.Event()
        self._socket: socket.socket | None = None
        host = parts.hostname or "127.0.0.1"
        self._connection = http.client.HTTPConnection(host, parts.port, timeout=30)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        self._thread = threading.Thread(
            target=self._read, args=(target, headers or {}), daemon=True
        )
        self._thread.start()
        assert self._opened.wait(10), "the stream did not open"

    def _read(self, target: str, headers: dict[str, str]) -> None:
        try:
            self._connection.request("GET", target, headers=headers)
            self._socket = self._connection.sock  # the response may take it over
            response = self._connection.getresponse()
            self.status = response.status
            self._opened.set()
            fields: dict[str, Any] = {}
            while line := response.readline():
                text = line.decode().rstrip("\r\n")
                if text == "":
                    if fields.keys() - {"comment"}:
                        self.events.append(fields)
                    fields = {}
                elif text.startswith(":"):
                    fields["comment"] = text[1:].strip()
                else:
                    name, _, value = text.partition(":")
                    value = value.removeprefix(" ")
                    fields[name] = json.loads(value) if name == "data" else value
        except Exception as exc:  # a hang-up, ours or the server's, ends the stream
            self.error = exc
        finally:
            self._opened.set()
            self.ended.set()

    def changes(self) -> list[dict[str, Any]]:
        return [event for event in self.events if event.get("event") == "change"]

    def wait_for(self, count: int, timeout: float = 5) -> list[dict[str, Any]]:
        """The change events, once `count` of them have arrived (or the time is up)."""
        deadline = time.monotonic() + timeout
        while len(self.changes()) < count and time.monotonic() < deadline:
            if self.ended.is_set():
                break
            time.sleep(0.01)
        return self.changes()

    def close(self) -> None:
        sock = self._socket
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._connection.close()
        self._thread.join(timeout=5)


class Receiver:
    """A webhook receiver on 127.0.0.1: records each request (`requests`: headers and
    body) and answers as told: `answers` (statuses, in turn; the last repeats), after
    `delay` seconds, with `answer` as the body (default: a word, or 2 KB on an error);
    `endless` streams a body that never ends. A 3xx points at /elsewhere, which records
    what reaches it."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.answers: list[int] = [200]
        self.delay = 0.0
        self.answer: bytes | None = None
        self.endless = False
        self.sent = 0
        """Bytes of an endless answer written before the client hung up."""
        self.arrived = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                receiver.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "body": body}
                )
                receiver.arrived.set()
                time.sleep(receiver.delay)
                status = receiver.answers[min(len(receiver.requests), len(receiver.answers)) - 1]
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", "/elsewhere")
                answer = receiver.answer or (b"received" if status < 300 else b"not today " * 200)
                if receiver.endless:
                    self.send_header("Connection", "close")
                    self.end_headers()
                    with contextlib.suppress(OSError):  # until the client hangs up
                        while receiver.sent < 100 * 2**20:
                            self.wfile.write(b"x" * 4096)
                            receiver.sent += 4096
                    return
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                with contextlib.suppress(OSError):  # a client that gave up
                    self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def ids(self) -> list[str]:
        """The `webhook-id` of each request, in arrival order."""
        return [request["headers"]["webhook-id"] for request in self.requests]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
