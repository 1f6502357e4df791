"""Case 34: PostgreSQL restarted or stopped under load: fast 503s, recovery within a
second of its return, and every acknowledged write kept (and none that was not)."""

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx2
import pytest

from tests.reliability.conftest import (
    Cluster,
    Outcome,
    Server,
    assert_no_leaks,
    created_entries,
    describe,
    is_unavailable,
    report,
    stored_tasks,
    timed,
)

WRITERS = 4
LOAD_BEFORE_SECONDS = 1.0
LOAD_AFTER_SECONDS = 1.5
PAUSE_SECONDS = 1.5
FAIL_FAST_SECONDS = 1.0
RECOVERY_SECONDS = 1.0


@dataclass
class Run:
    """What the writers saw: each title sent and its outcome; when the fault began and
    when the database accepted connections again."""

    sent: list[tuple[str, Outcome]] = field(default_factory=list)
    fault_at: float = 0.0
    ready_at: float = 0.0

    def acknowledged(self) -> dict[str, str]:
        """id to title of every 201."""
        return {
            outcome.response.json()["id"]: title
            for title, outcome in self.sent
            if outcome.response is not None and outcome.response.status_code == 201
        }

    def failures(self) -> list[Outcome]:
        return [
            outcome
            for _, outcome in self.sent
            if outcome.response is None or outcome.response.status_code != 201
        ]


async def _write(server: Server, user: str, writer: int, done: asyncio.Event, run: Run) -> None:
    async with httpx2.AsyncClient(
        base_url=server.url, headers=server.headers(user), timeout=10
    ) as client:
        for sequence in range(100_000):
            if done.is_set():
                return
            title = f"writer {writer} task {sequence}"
            outcome = await timed(client, "POST", f"/api/{user}/tasks", json={"title": title})
            run.sent.append((title, outcome))
            if outcome.response is None or outcome.response.status_code != 201:
                await asyncio.sleep(0.05)  # a client that retries soon, not in a hot loop


async def _under_load(server: Server, user: str, fault: Callable[[], float]) -> Run:
    run, done = Run(), asyncio.Event()
    writers = [asyncio.create_task(_write(server, user, n, done, run)) for n in range(WRITERS)]
    try:
        await asyncio.sleep(LOAD_BEFORE_SECONDS)
        run.fault_at = time.monotonic()
        run.ready_at = await asyncio.to_thread(fault)
        await asyncio.sleep(LOAD_AFTER_SECONDS)
    finally:
        done.set()
        await asyncio.gather(*writers)
    return run


def _restart(cluster: Cluster) -> float:
    return cluster.restart()


def _stop_pause_start(cluster: Cluster) -> float:
    cluster.stop()
    time.sleep(PAUSE_SECONDS)
    return cluster.start()


@pytest.mark.parametrize(
    "fault",
    [pytest.param(_restart, id="restart"), pytest.param(_stop_pause_start, id="stop-pause-start")],
)
def test_writes_under_load_survive_postgres_going_away(
    server: Server, healthy: Cluster, fault: Callable[[Cluster], float]
) -> None:
    user = f"load-{fault.__name__.strip('_')}"
    mark = server.log_mark()

    run = asyncio.run(_under_load(server, user, lambda: fault(healthy)))

    failures = run.failures()
    acknowledged = run.acknowledged()
    stored = stored_tasks(healthy, user)
    entries = created_entries(healthy, user)
    successes_after = [
        outcome.ended
        for _, outcome in run.sent
        if outcome.response is not None
        and outcome.response.status_code == 201
        and outcome.ended >= run.ready_at
    ]
    recovery = min(successes_after, default=float("inf")) - run.ready_at
    codes = Counter(
        outcome.response.json().get("code") if outcome.response is not None else outcome.error
        for outcome in failures
    )
    slowest = max((outcome.elapsed for outcome in failures), default=0.0)
    figures = report(
        f"{fault.__name__.strip('_')}: {len(run.sent)} requests, {len(failures)} failures "
        f"{dict(codes)}, slowest failure {slowest:.2f} s; database back "
        f"{run.ready_at - run.fault_at:.2f} s after the fault; first success {recovery:.2f} s "
        f"after ready; {len(acknowledged)} acknowledged, {len(stored)} stored, "
        f"{len(set(stored) - set(acknowledged))} stored unacknowledged"
    )
    assert failures, f"the fault was not seen: {figures}"
    unexpected = [
        describe(outcome.response) if outcome.response is not None else outcome.error
        for outcome in failures
        if outcome.response is None or not is_unavailable(outcome.response)
    ]
    assert not unexpected, f"{unexpected[:5]}; {figures}"
    assert slowest <= FAIL_FAST_SECONDS, figures
    assert recovery <= RECOVERY_SECONDS, figures
    assert stored == acknowledged, figures
    assert entries == {task_id: (title, 1) for task_id, title in stored.items()}, figures
    assert_no_leaks(
        server, mark, [outcome.response.text for _, outcome in run.sent if outcome.response]
    )
