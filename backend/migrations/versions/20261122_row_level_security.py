"""Row-level security on PostgreSQL: each owned row is visible only to its owner.

Defence in depth behind the owner filter every query already carries: a query that
forgot it returns nothing instead of another user's rows. The caller's id arrives per
transaction as the setting `app.user_id` (see `backend.db`). `FORCE` subjects the tables'
owner too; only a superuser or a BYPASSRLS role escapes, so the service must not run as one.

Revision ID: 3e2f1a0b9c8d
Revises: 9a8b7c6d5e4f
Create Date: 2026-11-22 05:10:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "3e2f1a0b9c8d"
down_revision: str | None = "9a8b7c6d5e4f"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CALLER = "current_setting('app.user_id', true)"
OWNER_COLUMNS = {
    "users": "id",
    "categories": "user_id",
    "tasks": "user_id",
    "task_history": "user_id",
    "personal_tokens": "user_id",
    "idempotency_keys": "user_id",
}
# A personal access token is found before its owner is known: by whoever holds its digest.
TOKEN_LOOKUP = "token_hash = current_setting('app.token_lookup', true)"  # noqa: S105


def upgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    for table, column in OWNER_COLUMNS.items():
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        visible = f"{column} = {CALLER}"
        if table == "personal_tokens":
            visible = f"({visible} OR {TOKEN_LOOKUP})"
        mine = f"{column} = {CALLER}"
        op.execute(f"CREATE POLICY owner_only ON {table} USING ({visible}) WITH CHECK ({mine})")


def downgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    for table in OWNER_COLUMNS:
        op.execute(f"DROP POLICY owner_only ON {table}")
        op.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
