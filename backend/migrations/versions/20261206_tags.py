"""Tags: `tags` (a user's labels, unique by name key), `task_tags` (which task carries
which, by the tag's key, so that a rename cascades) and `tasks.tags` (the names a task
shows, kept with the row so that a read needs no join). The `task_search` view is
recreated with the new column (migration `task_search_view`).

Revision ID: 2e3f4a5b6c7d
Revises: 1d2e3f4a5b6c
Create Date: 2026-12-06 17:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "2e3f4a5b6c7d"
down_revision: str | None = "1d2e3f4a5b6c"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CALLER = "current_setting('app.user_id', true)"
COLUMNS = (
    "user_id, id, title, description, priority, due_at, completed, completed_at, "
    "category_id, created_at, updated_at, version"
)


def _view(columns: str) -> None:
    caller = ""
    if op.get_context().dialect.name == "postgresql":
        caller = " WHERE user_id = current_setting('app.user_id', true)"
    op.execute(f"CREATE VIEW task_search AS SELECT {columns} FROM tasks{caller}")  # noqa: S608


def upgrade() -> None:
    op.create_table(
        "tags",
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=50), nullable=False),
        sa.Column("name_key", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_tags_user"),
        sa.PrimaryKeyConstraint("user_id", "id"),
        sa.UniqueConstraint("user_id", "name_key", name="uq_tags_user_name_key"),
    )
    op.create_table(
        "task_tags",
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("task_id", sa.Uuid(), nullable=False),
        sa.Column("tag_key", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id", "task_id"],
            ["tasks.user_id", "tasks.id"],
            name="fk_task_tags_task",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id", "tag_key"],
            ["tags.user_id", "tags.name_key"],
            name="fk_task_tags_tag",
            ondelete="CASCADE",
            onupdate="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", "task_id", "tag_key"),
    )
    op.create_index("ix_task_tags_user_tag", "task_tags", ["user_id", "tag_key", "task_id"])
    op.execute("DROP VIEW task_search")
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(
            sa.Column("tags", sa.JSON(), nullable=False, server_default=sa.text("'[]'"))
        )
    _view(f"{COLUMNS}, tags")
    if op.get_context().dialect.name != "postgresql":
        return
    mine = f"user_id = {CALLER}"
    for name in ("tags", "task_tags"):
        op.execute(f"ALTER TABLE {name} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {name} FORCE ROW LEVEL SECURITY")
        op.execute(f"CREATE POLICY owner_only ON {name} USING ({mine}) WITH CHECK ({mine})")


def downgrade() -> None:
    op.execute("DROP VIEW task_search")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("tags")
    _view(COLUMNS)
    op.drop_table("task_tags")
    op.drop_table("tags")
