"""`task_search`: the caller's tasks, for searches the trigram index can serve.

Under row-level security PostgreSQL evaluates a query's own conditions only after the
policy's, unless they are leakproof; `ILIKE` is not, so a search as the service's role
cannot use `ix_tasks_search` and reads every task of the caller (145 ms at 100,000 tasks
against 5 at 100; specs/performance.md).

This view is the tasks table with the policy's own condition written into it. A view
reads its tables with its owner's rights, and its owner is the role that ran this
migration:
- where that role escapes row security (a superuser or `BYPASSRLS` role, as in the
  release step of `docker-compose.yml` and in the benchmarks), the view's condition
  stands in for the policy, the query's `ILIKE` may reach the index, and a search at
  100,000 tasks costs about what one at 100 does;
- where it does not (the service and its migrations as one plain role), the policy still
  applies inside the view: a search is as correct as before, and as slow.
It is deliberately not a `security_barrier` view, which would again hold `ILIKE` above
the condition. The service also filters by owner in the query itself, as everywhere.

The columns are listed by name: a migration that adds a column to `tasks` recreates this
view (`tests/test_migrations.py` compares the two). SQLite has no row security; there the
view is the table.

Revision ID: 6e5d4c3b2a1f
Revises: 5d4c3b2a1f0e
Create Date: 2026-12-03 13:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "6e5d4c3b2a1f"
down_revision: str | None = "5d4c3b2a1f0e"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (
    "user_id, id, title, description, priority, due_at, completed, completed_at, "
    "category_id, created_at, updated_at, version"
)


def upgrade() -> None:
    caller = ""
    if op.get_context().dialect.name == "postgresql":
        caller = " WHERE user_id = current_setting('app.user_id', true)"
    op.execute(f"CREATE VIEW task_search AS SELECT {COLUMNS} FROM tasks{caller}")  # noqa: S608


def downgrade() -> None:
    op.execute("DROP VIEW task_search")
