"""Event-stream tickets, and a wake-up for every change-feed write (PostgreSQL).

`event_tickets` holds the digests of single-use tickets that open one event stream. On
PostgreSQL, a trigger on `changes` sends `NOTIFY todo_changes, '<user_id>'` from the
writing transaction, delivered at its commit (identical ones of a transaction fold into
one), so that every worker's streams of that user read the feed (decision 32).

Revision ID: 0c1d2e3f4a5b
Revises: 9b8a7c6d5e4f
Create Date: 2026-12-06 15:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0c1d2e3f4a5b"
down_revision: str | None = "9b8a7c6d5e4f"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CALLER = "current_setting('app.user_id', true)"


def upgrade() -> None:
    op.create_table(
        "event_tickets",
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stream_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("token_digest", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_event_tickets_user"),
        sa.PrimaryKeyConstraint("user_id", "digest"),
    )
    if op.get_context().dialect.name != "postgresql":
        return
    op.execute("ALTER TABLE event_tickets ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE event_tickets FORCE ROW LEVEL SECURITY")
    mine = f"user_id = {CALLER}"
    op.execute(f"CREATE POLICY owner_only ON event_tickets USING ({mine}) WITH CHECK ({mine})")
    op.execute(
        """
        CREATE FUNCTION todo_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('todo_changes', NEW.user_id);
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER changes_notify AFTER INSERT OR UPDATE ON changes "
        "FOR EACH ROW EXECUTE FUNCTION todo_notify_change()"
    )


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute("DROP TRIGGER changes_notify ON changes")
        op.execute("DROP FUNCTION todo_notify_change()")
    op.drop_table("event_tickets")
