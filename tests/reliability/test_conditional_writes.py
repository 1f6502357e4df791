"""Case 32: concurrent read-modify-write through `If-Match` loses nothing; without it, it does."""

import asyncio
import itertools
import random
from collections import Counter
from typing import Any

import httpx2

from tests.reliability.conftest import Server, assert_no_leaks, describe, report

WRITERS = 16
CYCLES = 50
BACKOFF_SECONDS = 0.01


async def _create(server: Server, user: str, title: str) -> dict[str, Any]:
    async with httpx2.AsyncClient(base_url=server.url, headers=server.headers(user)) as client:
        response = await client.post(f"/api/{user}/tasks", json={"title": title})
    assert response.status_code == 201, describe(response)
    body: dict[str, Any] = response.json()
    return body


async def _count_up(
    server: Server, user: str, path: str, *, writer: int, conditional: bool, bodies: list[str]
) -> Counter[int]:
    """`CYCLES` times: read the count, write count + 1, retrying on 412; the retries, by
    status. Without `If-Match`, a write that lost five races in a row answers 409, one
    stuck in the queue for the row's lock past the deadline 503: both are retried too.

    A write's answer is the task as it then stands, so it serves as the next cycle's read."""
    retries: Counter[int] = Counter()
    backoff = random.Random(writer)  # exponential backoff with jitter; seeded
    async with httpx2.AsyncClient(
        base_url=server.url, headers=server.headers(user), timeout=10
    ) as client:
        read = await client.get(path)
        for _ in range(CYCLES):
            for attempt in itertools.count():
                assert read.status_code == 200, describe(read)
                count = int(read.json()["title"].removeprefix("count="))
                condition = {"If-Match": read.headers["etag"]} if conditional else {}
                written = await client.patch(
                    path, json={"title": f"count={count + 1}"}, headers=condition
                )
                if written.status_code == 200:
                    read = written
                    break
                bodies.append(written.text)
                retry = {412} if conditional else {409, 503}
                assert written.status_code in retry, describe(written)
                retries[written.status_code] += 1
                await asyncio.sleep(backoff.uniform(0, BACKOFF_SECONDS * 2 ** min(attempt, 6)))
                read = await client.get(path)
    return retries


async def _race(
    server: Server, user: str, *, conditional: bool
) -> tuple[dict[str, Any], Counter[int], str]:
    task = await _create(server, user, "count=0")
    path = f"/api/{user}/tasks/{task['id']}"
    bodies: list[str] = []
    conflicts = await asyncio.gather(
        *(
            _count_up(server, user, path, writer=writer, conditional=conditional, bodies=bodies)
            for writer in range(WRITERS)
        )
    )
    async with httpx2.AsyncClient(base_url=server.url, headers=server.headers(user)) as client:
        final = await client.get(path)
    assert final.status_code == 200, describe(final)
    return final.json(), sum(conflicts, Counter()), "\n".join(bodies)


def test_read_modify_write_with_if_match_loses_no_update(server: Server) -> None:
    mark = server.log_mark()

    final, retries, bodies = asyncio.run(_race(server, "rmw-conditional", conditional=True))

    figures = report(
        f"If-Match: {WRITERS} writers x {CYCLES} cycles, {retries[412]} x 412 retried; "
        f"final {final['title']}, version {final['version']}"
    )
    assert retries[412] > 0, figures  # the writers did race
    assert final["title"] == f"count={WRITERS * CYCLES}", figures
    assert final["version"] == WRITERS * CYCLES + 1, figures
    assert_no_leaks(server, mark, [bodies])


def test_read_modify_write_without_if_match_loses_updates(server: Server) -> None:
    final, retries, _ = asyncio.run(_race(server, "rmw-unconditional", conditional=False))

    count = int(final["title"].removeprefix("count="))
    figures = report(
        f"no If-Match: {WRITERS} writers x {CYCLES} cycles, final count {count} "
        f"({WRITERS * CYCLES - count} updates lost), version {final['version']}, "
        f"retried {dict(retries)} (status: times)"
    )
    assert count < WRITERS * CYCLES, figures


async def _same_if_match(server: Server, user: str) -> list[tuple[str, httpx2.Response]]:
    task = await _create(server, user, "original")
    path = f"/api/{user}/tasks/{task['id']}"
    async with (
        httpx2.AsyncClient(base_url=server.url, headers=server.headers(user)) as first,
        httpx2.AsyncClient(base_url=server.url, headers=server.headers(user)) as second,
    ):
        etag = (await first.get(path)).headers["etag"]
        answers = await asyncio.gather(
            *(
                client.patch(path, json={"title": title}, headers={"If-Match": etag})
                for client, title in ((first, "first"), (second, "second"))
            )
        )
        stored = (await first.get(path)).json()
    return [(stored["title"], answer) for answer in answers]


def test_two_writers_with_the_same_if_match_one_wins(server: Server) -> None:
    mark = server.log_mark()
    rounds = [asyncio.run(_same_if_match(server, "same-if-match")) for _ in range(5)]

    for answers in rounds:
        statuses = sorted(answer.status_code for _, answer in answers)
        assert statuses == [200, 412], [describe(answer) for _, answer in answers]
        winner = next(answer for _, answer in answers if answer.status_code == 200)
        loser = next(answer for _, answer in answers if answer.status_code == 412)
        assert loser.json()["code"] == "precondition_failed"
        assert loser.headers["etag"] == winner.headers["etag"] == '"2"'
        assert answers[0][0] == winner.json()["title"]
    assert_no_leaks(server, mark, [answer.text for answers in rounds for _, answer in answers])
