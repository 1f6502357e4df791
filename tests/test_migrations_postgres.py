"""What PostgreSQL's transactional DDL gives the migrations (SQLite's DDL, as Alembic runs
it, is not transactional)."""

import pytest
from sqlalchemy import create_engine, text

from backend import migrate
from backend.config import Settings
from tests.conftest import sync_url, table_names


def test_a_failed_upgrade_leaves_the_database_as_it_was(fresh_settings: Settings) -> None:
    """All the revisions of an upgrade land together or not at all: a revision that fails
    (here the search view, whose name a table already holds) takes the ones before it
    back with it, instead of leaving half a schema with no version to resume from."""
    engine = create_engine(sync_url(fresh_settings.database_url))
    try:
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE task_search (taken integer)"))

        with pytest.raises(Exception, match="task_search"):
            migrate.upgrade(fresh_settings)

        assert table_names(fresh_settings) == {"task_search"}
    finally:
        engine.dispose()
