"""PostgreSQL's plans for statements whose cost would otherwise grow with a user's data."""

from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from backend.owned import OWNER
from backend.stats.service import _WEEK
from tests.conftest import AuthFactory, explain

USER, OTHER = "alice", "bob"
ROWS = {USER: 2_000, OTHER: 20_000}
"""The caller's rows among many others', as in a shared database."""


def test_weekly_counts_are_read_from_their_indexes_alone(
    client: TestClient, auth: AuthFactory, engine: Engine
) -> None:
    """The open and overdue counts and the week's entries are index-only scans: the
    indexes carry `due_at` and `action` (migration covering_stats_indexes), so a user's
    statistics do not read a table row per open task or per entry of the week."""
    for user in ROWS:
        assert client.get(f"/api/{user}/me", headers=auth(user)).status_code == 200
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO tasks (user_id, id, title, priority, completed, due_at, created_at,"
                " updated_at, version) SELECT :user, gen_random_uuid(), 'chore ' || n, 0,"
                " n % 2 = 0, now() + (n - 1000) * interval '1 hour', now(), now(), 1"
                " FROM generate_series(1, :rows) AS n"
            ),
            [{"user": user, "rows": rows} for user, rows in ROWS.items()],
        )
        connection.execute(
            text(
                "INSERT INTO task_history (user_id, id, task_id, action, changes, title,"
                " occurred_at) SELECT :user, gen_random_uuid(), gen_random_uuid(),"
                " CASE WHEN n % 3 = 0 THEN 'completed' ELSE 'created' END, '{}', 'chore',"
                " now() - (n % 200) * interval '1 hour' FROM generate_series(1, :rows) AS n"
            ),
            [{"user": user, "rows": rows} for user, rows in ROWS.items()],
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE tasks, task_history"))  # as autovacuum would
    now = datetime.now(UTC)
    values = {f"day{i}": now - timedelta(days=7 - i) for i in range(8)}

    plan = explain(engine, _WEEK, values | {OWNER: USER, "now": now}, as_user=USER)

    assert "Index Only Scan using ix_tasks_user_completed" in plan, plan
    assert "Index Only Scan using ix_task_history_user_occurred" in plan, plan


def test_writes_leave_the_search_index_a_short_pending_list(
    client: TestClient, auth: AuthFactory, engine: Engine
) -> None:
    """New trigram entries wait in the GIN index's pending list, which every search through
    the index reads whole, until it outgrows its limit: 256 kB, 32 pages, where
    PostgreSQL's default 4 MB let writes slow a large user's search sevenfold (migration
    search_pending_list). 5,000 new tasks fill the default list to over 100 pages."""
    assert client.get(f"/api/{USER}/me", headers=auth(USER)).status_code == 200
    with engine.begin() as connection:
        connection.execute(text("CREATE EXTENSION IF NOT EXISTS pgstattuple"))
        connection.execute(
            text(
                "INSERT INTO tasks (user_id, id, title, description, priority, completed,"
                " created_at, updated_at, version) SELECT :user, gen_random_uuid(),"
                " 'Renew the passport ' || n, 'Call about invoice ' || n, 0, false, now(),"
                " now(), 1 FROM generate_series(1, 5000) AS n"
            ),
            {"user": USER},
        )
        pending = connection.execute(
            text("SELECT pending_pages FROM pgstatginindex('ix_tasks_search')")
        ).scalar_one()

    assert pending <= 256 // 8, pending  # 256 kB of 8 kB pages
