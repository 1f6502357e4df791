"""The weekly statistics' counts from their indexes alone (PostgreSQL).

`GET /stats/weekly` counts the user's open tasks (and the overdue among them) and the
week's `created` and `completed` history entries. The owner-first indexes found those
rows, but each count then read every row from the table for the one column the index
lacked: `due_at` for the overdue count, `action` for the week's. Carried in the index
(`INCLUDE`), the counts become index-only scans wherever the visibility map is current
(autovacuum keeps it so): on a user of 8,776 open tasks and 7,742 entries in the week,
7.2 → 3.1 ms and 4.7 to 6.4 → 3.3 to 4.0 ms (`EXPLAIN ANALYZE`, specs/performance.md). Both
indexes keep serving the lists they served.

SQLite has no `INCLUDE`; its indexes stay as they are.

Revision ID: 7f6e5d4c3b2a
Revises: 6e5d4c3b2a1f
Create Date: 2026-12-03 16:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "7f6e5d4c3b2a"
down_revision: str | None = "6e5d4c3b2a1f"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TASKS = ("ix_tasks_user_completed", "tasks", "user_id, completed, created_at, id", "due_at")
HISTORY = ("ix_task_history_user_occurred", "task_history", "user_id, occurred_at, id", "action")


def _recreate(name: str, table: str, columns: str, include: str | None) -> None:
    carried = f" INCLUDE ({include})" if include else ""
    op.execute(f"DROP INDEX {name}")
    op.execute(f"CREATE INDEX {name} ON {table} ({columns}){carried}")


def upgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    for name, table, columns, include in (TASKS, HISTORY):
        _recreate(name, table, columns, include)


def downgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    for name, table, columns, _include in (TASKS, HISTORY):
        _recreate(name, table, columns, None)
