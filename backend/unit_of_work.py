"""The one way a write reaches the database: its statements, its history entries and its
change-feed entries, committed together or not at all.

A service reads what it changes (locked, `FOR UPDATE` on PostgreSQL), then collects the
write in a `UnitOfWork`: each statement with its parameters (`execute`), what happened
to each task (`record`, the history) and which entities changed (`changed`, the feed).
`commit` runs all of it and the `COMMIT` in one call into the sync session: each
`AsyncSession` call runs in a greenlet of its own, and each greenlet costs system calls
(optimisation 4 in specs/performance.md). Each change is also an event: the webhooks
subscribed to it get a delivery in the same transaction (the outbox,
`deliveries.service`), written only where the feed's upsert says the user has an
enabled webhook. A later feature adds its statements here (tag links) and they land
with the rest.
"""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Connection, Executable, event
from sqlalchemy.orm import Session, SessionTransaction
from sqlalchemy.orm.exc import StaleDataError
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.changes.service import append_changes
from backend.db import ScopedSession, utcnow
from backend.deliveries.service import Event, enqueue
from backend.events.broker import CHANGED
from backend.fields import ChangeEntity, ChangeOp, HistoryAction
from backend.history.service import entry, insert_entries
from backend.models import CategoryPublic, ReminderPublic, TaskPublic

DEFERRED = "unit_of_work.deferred"
"""Key in `Session.info`: the request commits this session's write itself, with the
answer it stores for its `Idempotency-Key` (`idempotency.guard.CommitWithAnswer`)."""


NUMBERS_TAKEN = "unit_of_work.numbers_taken"
"""Key in `Session.info`: the feed numbers the transaction's writes took so far (a batch
runs many in one transaction)."""


@event.listens_for(ScopedSession, "after_transaction_end")
def _forget_numbers(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:
        session.info.pop(NUMBERS_TAKEN, None)


@dataclass(slots=True)
class _Statement:
    statement: Executable
    params: dict[str, Any] | list[dict[str, Any]]
    """One statement's parameters, or a list: the statement once for each."""
    guarded: bool


@dataclass(slots=True)
class UnitOfWork:
    """One write of `user_id`'s data, stamped `at`."""

    user_id: str
    at: datetime = field(default_factory=lambda: utcnow())  # looked up when called
    _statements: list[_Statement] = field(default_factory=list)
    _entries: list[dict[str, Any]] = field(default_factory=list)
    _changes: dict[tuple[ChangeEntity, UUID], tuple[ChangeOp, int]] = field(default_factory=dict)
    _events: list[Event] = field(default_factory=list)

    def execute(
        self,
        statement: Executable,
        params: dict[str, Any] | list[dict[str, Any]],
        *,
        guarded: bool,
    ) -> None:
        """Run `statement` with `params` at the commit. A `guarded` one is an `UPDATE` or
        `DELETE ... WHERE version = :read`: if it touches no row, its row moved since it was
        read, and the commit raises `StaleDataError` (for `change_current_row`) instead."""
        self._statements.append(_Statement(statement, params, guarded))

    def record(
        self, task_id: UUID, title: str, action: HistoryAction, changes: dict[str, Any]
    ) -> None:
        """A history entry of the task `task_id`."""
        self._entries.append(entry(self.user_id, task_id, title, action, changes, self.at))

    def changed(
        self, entity: ChangeEntity, row: TaskPublic | CategoryPublic, action: HistoryAction
    ) -> None:
        """`row` is now as shown (at its version), or gone: the change feed learns it, and
        the webhooks subscribed to `<entity>.<action>` get it (or its id, once deleted)."""
        deleted = action is HistoryAction.deleted
        self._changes[(entity, row.id)] = ("delete" if deleted else "upsert", row.version)
        self._events.append(Event(f"{entity}.{action}", {"id": str(row.id)} if deleted else row))

    def reminded(self, reminder: ReminderPublic) -> None:
        """`reminder` fired: the change feed (and with it the event streams) learns it,
        and the webhooks subscribed to `task.reminder` get it."""
        self._changes[("reminder", reminder.id)] = ("upsert", 1)
        self._events.append(Event("task.reminder", reminder))

    async def commit(self, session: AsyncSession) -> None:
        """Everything collected, then `COMMIT`, in one call into the sync session; without
        the `COMMIT` where the request commits the write with its answer (`DEFERRED`)."""
        await session.run_sync(self._commit)

    def _commit(self, sync_session: Session) -> None:
        taken = sync_session.info.get(NUMBERS_TAKEN, 0)
        sync_session.info[NUMBERS_TAKEN] = self.write(sync_session.connection(), taken=taken)
        if self._changes:
            sync_session.info[CHANGED] = self.user_id  # wakes the user's streams (SQLite)
        if DEFERRED not in sync_session.info:
            sync_session.commit()

    def write(self, connection: Connection, *, taken: int = 0) -> int:
        """Everything collected, inside the transaction of `connection`, after the `taken`
        feed numbers of its earlier writes; the numbers taken with these."""
        for each in self._statements:
            # An INSERT's row count reads -1 on psycopg: only a guarded 0 means stale.
            if connection.execute(each.statement, each.params).rowcount == 0 and each.guarded:
                raise StaleDataError("the row is no longer at the version it was read at")
        insert_entries(connection, self._entries)
        if append_changes(connection, self.user_id, self._changes, self.at, taken=taken):
            enqueue(connection, self.user_id, self._events, self.at, taken=taken)
        return taken + max(len(self._changes), len(self._events))
