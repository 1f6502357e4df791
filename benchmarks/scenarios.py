"""What each benchmark scenario asks: a list of requests that wrk cycles through."""

import time
from dataclasses import dataclass, field
from datetime import timedelta
from itertools import cycle, islice
from urllib.parse import urlencode

from backend.db import utcnow
from backend.pagination import CursorSigner
from backend.tasks.service import SORTS
from benchmarks.dataset import UserData

LIMIT = 20
"""Items per page, in every list scenario and in the ceiling."""

Request = tuple[str, str, str]  # method, path, JSON body ("" for none)


@dataclass(frozen=True)
class Scenario:
    name: str
    requests: list[Request]
    writes: bool = False
    reopen: list[str] = field(default_factory=list)  # task ids to reopen before each run


def list_path(user: UserData, **query: object) -> str:
    return f"/api/{user.user_id}/tasks?{urlencode({'limit': LIMIT, **query})}"


def middle_cursor(user: UserData, signer: CursorSigner) -> str:
    keyset = SORTS["-created_at"]
    created_at, task_id = user.middle
    position = [keyset.adapter.dump_python(created_at, mode="json"), str(task_id)]
    return signer.encode(user.user_id, "tasks:-created_at", position)


def changes_path(user: UserData, signer: CursorSigner) -> str:
    """A page of 100 changes from the middle of the user's feed (a token issued now)."""
    token = signer.encode(user.user_id, "changes", [user.middle_change, 0, int(time.time())])
    return f"/api/{user.user_id}/changes?{urlencode({'limit': 100, 'since': token})}"


def throughput(user: UserData, signer: CursorSigner) -> list[Scenario]:
    """The endpoints of the throughput table, for one user."""
    base = f"/api/{user.user_id}"
    ids = [str(task_id) for task_id in user.task_ids]
    open_ids = [str(task_id) for task_id in user.open_task_ids]
    renames = [
        ("PATCH", f"{base}/tasks/{task_id}", f'{{"title": "Benchmark rename {round_}"}}')
        for round_ in (1, 2)
        for task_id in ids
    ]
    toggles = [
        ("PATCH", f"{base}/tasks/{task_id}/{action}", "")
        for action in ("complete", "incomplete")
        for task_id in open_ids
    ]
    creates = [("POST", f"{base}/tasks", f'{{"title": "Benchmark task {n}"}}') for n in range(100)]
    first_page: Request = ("GET", list_path(user), "")
    gets = [("GET", f"{base}/tasks/{task_id}", "") for task_id in ids]
    filtered: Request = ("GET", list_path(user, completed="false", sort="due_at"), "")
    middle: Request = ("GET", list_path(user, cursor=middle_cursor(user, signer)), "")
    mix = _mixed(
        (first_page, 35), (filtered, 10), (gets, 25), (creates, 10), (renames, 10), (toggles, 5),
        (("GET", f"{base}/history?limit={LIMIT}", ""), 5),
    )  # fmt: skip
    return [
        Scenario("list first page", [first_page]),
        Scenario("list middle page (cursor)", [middle]),
        Scenario("list filtered + sorted", [filtered]),
        Scenario("search q", [("GET", list_path(user, q="invoice"), "")]),
        Scenario("get one", gets),
        Scenario("history page", [("GET", f"{base}/history?limit={LIMIT}", "")]),
        Scenario("changes", [("GET", changes_path(user, signer), "")]),
        Scenario("weekly stats", [("GET", f"{base}/stats/weekly", "")]),
        Scenario("create", creates, writes=True),
        Scenario("update (PATCH)", renames, writes=True),
        Scenario("complete / reopen", toggles, writes=True, reopen=open_ids),
        Scenario("mix", mix, writes=True, reopen=open_ids),
    ]  # fmt: skip


def _mixed(*parts: tuple[Request | list[Request], int]) -> list[Request]:
    """Interleave request kinds by weight (out of 100), cycling through each kind's list."""
    sources = [
        (cycle(part if isinstance(part, list) else [part]), weight) for part, weight in parts
    ]
    rounds = 40
    mixed: list[Request] = []
    for _ in range(rounds):
        for source, weight in sources:
            mixed.extend(islice(source, weight))
    # Spread the kinds out instead of running them in blocks.
    stride = 7
    return [mixed[(i * stride) % len(mixed)] for i in range(len(mixed))]


def scale_queries(user: UserData) -> dict[str, dict[str, object]]:
    """The page queries whose latency must not grow with the user's data: every sort, every
    filter, search (common, rare, absent terms)."""
    now = utcnow()
    queries: dict[str, dict[str, object]] = {f"sort={sort}": {"sort": sort} for sort in SORTS}
    queries |= {
        "completed=false": {"completed": "false"},
        "completed=true": {"completed": "true"},
        "category_id": {"category_id": str(user.category_id)},
        "category_id=none": {"category_id": "none"},
        "priority=high": {"priority": "high"},
        "due_before (next 7 days)": {"due_before": _instant(now + timedelta(days=7))},
        "due_after (last 7 days)": {"due_after": _instant(now - timedelta(days=7))},
        "completed=false&sort=due_at": {"completed": "false", "sort": "due_at"},
        "q (common word)": {"q": "invoice"},
        "q (rare phrase)": {"q": "renew passport"},
        "q (no match)": {"q": "xylophone"},
    }
    return queries


def _instant(value: object) -> str:
    return value.isoformat().replace("+00:00", "Z") if hasattr(value, "isoformat") else str(value)
