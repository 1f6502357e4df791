"""What authentication adds to a request with a cached key, per mode: median and p99.

Run: .venv/bin/python -m benchmarks.auth [--iterations N]

Each mode verifies real tokens through the service's own code path: the bearer header is
parsed from an ASGI request, then the configured verifier checks signature and claims.
JWKS modes fetch their keys once from a local JWKS server, then run on the cached set.
"""

import argparse
import asyncio
import json
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from starlette.requests import Request

from backend.auth import bearer_token, create_verifier
from backend.config import Settings

TARGET_MS = 0.3
SECRET = "benchmark-secret-that-is-long-enough-for-hs256"
ISSUER = "http://localhost:3000"


def _keys() -> dict[str, tuple[Any, dict[str, Any]]]:
    """One private key per public-key algorithm, with its public JWK."""
    ed = ed25519.Ed25519PrivateKey.generate()
    rs = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    es = ec.generate_private_key(ec.SECP256R1())
    pairs = {
        "EdDSA": (ed, jwt.algorithms.OKPAlgorithm.to_jwk(ed.public_key(), as_dict=True)),
        "ES256": (es, jwt.algorithms.ECAlgorithm.to_jwk(es.public_key(), as_dict=True)),
        "RS256": (rs, jwt.algorithms.RSAAlgorithm.to_jwk(rs.public_key(), as_dict=True)),
    }
    pairs["PS256"] = (rs, dict(pairs["RS256"][1]))
    for algorithm, (_, jwk) in pairs.items():
        jwk.update(kid=f"key-{algorithm}", alg=algorithm, use="sig")
    return pairs


@contextmanager
def jwks_server(document: dict[str, Any]) -> Iterator[str]:
    body = json.dumps(document).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api/auth/jwks"
    finally:
        server.shutdown()


def _request(token: str) -> Request:
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/api/alice/tasks",
        "headers": [(b"authorization", f"Bearer {token}".encode())],
    }
    return Request(scope)


async def _measure(settings: Settings, token: str, iterations: int) -> list[float]:
    verifier = create_verifier(settings)
    request = _request(token)
    await verifier.verify(bearer_token(request))  # warm: fetches and caches the keys
    timings = []
    for _ in range(iterations):
        started = time.perf_counter()
        claims = await verifier.verify(bearer_token(request))
        timings.append(time.perf_counter() - started)
        assert claims.subject == "alice"
    return timings


def _claims() -> dict[str, Any]:
    now = int(time.time())
    return {
        "sub": "alice",
        "email": "alice@example.com",
        "name": "Alice",
        "iat": now,
        "exp": now + 900,
        "iss": ISSUER,
        "aud": ISSUER,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--iterations", type=int, default=5000)
    iterations = parser.parse_args().iterations

    keys = _keys()

    def settings(**mode: Any) -> Settings:
        return Settings(
            _env_file=None, environment="test", jwt_issuer=ISSUER, jwt_audience=ISSUER, **mode
        )

    rows: list[tuple[str, list[float]]] = []
    hs_settings = settings(jwt_secret=SECRET)
    hs_token = jwt.encode(_claims(), SECRET, algorithm="HS256")
    rows.append(("HS256 (shared secret)", asyncio.run(_measure(hs_settings, hs_token, iterations))))
    with jwks_server({"keys": [jwk for _, jwk in keys.values()]}) as url:
        for algorithm, (private_key, jwk) in keys.items():
            token = jwt.encode(
                _claims(), private_key, algorithm=algorithm, headers={"kid": jwk["kid"]}
            )
            timings = asyncio.run(
                _measure(settings(jwks_url=url, secret_key=SECRET), token, iterations)
            )
            rows.append((f"{algorithm} (JWKS, cached key)", timings))

    print(
        f"auth cost per request, {iterations} requests per mode (target: median <= {TARGET_MS} ms)"
    )
    print(f"{'mode':<28} {'median ms':>10} {'p99 ms':>8}  verdict")
    worst = 0.0
    for name, timings in rows:
        median = statistics.median(timings) * 1000
        p99 = statistics.quantiles(timings, n=100)[98] * 1000
        worst = max(worst, median)
        print(f"{name:<28} {median:>10.3f} {p99:>8.3f}  {'ok' if median <= TARGET_MS else 'OVER'}")
    print(f"worst median: {worst:.3f} ms ({worst / TARGET_MS:.0%} of the target)")


if __name__ == "__main__":
    main()
