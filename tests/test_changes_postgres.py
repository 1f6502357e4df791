"""What PostgreSQL's concurrent writers ask of the change feed: a write that took its number
earlier and commits later is never skipped (SQLite runs one writer at a time)."""

from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session

from backend.changes.service import append_changes
from backend.db import utcnow
from tests.conftest import AuthFactory, Factory
from tests.test_changes import _changes, _summary, _token


def test_list_changes_waits_for_an_earlier_writer_that_commits_later(
    client: TestClient, auth: AuthFactory, make_task: Factory, engine: Engine, db: Session
) -> None:
    early = make_task(title="Written by the slow writer")
    since = _token(client, auth)
    with engine.connect() as slow:
        append_changes(slow, "alice", {("task", early["id"]): ("upsert", 7)}, utcnow())
        late = make_task(title="Committed while the slow writer is open")

        held_back = _changes(client, auth, since)
        slow.commit()
    both = _changes(client, auth, held_back["next_since"])

    assert (_summary(held_back), held_back["has_more"]) == ([], False)
    assert _summary(both) == [("task", early["id"], "upsert", 7), ("task", late["id"], "upsert", 1)]
