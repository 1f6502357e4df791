"""A recurring task's series: started where the client sets its rule or due time, moved
on at each completion, previewed for a frontend (the rules: `recurrence.rules`)."""

from datetime import datetime
from itertools import islice

from backend.errors import InvalidInput
from backend.models import Occurrence, Recurrence, TaskPublic, TaskRecurrence
from backend.recurrence import rules


def start(
    recurrence: Recurrence, due_at: datetime | None, now: datetime, *, left: int | None = None
) -> TaskRecurrence:
    """The series of `recurrence` from `due_at`, its first occurrence, with `left` of its
    occurrences to come (by default its `COUNT`); 422 without a due time, or when none of
    its occurrences is to come."""
    if due_at is None:
        raise InvalidInput(("body", "due_at"), "recurrence_needs_due_at")
    if not rules.FIRST_YEAR <= due_at.year <= rules.LAST_YEAR:
        raise InvalidInput(("body", "due_at"), "recurrence_out_of_range")
    rule, tz = recurrence.rule, recurrence.tz
    anchor = rules.local_time(due_at, tz)
    if left is None:
        left = rules.count_of(rule)
    never_again = left != 1 and "UNTIL" not in rule and rules.following(rule, tz, anchor) is None
    if never_again or rules.ended_by(rule, tz, anchor, left, now):
        raise InvalidInput(("body", "recurrence", "rule"), "recurrence_ended")
    return TaskRecurrence.model_validate(recurrence.model_dump() | {"anchor": anchor, "left": left})


def stored(recurrence: TaskRecurrence | None) -> dict[str, object] | None:
    """As the `tasks.recurrence` column keeps it: with where the series stands."""
    if recurrence is None:
        return None
    return recurrence.model_dump() | {"anchor": recurrence.anchor, "left": recurrence.left}


def advance(
    recurrence: TaskRecurrence, completed_at: datetime
) -> tuple[datetime, TaskRecurrence] | None:
    """The due time of the occurrence after the current one, completed at `completed_at`,
    and the series standing there; None when the series ends (`COUNT`, `UNTIL`)."""
    rule, tz, anchor, left = recurrence.rule, recurrence.tz, recurrence.anchor, recurrence.left
    assert anchor is not None  # every stored series has one (`start`)
    if left is not None and left <= 1:
        return None
    if recurrence.from_ == "completion":
        anchor = rules.restarted(anchor, tz, completed_at)
    following = rules.following(rule, tz, anchor)
    if following is None:
        return None
    moved = recurrence.model_copy(
        update={"anchor": following, "left": None if left is None else left - 1}
    )
    return rules.instant(following, tz), moved


MOVED = ("completed", "completed_at", "due_at", "recurrence", "version")
"""What moving a task on to its next occurrence changes."""


def moved_on(completed: TaskPublic, at: datetime) -> TaskPublic | None:
    """The task `completed` at `at` moved on to its next occurrence, open; None when it
    does not recur or its series ends there (it stays completed)."""
    if completed.recurrence is None:
        return None
    advanced = advance(completed.recurrence, at)
    if advanced is None:
        return None
    due_at, recurrence = advanced
    return completed.model_copy(
        update={
            "completed": False,
            "completed_at": None,
            "due_at": due_at,
            "recurrence": recurrence,
            "version": completed.version + 1,
        }
    )


def upcoming(recurrence: TaskRecurrence | None, limit: int) -> list[Occurrence]:
    """The current occurrence and those after it, at most `limit` (a task completed from
    its completion is shown as if each were completed when due)."""
    if recurrence is None or recurrence.anchor is None:
        return []
    tz = recurrence.tz
    series = rules.upcoming(recurrence.rule, tz, recurrence.anchor, recurrence.left)
    return [Occurrence(at=rules.instant(local, tz), local=local) for local in islice(series, limit)]
