"""Alembic environment: runs migrations through the service's own async engine."""

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

from backend import db, models
from backend.config import Settings

config = context.config
target_metadata = SQLModel.metadata


def _settings() -> Settings:
    url = config.get_main_option("sqlalchemy.url")
    return Settings(database_url=url) if url else Settings()


def _include_object(
    item: object, name: str | None, kind: str, reflected: bool, _compare_to: object
) -> bool:
    """Leave the PostgreSQL-only indexes, which no model declares, out of autogenerate."""
    return not (kind == "index" and reflected and name in models.POSTGRES_ONLY_INDEXES)


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_object=_include_object,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_online() -> None:
    engine = db.create_engine(_settings())
    try:
        async with engine.connect() as connection:
            if connection.dialect.name == "postgresql":
                # The service's engine runs the driver in autocommit (its sessions send
                # their own BEGIN); migrations need PostgreSQL's transactional DDL back, so
                # that an upgrade lands whole or not at all.
                await connection.execution_options(isolation_level="READ COMMITTED")
            await connection.run_sync(_run)
    finally:
        await engine.dispose()  # a failed upgrade too: no pooled connection left open


if context.is_offline_mode():
    context.configure(url=_settings().database_url, target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_online())
