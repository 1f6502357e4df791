"""Demo data: `todo-api seed` and `backend.seed`, checked through stored rows and the API."""

import asyncio
from collections import Counter
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from backend import config, db
from backend.cli import app as cli
from backend.config import Settings
from backend.seed import CATEGORIES, seed
from tests.conftest import SECRET, AuthFactory, sync_url

TASKS = 30


def _seed(settings: Settings, user_ids: list[str], progress: list[int] | None = None) -> None:
    async def load() -> None:
        engine = db.create_engine(settings)
        try:
            sessions = db.create_sessionmaker(engine, settings)
            await seed(
                sessions,
                user_ids=user_ids,
                tasks_per_user=TASKS,
                progress=None if progress is None else progress.append,
            )
        finally:
            await engine.dispose()

    asyncio.run(load())


def test_seed_gives_each_user_categories_tasks_and_their_history(
    client: TestClient, auth: AuthFactory, settings: Settings
) -> None:
    progress: list[int] = []

    _seed(settings, ["demo-a", "demo-b"], progress)

    assert sum(progress) == 2 * TASKS
    for user in ("demo-a", "demo-b"):
        headers = auth(user)
        tasks = client.get(f"/api/{user}/tasks?limit=100", headers=headers)
        categories = client.get(f"/api/{user}/categories?limit=100", headers=headers)
        history = client.get(f"/api/{user}/history?limit=100", headers=headers)
        assert (tasks.status_code, categories.status_code, history.status_code) == (200,) * 3
        items = tasks.json()["items"]
        assert len(items) == TASKS
        assert {c["name"] for c in categories.json()["items"]} == {n for n, _ in CATEGORIES}
        done = [task for task in items if task["completed"]]
        assert all(task["completed_at"] and task["version"] == 2 for task in done)
        actions = Counter(entry["action"] for entry in history.json()["items"])
        assert actions == {"created": TASKS, "completed": len(done)}
        own = {task["id"] for task in items}
        assert {entry["task_id"] for entry in history.json()["items"]} == own


def test_seed_leaves_existing_users_alone(
    client: TestClient, auth: AuthFactory, settings: Settings
) -> None:
    _seed(settings, ["demo-a"])

    _seed(settings, ["demo-a"])

    response = client.get("/api/demo-a/tasks?limit=100", headers=auth("demo-a"))
    assert response.status_code == 200
    assert len(response.json()["items"]) == TASKS


def test_seed_command_loads_demo_users(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/seed.db"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("JWT_SECRET", SECRET)
    config.get_settings.cache_clear()

    result = CliRunner().invoke(cli, ["seed", "--users", "2", "--tasks", "25"])

    config.get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert "Seeded 2 users" in result.output
    engine = create_engine(sync_url(Settings(database_url=url).database_url))
    with engine.connect() as connection:
        counts = connection.execute(
            text("SELECT user_id, count(*) FROM tasks GROUP BY user_id ORDER BY user_id")
        ).all()
    engine.dispose()
    assert [tuple(row) for row in counts] == [("demo-user-1", 25), ("demo-user-2", 25)]
