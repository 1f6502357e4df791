"""Initial schema: users, categories, tasks and task history, owner-first keys.

Revision ID: e62a9c73837e
Revises:
Create Date: 2026-11-22 03:24:20
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "e62a9c73837e"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _owner() -> sa.Column[str]:
    return sa.Column("user_id", sa.String(255), nullable=False)


def _timestamp(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.String(255), nullable=False),
        sa.Column("email", sa.String(320), nullable=True),
        sa.Column("name", sa.String(255), nullable=True),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "categories",
        _owner(),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(50), nullable=False),
        sa.Column("color", sa.String(7), nullable=True),
        sa.Column("name_key", sa.String(200), nullable=False),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_categories_user"),
        sa.PrimaryKeyConstraint("user_id", "id"),
        sa.UniqueConstraint("user_id", "name_key", name="uq_categories_user_name_key"),
    )
    op.create_table(
        "tasks",
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("description", sa.String(5000), nullable=True),
        sa.Column("priority", sa.SmallInteger(), nullable=False),
        _timestamp("due_at", nullable=True),
        sa.Column("category_id", sa.Uuid(), nullable=True),
        _owner(),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("completed", sa.Boolean(), nullable=False),
        _timestamp("completed_at", nullable=True),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_tasks_user"),
        sa.ForeignKeyConstraint(
            ["user_id", "category_id"],
            ["categories.user_id", "categories.id"],
            name="fk_tasks_user_category",
        ),
        sa.PrimaryKeyConstraint("user_id", "id"),
    )
    for name, columns in {
        "ix_tasks_user_created": ["created_at"],
        "ix_tasks_user_updated": ["updated_at"],
        "ix_tasks_user_due": ["due_at"],
        "ix_tasks_user_priority": ["priority"],
        "ix_tasks_user_title": ["title"],
        "ix_tasks_user_completed": ["completed", "created_at"],
        "ix_tasks_user_category": ["category_id", "created_at"],
    }.items():
        op.create_index(name, "tasks", ["user_id", *columns, "id"])
    op.create_table(
        "task_history",
        _owner(),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("task_id", sa.Uuid(), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column(
            "changes", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.Column("title", sa.String(200), nullable=False),
        _timestamp("occurred_at"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_task_history_user"),
        sa.PrimaryKeyConstraint("user_id", "id"),
    )
    op.create_index(
        "ix_task_history_user_occurred", "task_history", ["user_id", "occurred_at", "id"]
    )
    op.create_index(
        "ix_task_history_user_task", "task_history", ["user_id", "task_id", "occurred_at", "id"]
    )


def downgrade() -> None:
    op.drop_table("task_history")
    op.drop_table("tasks")
    op.drop_table("categories")
    op.drop_table("users")
