"""Cases 36 and 37: a statement or lock wait past its timeout answers 503 `timeout` and
leaves the connection fit for the next request; an exhausted pool answers 503 in bounded
time while health answers."""

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import httpx2
import pytest

from tests.reliability.conftest import (
    DEADLINE_SECONDS,
    Cluster,
    Outcome,
    Server,
    assert_no_leaks,
    describe,
    is_unavailable,
    report,
    timed,
)

ANSWER_WITHIN_SECONDS = DEADLINE_SECONDS + 0.5
HEALTH_WITHIN_SECONDS = 1.0
PILED_UP = 6


@contextmanager
def locked(cluster: Cluster, statement: str, *params: object) -> Iterator[None]:
    """`statement` run in a transaction of another client, held open for the block."""
    with cluster.connect() as connection, connection.transaction():
        connection.execute(statement, params)
        yield


def _create(client: httpx2.Client, user: str) -> str:
    created = client.post(f"/api/{user}/tasks", json={"title": "to be locked"})
    assert created.status_code == 201, describe(created)
    return f"/api/{user}/tasks/{created.json()['id']}"


LOCKS = {
    "row": "SELECT id FROM tasks WHERE id = %s FOR UPDATE",
    "table": "LOCK TABLE tasks IN ACCESS EXCLUSIVE MODE",
}


@pytest.mark.parametrize(("lock", "method"), [("row", "PATCH"), ("table", "GET")])
def test_statement_past_its_timeout_is_503_and_the_connection_recovers(
    narrow_server: Server, healthy: Cluster, lock: str, method: str
) -> None:
    """On a pool of one connection, the request after the timeout reuses that connection."""
    user = f"locked-{method.lower()}"
    mark = narrow_server.log_mark()
    with httpx2.Client(
        base_url=narrow_server.url, headers=narrow_server.headers(user), timeout=15
    ) as client:
        path = _create(client, user)
        task_id = path.rsplit("/", 1)[1]
        body = {"json": {"title": "changed"}} if method == "PATCH" else {}
        with locked(healthy, LOCKS[lock], *([task_id] if lock == "row" else [])):
            started = time.monotonic()
            blocked = client.request(method, path, **body)  # type: ignore[arg-type]
            elapsed = time.monotonic() - started
        after = client.request(method, path, **body)  # type: ignore[arg-type]

    figures = report(
        f"{lock} lock held past the statement timeout, {method}: {blocked.status_code} "
        f"{blocked.headers.get('content-type')} after {elapsed:.2f} s; next request on the "
        f"same connection {after.status_code}"
    )
    if blocked.status_code == 409:
        assert blocked.json()["code"] == "conflict", describe(blocked)
    else:
        assert is_unavailable(blocked), f"{describe(blocked)}; {figures}"
        assert blocked.json()["code"] == "timeout", f"{describe(blocked)}; {figures}"
    assert elapsed <= ANSWER_WITHIN_SECONDS, figures
    assert after.status_code == 200, f"{describe(after)}; {figures}"
    assert_no_leaks(narrow_server, mark, [blocked.text, after.text])


async def _pile_up(server: Server, user: str, path: str) -> tuple[list[Outcome], list[Outcome]]:
    async with (
        httpx2.AsyncClient(base_url=server.url, headers=server.headers(user), timeout=15) as api,
        httpx2.AsyncClient(base_url=server.url, timeout=15) as health,
    ):
        piled = asyncio.gather(*(timed(api, "GET", path) for _ in range(PILED_UP)))
        probes = []
        await asyncio.sleep(0.1)
        while not piled.done():
            probes.append(await timed(health, "GET", "/healthz"))
            await asyncio.sleep(0.2)
        return list(await piled), probes


def test_exhausted_pool_answers_503_in_bounded_time(
    narrow_server: Server, healthy: Cluster
) -> None:
    """A pool of one connection, held by a request waiting on a lock: the others wait for
    a connection at most the pool timeout, then 503; health never waits."""
    user = "pool-exhausted"
    mark = narrow_server.log_mark()
    with httpx2.Client(
        base_url=narrow_server.url, headers=narrow_server.headers(user), timeout=15
    ) as client:
        path = _create(client, user)
    with locked(healthy, "LOCK TABLE tasks IN ACCESS EXCLUSIVE MODE"):
        outcomes, probes = asyncio.run(_pile_up(narrow_server, user, path))
    with httpx2.Client(
        base_url=narrow_server.url, headers=narrow_server.headers(user), timeout=15
    ) as client:
        after = client.get(path)

    codes = Counter(o.response.json()["code"] if o.response else o.error for o in outcomes)
    slowest = max(outcome.elapsed for outcome in outcomes)
    slowest_health = max((probe.elapsed for probe in probes), default=float("inf"))
    figures = report(
        f"pool of 1, {PILED_UP} requests piled up: {dict(codes)}, slowest {slowest:.2f} s; "
        f"{len(probes)} health probes meanwhile, slowest {slowest_health:.3f} s; "
        f"after release {after.status_code}"
    )
    unexpected = [describe(o.response) if o.response else o.error for o in outcomes]
    assert all(o.response is not None and is_unavailable(o.response) for o in outcomes), (
        f"{unexpected}; {figures}"
    )
    assert codes["db_unavailable"] >= 1, figures  # some waited out the pool timeout
    assert slowest <= ANSWER_WITHIN_SECONDS, figures
    assert probes, figures
    assert all(p.response is not None and p.response.status_code == 200 for p in probes)
    assert slowest_health <= HEALTH_WITHIN_SECONDS, figures
    assert after.status_code == 200, f"{describe(after)}; {figures}"
    assert_no_leaks(narrow_server, mark, [o.response.text for o in outcomes if o.response])
