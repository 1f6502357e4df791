"""Webhooks and their deliveries (an outbox written with each change).

`webhooks` holds a user's endpoints; `webhook_deliveries` one row per event and
endpoint, inserted by the write that made the event, in its transaction, then claimed
and attempted by `todo-api worker` (decision 33). Both are owned tables with row-level
security on PostgreSQL; the worker's role, like `todo-api prune`'s, is not held by it.

Revision ID: 1d2e3f4a5b6c
Revises: 0c1d2e3f4a5b
Create Date: 2026-12-06 16:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "1d2e3f4a5b6c"
down_revision: str | None = "0c1d2e3f4a5b"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CALLER = "current_setting('app.user_id', true)"
PENDING = sa.text("status = 'pending'")


def upgrade() -> None:
    op.create_table(
        "webhooks",
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("url", sa.String(length=2083), nullable=False),
        sa.Column("events", sa.JSON(), nullable=False),
        sa.Column("event_mask", sa.BigInteger(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("disabled_reason", sa.String(length=300), nullable=True),
        sa.Column("secret", sa.String(length=100), nullable=False),
        sa.Column("previous_secret", sa.String(length=100), nullable=True),
        sa.Column("previous_secret_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_webhooks_user"),
        sa.PrimaryKeyConstraint("user_id", "id"),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("webhook_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("type", sa.String(length=40), nullable=False),
        sa.Column("body", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("leased_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(length=300), nullable=True),
        sa.Column("last_response", sa.String(length=1024), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id", "webhook_id"],
            ["webhooks.user_id", "webhooks.id"],
            name="fk_webhook_deliveries_webhook",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", "webhook_id", "id"),
    )
    op.create_index(
        "ix_webhook_deliveries_pending_line",
        "webhook_deliveries",
        ["user_id", "webhook_id", "seq"],
        postgresql_where=PENDING,
        sqlite_where=PENDING,
    )
    op.create_index(
        "ix_webhook_deliveries_due",
        "webhook_deliveries",
        ["next_attempt_at"],
        postgresql_where=PENDING,
        sqlite_where=PENDING,
    )
    op.create_index(
        "ix_webhook_deliveries_listed",
        "webhook_deliveries",
        ["user_id", "webhook_id", "created_at", "id"],
    )
    if op.get_context().dialect.name != "postgresql":
        return
    mine = f"user_id = {CALLER}"
    for name in ("webhooks", "webhook_deliveries"):
        op.execute(f"ALTER TABLE {name} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {name} FORCE ROW LEVEL SECURITY")
        op.execute(f"CREATE POLICY owner_only ON {name} USING ({mine}) WITH CHECK ({mine})")


def downgrade() -> None:
    op.drop_table("webhook_deliveries")
    op.drop_table("webhooks")
