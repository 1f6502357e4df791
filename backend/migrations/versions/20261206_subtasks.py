"""Subtasks: `tasks.parent_id`, a reference to another task of the same user (the
service keeps the tree at most 5 deep and free of cycles), and its index for the
`parent_id` filter. The `task_search` view is recreated with the new column.

SQLite adds a reference by copying the table, and with foreign keys on, dropping the old
copy first deletes its rows, which cascades to `task_tags`: the links are kept aside and
put back (`_tasks_copied`).

Revision ID: 4a5b6c7d8e9f
Revises: 3f4a5b6c7d8e
Create Date: 2026-12-06 18:00:00
"""

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op

revision: str = "4a5b6c7d8e9f"
down_revision: str | None = "3f4a5b6c7d8e"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (
    "user_id, id, title, description, priority, due_at, completed, completed_at, "
    "category_id, created_at, updated_at, version, tags"
)


def _view(columns: str) -> None:
    caller = ""
    if op.get_context().dialect.name == "postgresql":
        caller = " WHERE user_id = current_setting('app.user_id', true)"
    op.execute(f"CREATE VIEW task_search AS SELECT {columns} FROM tasks{caller}")  # noqa: S608


@contextmanager
def _tasks_copied() -> Iterator[None]:
    """Around a change that copies `tasks` (SQLite): its tags' links survive it."""
    sqlite = op.get_context().dialect.name == "sqlite"
    if sqlite:
        op.execute("CREATE TEMP TABLE task_tags_kept AS SELECT * FROM task_tags")
    yield
    if sqlite:
        op.execute("INSERT INTO task_tags SELECT * FROM task_tags_kept")
        op.execute("DROP TABLE task_tags_kept")


def upgrade() -> None:
    op.execute("DROP VIEW task_search")
    with _tasks_copied(), op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("parent_id", sa.Uuid(), nullable=True))
        batch.create_foreign_key(
            "fk_tasks_user_parent", "tasks", ["user_id", "parent_id"], ["user_id", "id"]
        )
        batch.create_index("ix_tasks_user_parent", ["user_id", "parent_id", "created_at", "id"])
    _view(f"{COLUMNS}, parent_id")


def downgrade() -> None:
    op.execute("DROP VIEW task_search")
    with _tasks_copied(), op.batch_alter_table("tasks") as batch:
        batch.drop_index("ix_tasks_user_parent")
        batch.drop_constraint("fk_tasks_user_parent", type_="foreignkey")
        batch.drop_column("parent_id")
    _view(COLUMNS)
