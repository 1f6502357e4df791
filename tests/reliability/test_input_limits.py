"""Cases 28 and 29 over a real socket: a body over 64 KiB is refused with 413 before it
is read whole, declared or chunked; deeply nested JSON is a 4xx, never a 500."""

import json
import select
import socket
from urllib.parse import urlsplit

import httpx2
import pytest

from backend.main import MAX_BODY_BYTES
from tests.reliability.conftest import Cluster, Server, assert_no_leaks, report, stored_tasks

CHUNK = 8 * 1024
OFFERED = 16 * MAX_BODY_BYTES
"""How much a client offers to send; the answer must come long before all of it."""


def _head(server: Server, user: str, framing: str) -> bytes:
    return (
        f"POST /api/{user}/tasks HTTP/1.1\r\nHost: {urlsplit(server.url).netloc}\r\n"
        f"Authorization: {server.headers(user)['Authorization']}\r\n"
        f"Content-Type: application/json\r\n{framing}\r\nConnection: close\r\n\r\n"
    ).encode()


def _read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, value in (h.split(":", 1) for h in lines)}
    return int(status_line.split()[1]), headers, body


def _send_until_answered(sock: socket.socket, head: bytes, chunk: bytes, total: int) -> int:
    """Send `head`, then `chunk` after chunk up to `total` bytes, stopping as soon as the
    server answers (or stops reading); how many body bytes went out."""
    sock.sendall(head)
    sent = 0
    while sent < total:
        if select.select([sock], [], [], 0.01)[0]:
            break
        try:
            sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            break
        sent += len(chunk)
    return sent


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_body_over_limit_is_413_before_it_is_read_whole(
    server: Server, cluster: Cluster, framing: str
) -> None:
    user = f"big-{framing}"
    mark = server.log_mark()
    payload = b"x" * CHUNK
    if framing == "chunked":
        head = _head(server, user, "Transfer-Encoding: chunked")
        chunk = f"{len(payload):x}\r\n".encode() + payload + b"\r\n"
    else:
        head = _head(server, user, f"Content-Length: {OFFERED}")
        chunk = payload
    address = urlsplit(server.url)
    with socket.create_connection((address.hostname, address.port), timeout=5) as sock:
        sent = _send_until_answered(sock, head, chunk, OFFERED)
        status, headers, body = _read_response(sock)

    figures = report(f"413 {framing}: answered {status} after {sent} of {OFFERED} body bytes")
    assert status == 413, f"{body[:200]!r}; {figures}"
    assert headers["content-type"] == "application/problem+json"
    assert json.loads(body)["code"] == "payload_too_large"
    assert sent < OFFERED, figures
    assert not stored_tasks(cluster, user)
    assert_no_leaks(server, mark, [body.decode()])


DEPTH = 20_000


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"[" * DEPTH + b"]" * DEPTH, id="arrays"),
        pytest.param(b'{"a":' * (DEPTH // 2) + b"1" + b"}" * (DEPTH // 2), id="objects"),
        pytest.param(
            b'{"title": "t", "description": ' + b"[" * DEPTH + b"]" * DEPTH + b"}",
            id="inside-a-field",
        ),
    ],
)
def test_deeply_nested_json_is_4xx(server: Server, cluster: Cluster, body: bytes) -> None:
    user = "nested"
    mark = server.log_mark()
    assert len(body) <= MAX_BODY_BYTES
    with httpx2.Client(base_url=server.url, headers=server.headers(user)) as client:
        response = client.post(
            f"/api/{user}/tasks", content=body, headers={"Content-Type": "application/json"}
        )

    assert response.status_code in (400, 422), response.text[:300]
    assert response.headers["content-type"] == "application/problem+json"
    assert not stored_tasks(cluster, user)
    assert_no_leaks(server, mark, [response.text])
