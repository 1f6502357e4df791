"""Category names keyed as tags are: Unicode NFKC, then case folded, so that `Café` and
`Cafe\\u0301` are one name (they were two: the key was only case folded).

Each category's key is recomputed. Where two of a user's categories now share a key,
the first (by id) takes it, the others keep their old key, and the migration reports
them on its log: rename one of each pair to settle it. Downgrading keeps the new keys
(a case-folded NFKC key is still a valid key for the old code).

Revision ID: 3f4a5b6c7d8e
Revises: 2e3f4a5b6c7d
Create Date: 2026-12-06 17:40:00
"""

import logging
import unicodedata
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "3f4a5b6c7d8e"
down_revision: str | None = "2e3f4a5b6c7d"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

logger = logging.getLogger("alembic.runtime.migration")
CATEGORIES = sa.table(
    "categories",
    sa.column("user_id", sa.String),
    sa.column("id", sa.Uuid),
    sa.column("name", sa.String),
    sa.column("name_key", sa.String),
)


def _key(name: str) -> str:
    return unicodedata.normalize("NFKC", name).casefold()


def upgrade() -> None:
    connection = op.get_bind()
    rows = connection.execute(
        sa.select(
            CATEGORIES.c.user_id, CATEGORIES.c.id, CATEGORIES.c.name, CATEGORIES.c.name_key
        ).order_by(CATEGORIES.c.user_id, CATEGORIES.c.id)
    ).all()
    taken = {(user_id, key) for user_id, _, _, key in rows}
    for user_id, category_id, name, key in rows:
        new = _key(name)
        if new == key:
            continue
        if (user_id, new) in taken:
            logger.warning(
                "category %s of user %s keeps its key: its name %r is another category's "
                "once normalised; rename one of them",
                category_id,
                user_id,
                name,
            )
            continue
        taken.discard((user_id, key))
        taken.add((user_id, new))
        connection.execute(
            sa.update(CATEGORIES)
            .where(CATEGORIES.c.user_id == user_id, CATEGORIES.c.id == category_id)
            .values(name_key=new)
        )


def downgrade() -> None:
    pass
