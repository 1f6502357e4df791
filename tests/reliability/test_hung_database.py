"""Case 35: a hung PostgreSQL (alive, answering nothing): 503 within the request deadline,
health answers meanwhile, and the service recovers by itself once it answers again."""

import asyncio
import time
from typing import Any

import httpx2

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

USER = "frozen"
ANSWER_WITHIN_SECONDS = DEADLINE_SECONDS + 0.5
HEALTH_WITHIN_SECONDS = 1.0
WAVES = 2
"""Requests go out in two waves: the first finds the pool's connections, the second
(while those are stuck) must open new ones to a postmaster that never answers."""
RECOVERY_GIVE_UP_SECONDS = 15.0
CLIENT_TIMEOUT_SECONDS = 15.0
"""Long enough to see how late a late answer comes."""


async def _requests(client: httpx2.AsyncClient, task_path: str) -> list[Outcome]:
    tasks = f"/api/{USER}/tasks"
    return list(
        await asyncio.gather(
            timed(client, "GET", tasks),
            timed(client, "GET", task_path),
            timed(client, "POST", tasks, json={"title": "while frozen"}),
            timed(client, "PATCH", task_path, json={"title": "changed while frozen"}),
            timed(client, "GET", f"/api/{USER}/history"),
            timed(client, "GET", f"/api/{USER}/me"),
        )
    )


async def _health(client: httpx2.AsyncClient, until: float) -> list[Outcome]:
    probes = []
    while time.monotonic() < until:
        probes.append(await timed(client, "GET", "/healthz"))
        await asyncio.sleep(0.2)
    return probes


async def _frozen_then_thawed(
    server: Server, cluster: Cluster
) -> tuple[list[Outcome], list[Outcome], float, list[Outcome]]:
    async with httpx2.AsyncClient(
        base_url=server.url, headers=server.headers(USER), timeout=CLIENT_TIMEOUT_SECONDS
    ) as client:
        created = await client.post(f"/api/{USER}/tasks", json={"title": "before the freeze"})
        assert created.status_code == 201, describe(created)
        task_path = f"/api/{USER}/tasks/{created.json()['id']}"
        cluster.freeze()
        try:
            frozen_at = time.monotonic()
            health = asyncio.create_task(_health(client, frozen_at + WAVES * DEADLINE_SECONDS))
            outcomes = []
            for _ in range(WAVES):
                outcomes += await _requests(client, task_path)
            probes = await health
        finally:
            cluster.thaw()
        thawed_at = time.monotonic()
        recovered = None
        while recovered is None and time.monotonic() < thawed_at + RECOVERY_GIVE_UP_SECONDS:
            outcome = await timed(client, "GET", task_path)
            if outcome.response is not None and outcome.response.status_code == 200:
                recovered = outcome.ended - thawed_at
            else:
                await asyncio.sleep(0.05)
        after = await _requests(client, task_path) if recovered is not None else []
    return outcomes, probes, recovered if recovered is not None else float("inf"), after


def test_hung_database_answers_503_within_the_deadline(server: Server, healthy: Cluster) -> None:
    mark = server.log_mark()

    outcomes, probes, recovery, after = asyncio.run(_frozen_then_thawed(server, healthy))

    slowest = max(outcome.elapsed for outcome in outcomes)
    slowest_health = max(probe.elapsed for probe in probes)
    figures = report(
        f"frozen: {len(outcomes)} requests, slowest answer {slowest:.2f} s "
        f"(codes {sorted({_code(o) for o in outcomes})}); {len(probes)} health probes, slowest "
        f"{slowest_health:.3f} s; first success {recovery:.2f} s after thaw; after it "
        f"{[_status(o) for o in after]}"
    )
    refused = [_describe(outcome) for outcome in outcomes if not _is_unavailable(outcome)]
    assert not refused, f"{refused}; {figures}"
    assert slowest <= ANSWER_WITHIN_SECONDS, figures
    assert all(_status(probe) == 200 for probe in probes), figures
    assert slowest_health <= HEALTH_WITHIN_SECONDS, figures
    assert recovery < RECOVERY_GIVE_UP_SECONDS, figures
    assert [_status(outcome) for outcome in after] == [200, 200, 201, 200, 200, 200], figures
    assert_no_leaks(
        server, mark, [o.response.text for o in outcomes + probes + after if o.response]
    )


def _status(outcome: Outcome) -> Any:
    return outcome.response.status_code if outcome.response is not None else outcome.error


def _code(outcome: Outcome) -> Any:
    return outcome.response.json().get("code") if outcome.response is not None else outcome.error


def _is_unavailable(outcome: Outcome) -> bool:
    return outcome.response is not None and is_unavailable(outcome.response)


def _describe(outcome: Outcome) -> str:
    return describe(outcome.response) if outcome.response is not None else str(outcome.error)


READY_WITHIN_SECONDS = 1.5
"""`/readyz` gives the database a second; the rest is the machine's scheduling."""
READY_PROBES = 12


async def _readiness_while_frozen(server: Server, cluster: Cluster) -> tuple[list[Outcome], float]:
    async with httpx2.AsyncClient(
        base_url=server.url, headers=server.headers(USER), timeout=CLIENT_TIMEOUT_SECONDS
    ) as client:
        # A warm pool: the probe finds an open connection, the case that hung longest.
        warm = await asyncio.gather(*(timed(client, "GET", f"/api/{USER}/me") for _ in range(8)))
        assert all(_status(outcome) == 200 for outcome in warm), [_describe(o) for o in warm]
        ready = await timed(client, "GET", "/readyz")
        assert _status(ready) == 200, _describe(ready)
        cluster.freeze()
        try:
            probes = []
            for _ in range(READY_PROBES):
                probes.append(await timed(client, "GET", "/readyz"))
                await asyncio.sleep(0.25)
        finally:
            cluster.thaw()
        thawed_at = time.monotonic()
        while time.monotonic() < thawed_at + RECOVERY_GIVE_UP_SECONDS:
            outcome = await timed(client, "GET", "/readyz")
            if _status(outcome) == 200:
                return probes, outcome.ended - thawed_at
            await asyncio.sleep(0.1)
    return probes, float("inf")


def test_readyz_answers_503_within_a_second_while_frozen(server: Server, healthy: Cluster) -> None:
    mark = server.log_mark()

    probes, recovery = asyncio.run(_readiness_while_frozen(server, healthy))

    slowest = max(probe.elapsed for probe in probes)
    figures = report(
        f"/readyz while frozen: {len(probes)} probes, slowest {slowest:.2f} s, codes "
        f"{sorted({_code(p) for p in probes})}; ready again {recovery:.2f} s after thaw"
    )
    assert all(_status(probe) == 503 for probe in probes), figures
    assert {_code(probe) for probe in probes} == {"db_unavailable"}, figures
    assert slowest <= READY_WITHIN_SECONDS, figures
    assert recovery < RECOVERY_GIVE_UP_SECONDS, figures
    assert_no_leaks(server, mark, [p.response.text for p in probes if p.response])
