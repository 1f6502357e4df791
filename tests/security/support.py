"""Signing keys, hand-made and tampered tokens, and a local JWKS server whose answers tests
control (with its fixtures)."""

import base64
import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import Algorithm, get_default_algorithms

PrivateKey = ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

ALGORITHMS: dict[str, Algorithm] = get_default_algorithms()
JWKS_PATH = "/.well-known/jwks.json"
MOVED_PATH = "/moved/jwks.json"
DROP: Any = object()
"""As a claim or header value: leave that member out."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def segment(value: Any) -> str:
    """A JSON value (or raw bytes) as one base64url token segment."""
    raw = value if isinstance(value, bytes) else json.dumps(value, separators=(",", ":")).encode()
    return b64url(raw)


def without_dropped(values: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in values.items() if value is not DROP}


def craft(header: Any, payload: Any, sign: Callable[[bytes], bytes]) -> str:
    """A compact JWS built by hand, so that no library refuses to write a bad one."""
    signing_input = f"{segment(header)}.{segment(payload)}"
    return f"{signing_input}.{b64url(sign(signing_input.encode()))}"


def hmac_signer(secret: bytes) -> Callable[[bytes], bytes]:
    return lambda message: hmac.new(secret, message, hashlib.sha256).digest()


def flip_signature_bit(token: str) -> str:
    head, payload, signature = token.split(".")
    raw = bytearray(b64url_decode(signature))
    raw[0] ^= 0x01
    return f"{head}.{payload}.{b64url(bytes(raw))}"


def change_payload(token: str) -> str:
    """The token with `exp` one second later, under its old signature."""
    head, payload, signature = token.split(".")
    claims = json.loads(b64url_decode(payload))
    return f"{head}.{segment(claims | {'exp': claims['exp'] + 1})}.{signature}"


def strip_signature(token: str) -> str:
    return token.rsplit(".", 1)[0] + "."


def repeat_segments(token: str, count: int) -> str:
    """`count` dot-separated segments taken from the token's own, in turn."""
    parts = token.split(".")
    return ".".join((parts * 2)[:count])


def with_alphabet(sign: Callable[[int], str], old: str, new: str) -> str:
    """A valid token (`sign(nonce)`) whose signature is rewritten with characters outside
    base64url: each of `old` becomes the one at its place in `new`."""
    for nonce in range(1000):
        token = sign(nonce)
        if any(character in token.rsplit(".", 1)[1] for character in old):
            return token.translate(str.maketrans(old, new))
    raise AssertionError("no signature with those characters")


class Signer:
    """Signs tokens the way one issuer does: its default header, then any changes."""

    def default_header(self) -> dict[str, Any]:
        raise NotImplementedError

    def signature(self, message: bytes, algorithm: str) -> bytes:
        raise NotImplementedError

    def sign(self, payload: Any, header: dict[str, Any] | None = None) -> str:
        """Signed with the header's `alg` when it names a real one, else the default."""
        default = self.default_header()
        full = without_dropped(default | (header or {}))
        algorithm = full.get("alg")
        if not isinstance(algorithm, str) or algorithm not in ALGORITHMS:
            algorithm = default["alg"]
        return craft(full, payload, lambda message: self.signature(message, algorithm))


@dataclass(frozen=True)
class SecretKey(Signer):
    secret: str

    def default_header(self) -> dict[str, Any]:
        return {"alg": "HS256", "typ": "JWT"}

    def signature(self, message: bytes, algorithm: str) -> bytes:
        return hmac_signer(self.secret.encode())(message)


@dataclass(frozen=True)
class SigningKey(Signer):
    """A private key, its `kid`, and the algorithm it signs with by default."""

    kid: str
    alg: str
    private: PrivateKey
    publish_alg: bool = True
    """Whether the published JWK names its `alg` (an RSA key without one serves RS and PS)."""

    def default_header(self) -> dict[str, Any]:
        return {"alg": self.alg, "kid": self.kid}

    def signature(self, message: bytes, algorithm: str) -> bytes:
        return ALGORITHMS[algorithm].sign(message, self.private)

    def public_jwk(self) -> dict[str, Any]:
        jwk = ALGORITHMS[self.alg].to_jwk(self.private.public_key(), as_dict=True)
        assert isinstance(jwk, dict)
        jwk |= {"kid": self.kid, "use": "sig"}
        if self.publish_alg:
            jwk["alg"] = self.alg
        return jwk

    def with_kid(self, kid: str) -> "SigningKey":
        return replace(self, kid=kid)


@dataclass(frozen=True)
class Keys:
    """The issuer's keys (one per type), a key it rotates to, and an attacker's keys."""

    ed: SigningKey
    rsa: SigningKey
    ec: SigningKey
    ed_next: SigningKey
    attacker_ed: SigningKey
    attacker_rsa: SigningKey
    attacker_ec: SigningKey

    @property
    def issued(self) -> tuple[SigningKey, SigningKey, SigningKey]:
        return self.ed, self.rsa, self.ec


@cache
def session_keys() -> Keys:
    """Generated once per test session (RSA keys are slow to make)."""

    def ed(kid: str) -> SigningKey:
        return SigningKey(kid, "EdDSA", ed25519.Ed25519PrivateKey.generate())

    def rs(kid: str) -> SigningKey:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return SigningKey(kid, "RS256", key, publish_alg=False)

    def es(kid: str) -> SigningKey:
        return SigningKey(kid, "ES256", ec.generate_private_key(ec.SECP256R1()))

    return Keys(
        ed=ed("ed-1"),
        rsa=rs("rsa-1"),
        ec=es("ec-1"),
        ed_next=ed("ed-2"),
        attacker_ed=ed("mallory-ed"),
        attacker_rsa=rs("mallory-rsa"),
        attacker_ec=es("mallory-ec"),
    )


class _Httpd(ThreadingHTTPServer):
    def __init__(self, state: "JwksServer") -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up on a slow answer is expected here: stay quiet."""


class _Handler(BaseHTTPRequestHandler):
    server: _Httpd

    def do_GET(self) -> None:
        state = self.server.state
        state.record(self.path)
        if self.path == MOVED_PATH:
            self._answer(200, json.dumps(state.document).encode(), "application/json")
        elif self.path != JWKS_PATH:
            self._answer(404, b"", "text/plain")
        else:
            state.wait()
            if state.redirect:
                self.send_response(302)
                self.send_header("Location", state.base + MOVED_PATH)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = state.body if state.body is not None else json.dumps(state.document).encode()
            self._answer(state.status, body, state.content_type)

    def _answer(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """No access log on stderr."""


class JwksServer:
    """An HTTP server on 127.0.0.1 (a free port) answering what the test sets:
    the key set, a status, a delay, a garbage body or a redirect; it counts requests."""

    def __init__(self) -> None:
        self.document: Any = {"keys": []}
        self.status = 200
        self.delay = 0.0
        self.body: bytes | None = None
        self.content_type = "application/json"
        self.redirect = False
        self.requests: list[str] = []
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._httpd = _Httpd(self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._running = False

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def url(self) -> str:
        return self.base + JWKS_PATH

    @property
    def fetches(self) -> int:
        """How many times the key set was asked for."""
        return self.count(JWKS_PATH)

    def count(self, path: str) -> int:
        with self._lock:
            return self.requests.count(path)

    def record(self, path: str) -> None:
        with self._lock:
            self.requests.append(path)

    def wait(self) -> None:
        if self.delay:
            self._release.wait(self.delay)

    def publish(self, *keys: SigningKey) -> None:
        self.document = {"keys": [key.public_jwk() for key in keys]}

    def garbage(self, body: bytes, content_type: str = "application/json") -> None:
        self.body, self.content_type = body, content_type

    def wait_for_fetches(self, count: int, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while self.fetches < count:
            assert time.monotonic() < deadline, "the key set was never fetched"
            time.sleep(0.005)

    def start(self) -> "JwksServer":
        self._thread.start()
        self._running = True
        return self

    def stop(self) -> None:
        """Close the port: later connections are refused. Safe to call twice."""
        self._release.set()
        if self._running:
            self._running = False
            self._httpd.shutdown()
            self._thread.join(timeout=5)
        self._httpd.server_close()

    def __enter__(self) -> "JwksServer":
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def unused_url() -> str:
    """A URL on a local port nothing listens on: connections are refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}{JWKS_PATH}"


# Fixtures of tests/security/ and tests/test_jwks.py -------------------------------------


@pytest.fixture(scope="session")
def keys() -> Keys:
    return session_keys()


@pytest.fixture
def jwks_server(keys: Keys) -> Iterator[JwksServer]:
    """The issuer's key endpoint, listing its Ed25519, RSA and EC public keys."""
    with JwksServer() as server:
        server.publish(*keys.issued)
        yield server
