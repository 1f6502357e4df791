"""Recurrence and reminders: `tasks.recurrence` (the rule, with where its series
stands), `tasks.reminders` (as set) and `reminders` (when each falls, and whether it
fired). The `task_search` view is recreated with the new columns.

Revision ID: 5b6c7d8e9f0a
Revises: 4a5b6c7d8e9f
Create Date: 2026-12-06 19:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5b6c7d8e9f0a"
down_revision: str | None = "4a5b6c7d8e9f"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CALLER = "current_setting('app.user_id', true)"
COLUMNS = (
    "user_id, id, title, description, priority, due_at, completed, completed_at, "
    "category_id, created_at, updated_at, version, tags, parent_id"
)


def _view(columns: str) -> None:
    caller = ""
    if op.get_context().dialect.name == "postgresql":
        caller = f" WHERE user_id = {CALLER}"
    op.execute(f"CREATE VIEW task_search AS SELECT {columns} FROM tasks{caller}")  # noqa: S608


def upgrade() -> None:
    op.execute("DROP VIEW task_search")
    # Plain ADD COLUMNs: SQLite keeps the table (a copy would cascade into its links).
    op.add_column("tasks", sa.Column("recurrence", sa.JSON(), nullable=True))
    op.add_column(
        "tasks", sa.Column("reminders", sa.JSON(), nullable=False, server_default=sa.text("'[]'"))
    )
    _view(f"{COLUMNS}, recurrence, reminders")
    op.create_table(
        "reminders",
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("task_id", sa.Uuid(), nullable=False),
        sa.Column("fire_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("fired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("title", sa.String(length=200), nullable=True),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id", "task_id"],
            ["tasks.user_id", "tasks.id"],
            name="fk_reminders_task",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", "id"),
    )
    op.create_index("ix_reminders_user_task", "reminders", ["user_id", "task_id"])
    op.create_index(
        "ix_reminders_due",
        "reminders",
        ["fire_at"],
        postgresql_where=sa.text("fired_at IS NULL"),
        sqlite_where=sa.text("fired_at IS NULL"),
    )
    if op.get_context().dialect.name != "postgresql":
        return
    mine = f"user_id = {CALLER}"
    op.execute("ALTER TABLE reminders ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE reminders FORCE ROW LEVEL SECURITY")
    op.execute(f"CREATE POLICY owner_only ON reminders USING ({mine}) WITH CHECK ({mine})")


def downgrade() -> None:
    # What the code before this revision cannot read: the feed's fired reminders go (they
    # were notices), and a recurring task's moves read as the updates they were.
    op.execute("DELETE FROM changes WHERE entity = 'reminder'")
    op.execute("UPDATE task_history SET action = 'updated' WHERE action = 'rescheduled'")
    op.drop_table("reminders")
    op.execute("DROP VIEW task_search")
    # Plain DROP COLUMNs (SQLite 3.35 and later), for the same reason.
    op.execute("ALTER TABLE tasks DROP COLUMN reminders")
    op.execute("ALTER TABLE tasks DROP COLUMN recurrence")
    _view(COLUMNS)
