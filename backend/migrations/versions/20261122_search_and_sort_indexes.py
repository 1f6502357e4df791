"""PostgreSQL indexes for search and for `sort=-due_at`, so that a page costs the same at
100 tasks as at 100,000.

- `q` is a substring search (`title ILIKE '%...%' OR description ILIKE ...`, as
  SQLAlchemy writes `icontains` for PostgreSQL), which no b-tree serves. A GIN index of
  trigrams (pg_trgm) finds the rows holding the text; the owner filter then keeps the
  caller's. It is deliberately not owner-first: in a GIN index (btree_gin) the owner's
  entry lists every row of the owner, and reading that list made a search at 100,000
  tasks 20 times slower than one at 100. Under row-level security PostgreSQL applies
  `ILIKE` (not leakproof) only after the policy and cannot use this index; roles that
  bypass row security can (see specs/performance.md).
- `-due_at` sorts nulls last, the opposite of what a backward scan of the ascending
  `(user_id, due_at, id)` index yields; without its own index every page sorts them all.

SQLite has neither trigrams nor `NULLS LAST` in an index; these exist on PostgreSQL only
(`backend.models.POSTGRES_ONLY_INDEXES` keeps autogenerate from proposing to drop them).
pg_trgm is a trusted extension in PostgreSQL 13+, so a database owner may create it.

Revision ID: 5d4c3b2a1f0e
Revises: 3e2f1a0b9c8d
Create Date: 2026-11-22 08:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "5d4c3b2a1f0e"
down_revision: str | None = "3e2f1a0b9c8d"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.execute(
        "CREATE INDEX ix_tasks_search ON tasks USING gin "
        "(title gin_trgm_ops, description gin_trgm_ops)"
    )
    op.execute(
        "CREATE INDEX ix_tasks_user_due_desc ON tasks (user_id, due_at DESC NULLS LAST, id DESC)"
    )
    op.execute("ANALYZE tasks")  # statistics of the new expressions, for the planner


def downgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    op.execute("DROP INDEX ix_tasks_user_due_desc")
    op.execute("DROP INDEX ix_tasks_search")
