"""What the trigram index's pending list costs writes and searches, at several limits.

    .venv/bin/python -m benchmarks.pending                 # ~1 minute; seeds todo_bench once

A GIN index takes new entries into an unsorted pending list and merges them into its tree
when the list outgrows `gin_pending_list_limit` or a vacuum runs; every search through the
index reads the whole list. For each setting of `ix_tasks_search` (PostgreSQL's default
4 MB, 1 MB, the 256 kB the migration `search_pending_list` sets, and no list at all),
twice in alternation, from the same table with an empty list: insert `--writes` tasks one
statement at a time (a task's write, without the rest of the service's request), and at
every eighth of them search the 100,000-task user for an absent word as the service does
it (its role, its session settings, the search view). Prints the mean and worst insert,
the most pages the list held at a search, and the mean and worst search. The inserted
tasks are deleted and the index put back as the migrations left it. See
specs/performance.md.
"""

import argparse
import statistics
import time

import psycopg
from sqlalchemy.dialects.postgresql.psycopg import dialect as psycopg_dialect

from backend import db
from backend.config import Settings
from backend.owned import OWNER
from backend.pagination import LIMIT
from backend.tasks.service import SEARCH_LISTINGS
from benchmarks import dataset

SERVICE_SETTING = "gin_pending_list_limit = 256"
"""As the migrations leave the index, and as this puts it back."""
SETTINGS = {
    "4 MB (PostgreSQL's default)": "gin_pending_list_limit = 4096",
    "1 MB": "gin_pending_list_limit = 1024",
    "256 kB (the service's)": SERVICE_SETTING,
    "no pending list": "fastupdate = off",
}
INDEX = "ix_tasks_search"
MARK = "pending-list probe"
INSERT = (
    "INSERT INTO tasks (user_id, id, title, description, priority, completed, created_at,"
    " updated_at, version) VALUES (%s, gen_random_uuid(), %s, %s, 0, false, now(), now(), 1)"
)
SEARCH = str(
    SEARCH_LISTINGS.sorts["-created_at"]
    .paged(SEARCH_LISTINGS.statement(frozenset({"q"})), resume=None)
    .compile(dialect=psycopg_dialect())  # type: ignore[no-untyped-call]  # SQLAlchemy leaves it untyped
)
"""The service's first page of a search, as it compiles it for the driver."""
SEARCHES = 9
CHECKPOINTS = 8


def _measure(data: dataset.Dataset, setting: str, writes: int) -> dict[str, float]:
    """Insert `writes` tasks, searching at every eighth of the way: the list grows and is
    merged as it goes, so the searches see it at every size it reaches."""
    writer, searcher = dataset.user_for(100), dataset.user_for(100_000)
    # The service's own session settings: a custom plan for every search (backend.db).
    options = db.startup_options(Settings(database_url=data.service_dsn))
    inserts: list[float] = []
    searches: list[float] = []
    pages: list[int] = []
    with (
        psycopg.connect(data.admin_dsn, autocommit=True) as admin,
        psycopg.connect(data.service_dsn, autocommit=True, options=options) as service,
    ):
        _start_over(admin, setting)
        for n in range(1, writes + 1):
            started = time.perf_counter()
            admin.execute(INSERT, (writer, f"Renew the passport {n}", f"{MARK}: invoice {n}"))
            inserts.append(time.perf_counter() - started)
            if n % (writes // CHECKPOINTS) == 0:
                found = admin.execute("SELECT pending_pages FROM pgstatginindex(%s)", (INDEX,))
                pages.append(found.fetchone()[0])  # type: ignore[index]
                searches.append(_search(service, searcher))
    return {
        "insert": statistics.mean(inserts) * 1e3,
        "worst insert": max(inserts) * 1e3,
        "pages": max(pages),
        "search": statistics.mean(searches) * 1e3,
        "worst search": max(searches) * 1e3,
    }


def _search(service: psycopg.Connection, user: str) -> float:
    """The median of a few searches for an absent word, as the service makes them."""
    times = []
    for _ in range(SEARCHES):
        started = time.perf_counter()
        with service.transaction():
            service.execute("SELECT set_config('app.user_id', %s, true)", (user,))
            service.execute(SEARCH, {OWNER: user, "q": "xylophone", LIMIT: 21}).fetchall()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _start_over(admin: psycopg.Connection, setting: str) -> None:
    """The index with `setting`, without the probe's earlier tasks, its list merged (by the
    vacuum), so that every measurement starts from the same table."""
    admin.execute("DELETE FROM tasks WHERE description LIKE %s", (f"{MARK}:%",))
    admin.execute(f"ALTER INDEX {INDEX} RESET (gin_pending_list_limit, fastupdate)")
    admin.execute(f"ALTER INDEX {INDEX} SET ({setting})")
    admin.execute("VACUUM ANALYZE tasks")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--database", default="todo_bench")
    parser.add_argument("--writes", type=int, default=8_000, help="enough to fill 4 MB")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    data = dataset.prepare(args.server, args.database, sizes=dataset.SIZES, reseed=False)
    with psycopg.connect(data.admin_dsn, autocommit=True) as admin:
        admin.execute("CREATE EXTENSION IF NOT EXISTS pgstattuple")  # pgstatginindex
    results: dict[str, list[dict[str, float]]] = {name: [] for name in SETTINGS}
    try:
        for _ in range(args.rounds):
            for name, setting in SETTINGS.items():
                results[name].append(_measure(data, setting, args.writes))
    finally:
        with psycopg.connect(data.admin_dsn, autocommit=True) as admin:
            _start_over(admin, SERVICE_SETTING)
    print(f"{args.writes:,} task inserts; every {args.writes // CHECKPOINTS:,}, a search for an")
    print("absent word at 100,000 tasks; ms, mean over the rounds (worst: the largest seen)")
    columns = ("insert", "worst insert", "pages", "search", "worst search")
    print(f"{'pending list':<28}" + "".join(f"{column:>13}" for column in columns))
    for name, runs in results.items():
        figures = [
            max(run[column] for run in runs)
            if column.startswith("worst") or column == "pages"
            else statistics.mean(run[column] for run in runs)
            for column in columns
        ]
        print(
            f"{name:<28}"
            + "".join(
                f"{figure:>13.{0 if column == 'pages' else 2}f}"
                for column, figure in zip(columns, figures, strict=True)
            )
        )


if __name__ == "__main__":
    main()
