"""Sync under load: 16 writers make random writes to one user's tasks and categories while
clients sync from the change feed in a loop; at the end each client's copy equals what the
lists show, field for field, with no change missed and no deleted entity brought back."""

import random
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi.testclient import TestClient

from tests.conftest import AuthFactory

USER = "syncer"
WRITERS = 16
WRITES_EACH = 200
Copy = dict[tuple[str, str], dict[str, Any]]


class Writer:
    """Random writes of every kind, on entities that the writers share (so that they race:
    a 404, 409 or 412 is an answer too, never a 5xx)."""

    def __init__(self, client: TestClient, headers: dict[str, str], seed: int) -> None:
        self.client, self.headers = client, headers
        self.rng = random.Random(seed)
        self.seed = seed

    def run(self, tasks: list[str], categories: list[str], lock: threading.Lock) -> None:
        for number in range(WRITES_EACH):
            with lock:
                task = self.rng.choice(tasks) if tasks else None
                category = self.rng.choice(categories) if categories else None
            response = self._write(number, task, category)
            assert response.status_code < 500, response.text
            if response.status_code == 201:
                kind = "tasks" if "/tasks" in str(response.url) else "categories"
                with lock:
                    (tasks if kind == "tasks" else categories).append(response.json()["id"])

    def _write(self, number: int, task: str | None, category: str | None) -> Any:
        api, rng = f"/api/{USER}", self.rng
        choice = rng.random()
        if task is None or choice < 0.2:
            body: dict[str, str | None] = {"title": f"w{self.seed}-{number}"}
            if category is not None and rng.random() < 0.5:
                body["category_id"] = category
            return self.client.post(f"{api}/tasks", json=body, headers=self.headers)
        if choice < 0.45:
            body = {
                "title": f"t{self.seed}-{number}",
                "category_id": category,
                "priority": rng.choice(["none", "low", "high"]),
            }
            return self.client.patch(f"{api}/tasks/{task}", json=body, headers=self.headers)
        if choice < 0.6:
            end = rng.choice(["complete", "incomplete"])
            return self.client.patch(f"{api}/tasks/{task}/{end}", headers=self.headers)
        if choice < 0.7:
            return self.client.delete(f"{api}/tasks/{task}", headers=self.headers)
        if category is None or choice < 0.8:
            body = {"name": f"c{self.seed}-{number}"}
            return self.client.post(f"{api}/categories", json=body, headers=self.headers)
        if choice < 0.92:
            body = {"name": f"r{self.seed}-{number}"}
            return self.client.patch(
                f"{api}/categories/{category}", json=body, headers=self.headers
            )
        return self.client.delete(f"{api}/categories/{category}", headers=self.headers)


class Syncer:
    """A client that keeps a copy of the user's tasks and categories from the feed."""

    def __init__(self, client: TestClient, headers: dict[str, str]) -> None:
        self.client, self.headers = client, headers
        self.copy: Copy = {}
        self.since: str | None = None
        self.pages = 0

    def pull(self) -> None:
        """Read the feed until it has nothing more."""
        while True:
            params = {"limit": 50} | ({"since": self.since} if self.since else {})
            response = self.client.get(f"/api/{USER}/changes", params=params, headers=self.headers)
            assert response.status_code == 200, response.text
            page = response.json()
            self.pages += 1
            for change in page["changes"]:
                key = (change["entity"], change["id"])
                if change["op"] == "delete":
                    self.copy.pop(key, None)
                else:
                    assert change["data"]["version"] == change["version"]
                    self.copy[key] = change["data"]
            self.since = page["next_since"]
            if not page["has_more"]:
                return


def _listed(client: TestClient, headers: dict[str, str]) -> Copy:
    listed: Copy = {}
    for entity, path in (("task", "tasks"), ("category", "categories")):
        cursor = None
        while True:
            params = {"limit": 100} | ({"cursor": cursor} if cursor else {})
            page = client.get(f"/api/{USER}/{path}", params=params, headers=headers).json()
            listed |= {(entity, item["id"]): item for item in page["items"]}
            if (cursor := page["next_cursor"]) is None:
                break
    return listed


def test_sync_while_16_writers_write_misses_nothing(client: TestClient, auth: AuthFactory) -> None:
    """Every thread's requests go through the test client to its one event loop, where
    they interleave at each database call."""
    headers = auth(USER)
    tasks: list[str] = []
    categories: list[str] = []
    lock = threading.Lock()
    early, late = Syncer(client, headers), Syncer(client, headers)
    done = threading.Event()

    def sync_in_a_loop() -> None:
        while not done.is_set():
            early.pull()
            if len(tasks) > WRITERS * WRITES_EACH // 10 and late.pages == 0:
                late.pull()  # a client that starts mid-way
            elif late.pages:
                late.pull()

    with ThreadPoolExecutor(WRITERS + 1) as pool:
        syncing = pool.submit(sync_in_a_loop)
        writers = [
            pool.submit(Writer(client, headers, seed).run, tasks, categories, lock)
            for seed in range(WRITERS)
        ]
        for writer in writers:
            writer.result()
        done.set()
        syncing.result()
    early.pull()
    late.pull()

    listed = _listed(client, headers)
    assert len(listed) > 100, len(listed)
    assert early.pages > 2, early.pages
    assert late.pages > 1, late.pages
    for syncer in (early, late):
        assert syncer.copy.keys() == listed.keys()
        assert syncer.copy == listed
