"""Alembic migrations on a fresh database, and the keys the schema enforces by itself."""

import logging
from datetime import UTC, datetime
from uuid import UUID

import pytest
from alembic import command
from sqlalchemy import Inspector, create_engine, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from backend import migrate
from backend.config import Settings
from backend.db import utcnow
from backend.fields import HistoryAction
from backend.models import TASK_SEARCH, Category, Task, TaskHistory, User
from tests.conftest import TABLES, inspected, sync_url, table_names

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
ALICE_CATEGORY = UUID("00000000-0000-7000-8000-0000000000a1")
BOB_CATEGORY = UUID("00000000-0000-7000-8000-0000000000b1")
TASK = UUID("00000000-0000-7000-8000-0000000000a2")


def test_upgrade_head_creates_the_four_tables(fresh_settings: Settings) -> None:
    assert table_names(fresh_settings) & set(TABLES) == set()

    migrate.upgrade(fresh_settings)

    assert table_names(fresh_settings) >= {*TABLES, "alembic_version"}


def test_downgrade_base_removes_the_tables(fresh_settings: Settings) -> None:
    migrate.upgrade(fresh_settings)

    migrate.downgrade(fresh_settings, "base")

    assert table_names(fresh_settings) & set(TABLES) == set()


def test_upgrade_after_downgrade_recreates_the_tables(fresh_settings: Settings) -> None:
    migrate.upgrade(fresh_settings)
    migrate.downgrade(fresh_settings, "base")

    migrate.upgrade(fresh_settings)

    assert table_names(fresh_settings) >= set(TABLES)


def test_upgrade_head_twice_changes_nothing(fresh_settings: Settings) -> None:
    migrate.upgrade(fresh_settings)

    migrate.upgrade(fresh_settings)

    assert table_names(fresh_settings) >= set(TABLES)


def test_check_finds_no_drift_after_upgrade(fresh_settings: Settings) -> None:
    migrate.upgrade(fresh_settings)

    command.check(migrate.alembic_config(fresh_settings))


def test_search_view_has_every_column_of_tasks(fresh_settings: Settings) -> None:
    migrate.upgrade(fresh_settings)
    columns = inspected(fresh_settings, lambda inspector: inspector.get_columns("task_search"))
    view = [column["name"] for column in columns]

    tasks = Task.__table__.columns.keys()  # type: ignore[attr-defined]
    assert set(view) == set(TASK_SEARCH.columns.keys()) == set(tasks)
    migrate.downgrade(fresh_settings, "base")
    assert "task_search" not in inspected(fresh_settings, Inspector.get_view_names)


def _enforce_foreign_keys(db: Session) -> None:
    """SQLite checks foreign keys only when asked, as the service's own engine always does."""
    if db.get_bind().dialect.name == "sqlite":
        db.connection().exec_driver_sql("PRAGMA foreign_keys=ON")


def _user(user_id: str) -> User:
    return User(id=user_id, created_at=NOW, updated_at=NOW)


def _category(user_id: str, category_id: UUID) -> Category:
    return Category(
        user_id=user_id,
        id=category_id,
        name=f"{user_id} home",
        name_key=f"{user_id} home",
        created_at=NOW,
        updated_at=NOW,
    )


def _task(user_id: str, task_id: UUID, category_id: UUID | None = None) -> Task:
    return Task(
        user_id=user_id,
        id=task_id,
        title="Stored directly",
        category_id=category_id,
        created_at=NOW,
        updated_at=NOW,
    )


def test_database_refuses_task_in_another_users_category(db: Session) -> None:
    _enforce_foreign_keys(db)
    db.add_all([_user("alice"), _user("bob")])
    db.commit()
    db.add_all([_category("alice", ALICE_CATEGORY), _category("bob", BOB_CATEGORY)])
    db.commit()
    db.add(_task("alice", TASK, ALICE_CATEGORY))
    db.commit()

    db.add(_task("alice", UUID(int=TASK.int + 1), BOB_CATEGORY))
    with pytest.raises(IntegrityError):
        db.commit()
    db.rollback()

    stored = db.exec(select(Task.id, Task.category_id)).all()
    assert [tuple(row) for row in stored] == [(TASK, ALICE_CATEGORY)]


def test_database_refuses_row_of_unknown_user(db: Session) -> None:
    _enforce_foreign_keys(db)
    db.add(_category("nobody", BOB_CATEGORY))

    with pytest.raises(IntegrityError):
        db.commit()
    db.rollback()


def test_history_row_survives_deletion_of_its_task(db: Session) -> None:
    _enforce_foreign_keys(db)
    db.add(_user("alice"))
    db.commit()
    task = _task("alice", TASK)
    db.add(task)
    db.add(
        TaskHistory(
            user_id="alice",
            task_id=TASK,
            action=HistoryAction.created,
            changes={"title": {"from": None, "to": "Stored directly"}},
            title="Stored directly",
            occurred_at=NOW,
        )
    )
    db.commit()

    db.delete(task)
    db.commit()

    assert db.exec(select(Task)).all() == []
    entry = db.exec(select(TaskHistory)).one()
    assert (entry.task_id, entry.action, entry.title) == (TASK, "created", "Stored directly")


def test_category_keys_become_nfkc_and_collisions_are_reported(
    fresh_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    migrate.upgrade(fresh_settings, "2e3f4a5b6c7d")
    engine = create_engine(sync_url(fresh_settings.database_url))
    names = ["Café", "Cafe\u0301", "\ufb01sh", "Plain"]  # the first two: one name once NFKC
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO users (id, created_at, updated_at, change_seq) VALUES ('u', :t, :t, 0)"
            ),
            {"t": utcnow()},
        )
        for n, name in enumerate(names):
            connection.execute(
                text(
                    "INSERT INTO categories (user_id, id, name, name_key, created_at, updated_at,"
                    " version) VALUES ('u', :id, :name, :key, :t, :t, 1)"
                ),
                {
                    "id": f"00000000-0000-7000-8000-00000000000{n}",
                    "name": name,
                    "key": name.casefold(),
                    "t": utcnow(),
                },
            )

    with caplog.at_level(logging.WARNING):
        migrate.upgrade(fresh_settings)

    with engine.connect() as connection:
        rows = connection.execute(text("SELECT name, name_key FROM categories")).all()
    keys = {str(name): str(key) for name, key in rows}
    engine.dispose()
    assert keys == {
        "Café": "café",
        "Cafe\u0301": "cafe\u0301",
        "\ufb01sh": "fish",
        "Plain": "plain",
    }
    assert "keeps its key" in caplog.text
    assert "Cafe\u0301" in caplog.text


def test_adding_parent_id_keeps_every_tag_link(fresh_settings: Settings) -> None:
    """SQLite adds the reference by copying `tasks`; dropping the old copy must not take
    `task_tags` with it (foreign keys are on)."""
    migrate.upgrade(fresh_settings, "3f4a5b6c7d8e")
    engine = create_engine(sync_url(fresh_settings.database_url))
    task, tag = "00000000-0000-7000-8000-000000000001", "00000000-0000-7000-8000-000000000002"
    values = {"t": utcnow(), "task": task, "tag": tag}
    with engine.begin() as connection:
        for statement in (
            "INSERT INTO users (id, created_at, updated_at, change_seq) VALUES ('u', :t, :t, 0)",
            "INSERT INTO tasks (user_id, id, title, priority, completed, created_at, updated_at,"
            " version, tags) VALUES ('u', :task, 't', 0, false, :t, :t, 1, '[\"a\"]')",
            "INSERT INTO tags (user_id, id, name, name_key, created_at, updated_at, version)"
            " VALUES ('u', :tag, 'a', 'a', :t, :t, 1)",
            "INSERT INTO task_tags (user_id, task_id, tag_key) VALUES ('u', :task, 'a')",
        ):
            connection.execute(text(statement), values)

    migrate.upgrade(fresh_settings)
    migrate.downgrade(fresh_settings, "3f4a5b6c7d8e")
    migrate.upgrade(fresh_settings)

    with engine.connect() as connection:
        links = connection.execute(text("SELECT count(*) FROM task_tags")).scalar_one()
    engine.dispose()
    assert links == 1


def test_downgrading_recurrence_leaves_what_the_code_before_can_read(
    fresh_settings: Settings,
) -> None:
    """Before `recurrence_reminders`, the feed knew no reminders and the history no moves
    of a recurring task: a downgrade drops the first and reads the second as updates."""
    migrate.upgrade(fresh_settings)
    engine = create_engine(sync_url(fresh_settings.database_url))
    task, fired = "00000000-0000-7000-8000-000000000001", "00000000-0000-7000-8000-000000000003"
    values = {"t": utcnow(), "task": task, "fired": fired}
    with engine.begin() as connection:
        for statement in (
            "INSERT INTO users (id, created_at, updated_at, change_seq) VALUES ('u', :t, :t, 2)",
            "INSERT INTO changes (user_id, entity, entity_id, seq, op, version, changed_at)"
            " VALUES ('u', 'task', :task, 1, 'upsert', 3, :t),"
            " ('u', 'reminder', :fired, 2, 'upsert', 1, :t)",
            "INSERT INTO task_history (user_id, id, task_id, action, changes, title, occurred_at)"
            " VALUES ('u', :fired, :task, 'rescheduled', '{}', 't', :t)",
        ):
            connection.execute(text(statement), values)

    migrate.downgrade(fresh_settings, "4a5b6c7d8e9f")

    with engine.connect() as connection:
        entities = connection.execute(text("SELECT entity FROM changes")).scalars().all()
        actions = connection.execute(text("SELECT action FROM task_history")).scalars().all()
    engine.dispose()
    assert (entities, actions) == (["task"], ["updated"])
