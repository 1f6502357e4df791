"""A short pending list for the trigram index, so that recent writes do not slow searches
(PostgreSQL).

A GIN index takes new entries into an unsorted pending list (`fastupdate`) and merges them
into its tree when the list outgrows `gin_pending_list_limit` (4 MB by default) or a
vacuum runs, and every search through the index reads the whole list. Task writes of any
user (a create, and every update, which writes a new row version) fill it, so a search of
a large user, read by the index, slowed with the writes since the last merge: over 8,000
inserts a search for an absent word at 100,000 tasks took 7.0 ms on average and 12.5 at
worst (485 pages in the list) against 0.96 with no list, while a small user's search,
which walks its own rows, paid nothing; the benchmark's scale table, run after its
writes, read 3.8 and 5.9 times the small user's page. At 256 kB the list holds at most
32 pages: the same search 1.23 ms on average, 1.65 at worst, and an insert costs what it
did (0.65 ms against 0.68 at 4 MB; 0.85 with no list at all, `fastupdate = off`, which
merges each row's entries as it is written), while the insert that merges the list waits
11 ms instead of 68. `python -m benchmarks.pending`, specs/performance.md.

SQLite has no trigram index; nothing changes there.

Revision ID: 8a7f6e5d4c3b
Revises: 7f6e5d4c3b2a
Create Date: 2026-12-04 17:50:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "8a7f6e5d4c3b"
down_revision: str | None = "7f6e5d4c3b2a"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PENDING_LIST_KB = 256


def upgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    op.execute(f"ALTER INDEX ix_tasks_search SET (gin_pending_list_limit = {PENDING_LIST_KB})")


def downgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    op.execute("ALTER INDEX ix_tasks_search RESET (gin_pending_list_limit)")
