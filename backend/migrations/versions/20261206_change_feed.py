"""The change feed: per user, each task's and category's last change, numbered in commit
order by the user's row (`users.change_seq`).

Every live task and category gets its row, numbered per user in the order of its last
change, so that a sync that starts over reads them all from the feed.

Revision ID: 9b8a7c6d5e4f
Revises: 8a7f6e5d4c3b
Create Date: 2026-12-06 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "9b8a7c6d5e4f"
down_revision: str | None = "8a7f6e5d4c3b"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CALLER = "current_setting('app.user_id', true)"


def upgrade() -> None:
    postgresql = op.get_context().dialect.name == "postgresql"
    if postgresql:
        # Fails, rather than copying nothing, for a role row-level security would hold.
        op.execute("SET LOCAL row_security = off")
    op.add_column(
        "users",
        sa.Column("change_seq", sa.BigInteger(), nullable=False, server_default="0"),
    )
    op.create_table(
        "changes",
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("entity", sa.String(16), nullable=False),
        sa.Column("entity_id", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("op", sa.String(8), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_changes_user"),
        sa.PrimaryKeyConstraint("user_id", "entity", "entity_id"),
        sa.UniqueConstraint("user_id", "seq", name="uq_changes_user_seq"),
    )
    # Not owner-first: `todo-api prune` finds every user's old deletions.
    deletions = sa.text("op = 'delete'")
    op.create_index(
        "ix_changes_deletions",
        "changes",
        ["changed_at"],
        postgresql_where=deletions,
        sqlite_where=deletions,
    )
    op.execute(
        """
        INSERT INTO changes (user_id, entity, entity_id, seq, op, version, changed_at)
        SELECT user_id, entity, id,
               ROW_NUMBER() OVER (PARTITION BY user_id ORDER BY updated_at, entity, id),
               'upsert', version, updated_at
        FROM (
            SELECT user_id, 'task' AS entity, id, version, updated_at FROM tasks
            UNION ALL
            SELECT user_id, 'category' AS entity, id, version, updated_at FROM categories
        ) AS live
        """
    )
    op.execute(
        "UPDATE users SET change_seq = "
        "(SELECT COALESCE(MAX(seq), 0) FROM changes WHERE changes.user_id = users.id)"
    )
    if postgresql:
        op.execute("ALTER TABLE changes ENABLE ROW LEVEL SECURITY")
        op.execute("ALTER TABLE changes FORCE ROW LEVEL SECURITY")
        mine = f"user_id = {CALLER}"
        op.execute(f"CREATE POLICY owner_only ON changes USING ({mine}) WITH CHECK ({mine})")


def downgrade() -> None:
    op.drop_table("changes")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("change_seq")
