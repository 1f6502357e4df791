"""Recurrence rules: which RFC 5545 rules a task may carry, and its occurrences, expanded
by python-dateutil on the wall clock of the rule's zone (decision 35).

A rule is expanded from a *nominal* local time, the `anchor`: "09:00 in Paris", not an
instant. Each occurrence is then placed on the time line: a local time that does not
exist (the spring gap) happens at the first instant after the gap, when the clocks jump
over it; an ambiguous one (the autumn fold) at the first of its two instants. So a task
weekly at 09:00 stays at 09:00 local across both changes, while its UTC instant moves.

The series moves with the task: each completion re-anchors the rule at the occurrence it
moves to. For every rule of the subset this yields the series the first anchor would
(the interval's grid and the month's days are those of an occurrence), at the cost of
one step of the rule however long the series has run; `COUNT` is counted down in
`left` (the anchor counts as the first occurrence, as RFC 5545 says of `DTSTART`).
"""

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from itertools import chain, islice
from zoneinfo import ZoneInfo, available_timezones

from dateutil.rrule import rrule, rrulestr
from pydantic_core import PydanticCustomError

FREQUENCIES = frozenset({"DAILY", "WEEKLY", "MONTHLY", "YEARLY"})
_PARTS = {
    "FREQ": re.compile(r"(DAILY|WEEKLY|MONTHLY|YEARLY)"),
    "INTERVAL": re.compile(r"[1-9]\d?"),
    "BYDAY": re.compile(
        r"([+-]?[1-9]\d?)?(MO|TU|WE|TH|FR|SA|SU)(,([+-]?[1-9]\d?)?(MO|TU|WE|TH|FR|SA|SU))*"
    ),
    "BYMONTHDAY": re.compile(r"-?([1-9]|[12]\d|3[01])(,-?([1-9]|[12]\d|3[01]))*"),
    "BYMONTH": re.compile(r"([1-9]|1[0-2])(,([1-9]|1[0-2]))*"),
    "COUNT": re.compile(r"[1-9]\d{0,2}|1000"),
    "UNTIL": re.compile(r"\d{8}T\d{6}Z"),
}
"""The subset: each part a client may use, and the form of its value (`UNTIL` in UTC, as
RFC 5545 requires beside a zoned start)."""
_ORDINALS = {"MONTHLY": 5, "YEARLY": 53}
_DAY = r"([+-]?[1-9][0-9]?)?(MO|TU|WE|TH|FR|SA|SU)"
_MONTHDAY = r"-?([1-9]|[12][0-9]|3[01])"
_MONTH = r"([1-9]|1[0-2])"
_PART = (
    r"(FREQ=(DAILY|WEEKLY|MONTHLY|YEARLY)|INTERVAL=[1-9][0-9]?"
    rf"|BYDAY={_DAY}(,{_DAY})*|BYMONTHDAY={_MONTHDAY}(,{_MONTHDAY})*"
    rf"|BYMONTH={_MONTH}(,{_MONTH})*|COUNT=([1-9][0-9]{{0,2}}|1000)|UNTIL=[0-9]{{8}}T[0-9]{{6}}Z)"
)
RULE_PATTERN = rf"^(RRULE:)?{_PART}(;{_PART})*$"
"""The subset's grammar, for the schema; what it cannot say (each part once, `FREQ`
required, `COUNT` or `UNTIL`, ordinals when monthly or yearly) `check_rule` checks."""
RULE_MAX_LENGTH = 300
LOCAL_FORMAT = "%Y-%m-%dT%H:%M:%S"
HORIZON = timedelta(days=28 * 366)
"""The furthest one occurrence may follow another: the calendar's weekdays and leap days
repeat within it, and no step of a rule iterates past it."""


def check_rule(text: str) -> str:
    """The rule without an `RRULE:` prefix; a `rrule_unsupported` error naming what is
    outside the subset that its pattern (`RULE_PATTERN`) cannot say."""
    try:
        return _checked(text.removeprefix("RRULE:"))
    except ValueError as exc:
        raise PydanticCustomError("rrule_unsupported", "{reason}", {"reason": str(exc)}) from None


def _checked(rule: str) -> str:
    parts: dict[str, str] = {}
    for part in rule.split(";"):
        name, _, value = part.partition("=")
        if name not in _PARTS:
            raise ValueError(f"{name or 'an empty part'} is not supported")
        if name in parts:
            raise ValueError(f"{name} is given twice")
        if not _PARTS[name].fullmatch(value):
            raise ValueError(f"{name}={value} is not a supported value")
        parts[name] = value
    if "FREQ" not in parts:
        raise ValueError("FREQ is required")
    if "COUNT" in parts and "UNTIL" in parts:
        raise ValueError("COUNT and UNTIL exclude each other")
    ordinals = [abs(int(day[:-2])) for day in parts.get("BYDAY", "").split(",") if day[:-2]]
    if ordinals and max(ordinals) > _ORDINALS.get(parts["FREQ"], 0):
        raise ValueError(
            "BYDAY takes an ordinal (such as -1FR) only when MONTHLY (up to 5) or YEARLY (53)"
        )
    try:
        rrulestr(rule, dtstart=datetime(2000, 1, 1, tzinfo=UTC))
    except ValueError as exc:  # what dateutil itself refuses, such as an ordinal over 53
        raise ValueError(f"dateutil refuses it ({exc})") from None
    return rule


@lru_cache(maxsize=1)
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def check_zone(name: str) -> str:
    """An IANA zone of the installed tzdata (an enum in the schema would tie it to one
    tzdata release)."""
    if name not in _zones():
        raise PydanticCustomError("tz_unknown", "not an IANA time zone")
    return name


@lru_cache(maxsize=1024)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def local_time(at: datetime, tz: str) -> str:
    """The wall-clock time of the instant `at` in `tz`, as an anchor is kept."""
    return at.astimezone(_zone(tz)).strftime(LOCAL_FORMAT)


def instant(local: str, tz: str) -> datetime:
    """When the wall-clock time `local` happens in `tz`, in UTC: in a gap, at the first
    instant after it (the transition); in a fold, at the first of its two instants."""
    zone = _zone(tz)
    wall = datetime.strptime(local, LOCAL_FORMAT)
    first = wall.replace(tzinfo=zone).astimezone(UTC)  # fold 0: the earlier offset
    if _wall(first, zone) == wall:
        return first
    # In a gap: read with the later offset it falls before the jump, with the earlier
    # one after it; the jump is the first second whose wall-clock time is past `wall`.
    before, after = wall.replace(tzinfo=zone, fold=1).astimezone(UTC), first
    while after - before > timedelta(seconds=1):
        middle = before + (after - before) // 2
        before, after = (before, middle) if _wall(middle, zone) >= wall else (middle, after)
    return after


def _wall(at: datetime, zone: ZoneInfo) -> datetime:
    return at.astimezone(zone).replace(tzinfo=None)


def _aware(local: str, tz: str) -> datetime:
    return datetime.strptime(local, LOCAL_FORMAT).replace(tzinfo=_zone(tz))


@lru_cache(maxsize=1024)
def _series(rule: str, tz: str, anchor: str) -> rrule:
    """The rule from the wall-clock time `anchor`, parsed once for each: without its
    `COUNT` (the task counts it down in `left`) and ending at its `UNTIL` or `HORIZON`
    after the anchor, whichever comes first, so that no step iterates without end."""
    start = _aware(anchor, tz)
    parts = dict(part.partition("=")[::2] for part in rule.split(";"))
    until = start + HORIZON
    if "UNTIL" in parts:
        until = min(until, datetime.strptime(parts["UNTIL"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC))
    kept = ";".join(f"{name}={value}" for name, value in parts.items() if name not in _ENDS)
    return rrulestr(kept, dtstart=start).replace(until=until)  # type: ignore[union-attr]


_ENDS = frozenset({"COUNT", "UNTIL"})


def following(rule: str, tz: str, anchor: str) -> str | None:
    """The occurrence after the one at the wall-clock time `anchor`, or None (its
    `UNTIL` passed, or none within `HORIZON`)."""
    after = _series(rule, tz, anchor).after(_aware(anchor, tz))
    return None if after is None else after.strftime(LOCAL_FORMAT)


def restarted(anchor: str, tz: str, completed_at: datetime) -> str:
    """A series counted from a completion: the anchor's time of day, on the completion's
    day in the zone (the rule then moves on from there)."""
    day = completed_at.astimezone(_zone(tz)).date()
    return f"{day.isoformat()}T{anchor.partition('T')[2]}"


def upcoming(rule: str, tz: str, anchor: str, left: int | None) -> Iterator[str]:
    """The occurrences from the one at `anchor` on, as wall-clock times; at most `left`."""
    start = _aware(anchor, tz)
    occurrences = chain((start,), _series(rule, tz, anchor).xafter(start))
    return (each.strftime(LOCAL_FORMAT) for each in islice(occurrences, left))


def count_of(rule: str) -> int | None:
    """The rule's `COUNT`, if it has one."""
    count = dict(part.partition("=")[::2] for part in rule.split(";")).get("COUNT")
    return None if count is None else int(count)


def ended_by(rule: str, tz: str, anchor: str, left: int | None, now: datetime) -> bool:
    """Whether the series from `anchor` has no occurrence at or after `now` (a rule set
    on a task whose due time passed must still have one to come)."""
    if left is not None:  # at most 1,000 steps (`COUNT`)
        return all(instant(local, tz) < now for local in upcoming(rule, tz, anchor, left))
    if instant(anchor, tz) >= now:
        return False
    return _series(rule, tz, anchor).after(now.astimezone(_zone(tz))) is None
