"""The `todo-api` command: serve, worker, migrate, token, seed, prune, openapi."""

import asyncio
import json
import logging.config
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
import uvicorn
from rich.progress import MofNCompleteColumn, Progress, TimeRemainingColumn
from sqlalchemy import make_url
from sqlalchemy.exc import DBAPIError

from backend import db
from backend import migrate as migrations
from backend import seed as demo
from backend.auth import issue_token
from backend.config import ConfigurationError, Settings, get_settings
from backend.errors import DATABASE_ERRORS
from backend.main import create_app
from backend.observability import logging_config
from backend.worker import Pruned, run_worker
from backend.worker import prune as prune_all

app = typer.Typer(help="todo-api: a multi-user task API.", no_args_is_help=True)


@contextmanager
def _workable() -> Iterator[None]:
    """Settings that cannot work end the command with a clear message and exit status 2."""
    try:
        yield
    except ConfigurationError as exc:
        typer.echo(f"todo-api: {exc}", err=True)
        raise typer.Exit(2) from None


def _settings() -> Settings:
    with _workable():
        return get_settings()


def _migrate(settings: Settings) -> None:
    """Apply every pending migration; a database that cannot be reached ends the command
    with one line naming it (never its password) and exit status 1, not a traceback."""
    try:
        migrations.upgrade(settings)
    except DATABASE_ERRORS as exc:
        where = make_url(settings.database_url).render_as_string(hide_password=True)
        typer.echo(f"todo-api: cannot migrate {where}: {type(exc).__name__}", err=True)
        raise typer.Exit(1) from None


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
    migrate: Annotated[bool, typer.Option(help="Apply migrations before serving.")] = True,
    forwarded_allow_ips: Annotated[
        str | None,
        typer.Option(
            help="Proxies trusted for X-Forwarded-For/-Proto (comma-separated, or *); "
            "default: $FORWARDED_ALLOW_IPS, else 127.0.0.1 and ::1."
        ),
    ] = None,
    root_path: Annotated[
        str, typer.Option(help="The path prefix a proxy serves the API under, e.g. /todo.")
    ] = "",
    with_worker: Annotated[
        bool,
        typer.Option(help="Run the worker (webhooks, pruning) in the server, for one machine."),
    ] = False,
) -> None:
    """Serve the API (migrations first, unless --no-migrate)."""
    if with_worker:
        os.environ["RUN_WORKER"] = "true"  # read by each server process's settings
    settings = _settings()
    log_config = logging_config(settings)
    logging.config.dictConfig(log_config)
    with _workable():
        # A development secret is announced (or refused) here, before serving, where one
        # is used: to verify tokens without JWKS, to sign cursors without SECRET_KEY.
        if not settings.uses_jwks:
            settings.signing_secret()
        settings.cursor_secret()
    if migrate:
        _migrate(settings)
    uvicorn.run(
        "backend.main:serve_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        http="httptools",
        proxy_headers=True,
        log_config=log_config,  # every worker logs as LOG_FORMAT says
        access_log=False,  # the service logs each request itself, by route template
        forwarded_allow_ips=forwarded_allow_ips,
        root_path=root_path,
    )


@app.command()
def migrate() -> None:
    """Apply every pending migration."""
    _migrate(_settings())


@app.command()
def token(
    user_id: Annotated[str, typer.Argument(help="The user id (the token's `sub`).")],
    email: Annotated[str | None, typer.Option(help="The `email` claim.")] = None,
    name: Annotated[str | None, typer.Option(help="The `name` claim.")] = None,
    ttl: Annotated[int, typer.Option(min=1, help="Lifetime in seconds.")] = 3600,
) -> None:
    """Print a token signed with the configured (or development) secret."""
    settings = _settings()
    if settings.uses_jwks:
        typer.echo("todo-api: with JWKS_URL, tokens come from the identity provider", err=True)
        raise typer.Exit(2)
    # Only a token the service accepts: a subject, and no longer-lived than it allows.
    if not user_id or ttl > settings.jwt_max_lifetime_seconds:
        typer.echo(
            "todo-api: USER_ID must not be empty, and --ttl at most "
            f"JWT_MAX_LIFETIME_SECONDS ({settings.jwt_max_lifetime_seconds})",
            err=True,
        )
        raise typer.Exit(2)
    now = int(time.time())
    with _workable():
        token = issue_token(settings, user_id, ttl_seconds=ttl, email=email, name=name, now=now)
    typer.echo(token)


@app.command()
def seed(
    users: Annotated[int, typer.Option(min=1, help="How many demo users.")] = 3,
    tasks: Annotated[int, typer.Option(min=0, help="Tasks per user.")] = 200,
    prefix: Annotated[str, typer.Option(help="User ids are PREFIX-1, PREFIX-2, ...")] = "demo-user",
    random_seed: Annotated[int, typer.Option("--seed", help="Same seed, same data.")] = 0,
) -> None:
    """Load demo users, each with categories, tasks and the tasks' history (migrates first).

    Users that already exist are left as they are. Sign in as one with
    `todo-api token demo-user-1`.
    """
    settings = _settings()
    _migrate(settings)
    user_ids = demo.demo_user_ids(users, prefix)

    async def load(advance: demo.Progress) -> None:
        engine = db.create_engine(settings)
        try:
            sessionmaker = db.create_sessionmaker(engine, settings)
            await demo.seed(
                sessionmaker,
                user_ids=user_ids,
                tasks_per_user=tasks,
                seed=random_seed,
                progress=advance,
            )
        finally:
            await engine.dispose()

    columns = (*Progress.get_default_columns()[:-1], MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=False) as bar:
        job = bar.add_task("Seeding tasks", total=users * tasks)
        asyncio.run(load(lambda count: bar.advance(job, count)))
    typer.echo(f"Seeded {users} users ({user_ids[0]} ...) with {tasks} tasks each.")


@app.command()
def prune() -> None:
    """Forget what is no longer kept: deletions older than CHANGES_RETENTION_DAYS in the
    change feed, expired idempotency keys and event tickets, webhook deliveries finished
    WEBHOOK_DELIVERY_RETENTION_DAYS ago. Safe while serving (the worker does it hourly).
    Run it as a superuser or a BYPASSRLS role (docker-compose's `todo`, which migrates):
    row-level security hides every row from the service's role."""
    settings = _settings()

    async def run() -> Pruned:
        engine = db.create_engine(settings)
        try:
            async with engine.connect() as connection:
                await db.for_maintenance(connection)
                return await prune_all(connection, settings, db.utcnow())
        finally:
            await engine.dispose()

    try:
        pruned = asyncio.run(run())
    except DBAPIError as exc:  # unreachable, or a role that row-level security holds
        where = make_url(settings.database_url).render_as_string(hide_password=True)
        typer.echo(
            f"todo-api: cannot prune {where} ({type(exc).__name__}): it needs a role that "
            "row-level security does not hold (a superuser or BYPASSRLS), and the database",
            err=True,
        )
        raise typer.Exit(1) from None
    typer.echo(
        f"Pruned {pruned.changes} deletions from the change feed, {pruned.keys} idempotency "
        f"keys, {pruned.tickets} event tickets, {pruned.deliveries} webhook deliveries."
    )


@app.command()
def worker(
    migrate: Annotated[bool, typer.Option(help="Apply migrations before working.")] = False,
) -> None:
    """Deliver webhooks and prune, until SIGTERM (which finishes the deliveries in flight).
    Run several anywhere: none delivers what another holds. Like `prune`, it needs a role
    that row-level security does not hold."""
    settings = _settings()
    logging.config.dictConfig(logging_config(settings))
    if migrate:
        _migrate(settings)
    run_worker(settings)


@app.command()
def openapi() -> None:
    """Print the OpenAPI document."""
    typer.echo(json.dumps(create_app(_settings()).openapi(), indent=2, ensure_ascii=False))
