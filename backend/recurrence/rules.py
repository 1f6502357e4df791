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

No expansion runs long, whatever the rule. dateutil looks for a date its filters accept
until the year 9999, whatever its `UNTIL`, so a rule no date satisfies
(`BYMONTH=2;BYMONTHDAY=30`) would take seconds. The Gregorian calendar repeats every 400
years, weekdays and leap days included, so each expansion runs whole cycles later, in the
last four centuries before 9999, and is moved back: at most a few hundred years of dates
are looked at, and a step stops at `HORIZON`.
"""

from calendar import monthrange
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from itertools import chain, islice
from zoneinfo import ZoneInfo, available_timezones

from dateutil.rrule import rrule, rrulestr
from pydantic_core import PydanticCustomError

_DAY = r"([+-]?[1-9][0-9]?)?(MO|TU|WE|TH|FR|SA|SU)"
_MONTHDAY = r"-?([1-9]|[12][0-9]|3[01])"
_MONTH = r"([1-9]|1[0-2])"
_PART = (
    r"(FREQ=(DAILY|WEEKLY|MONTHLY|YEARLY)|INTERVAL=[1-9][0-9]?"
    rf"|BYDAY={_DAY}(,{_DAY})*|BYMONTHDAY={_MONTHDAY}(,{_MONTHDAY})*"
    rf"|BYMONTH={_MONTH}(,{_MONTH})*|COUNT=([1-9][0-9]{{0,2}}|1000)|UNTIL=[0-9]{{8}}T[0-9]{{6}}Z)"
)
RULE_PATTERN = rf"^(RRULE:)?{_PART}(;{_PART})*$"
"""The subset's grammar (`UNTIL` in UTC, as RFC 5545 requires beside a zoned start), for
the schema and its validation; what a pattern cannot say, `check_rule` checks."""
RULE_MAX_LENGTH = 300
_ORDINALS = {"MONTHLY": 5, "YEARLY": 53}
_ENDS = frozenset({"COUNT", "UNTIL"})
HORIZON = timedelta(days=28 * 366)
"""The furthest one occurrence may follow another: the calendar's weekdays and leap days
repeat within it (a yearly `INTERVAL` is at most 28)."""
FIRST_YEAR, LAST_YEAR = 1900, 9900
"""The years a recurring task's due time may fall in: a series then fits the calendar."""
_CYCLE_YEARS = 400
_LATE_YEAR = 9571
"""Expansions run in the last cycle that still leaves a `HORIZON` before 9999."""


def _parts(rule: str) -> dict[str, str]:
    return dict(part.partition("=")[::2] for part in rule.split(";"))


def check_rule(text: str) -> str:
    """The rule without an `RRULE:` prefix; `rrule_unsupported` naming what its pattern
    (`RULE_PATTERN`, checked first) cannot say is outside the subset."""
    rule = text.removeprefix("RRULE:")
    names = [part.partition("=")[0] for part in rule.split(";")]
    parts = _parts(rule)
    reason = None
    if len(names) != len(parts):
        reason = "each part may be given once"
    elif "FREQ" not in parts:
        reason = "FREQ is required"
    elif parts.keys() >= _ENDS:
        reason = "COUNT and UNTIL exclude each other"
    elif parts["FREQ"] == "YEARLY" and int(parts.get("INTERVAL", 1)) > 28:
        reason = "a yearly INTERVAL is at most 28"
    elif not _some_date(parts):
        reason = "no month of BYMONTH has a day of BYMONTHDAY"
    else:
        days = [day[:-2] for day in parts.get("BYDAY", "").split(",") if day[:-2]]
        if days and max(abs(int(day)) for day in days) > _ORDINALS.get(parts["FREQ"], 0):
            reason = "BYDAY takes an ordinal (such as -1FR) only when MONTHLY (up to 5) or YEARLY"
    if reason is None:
        try:
            rrulestr(rule, dtstart=datetime(2000, 1, 1, tzinfo=UTC))
        except ValueError as exc:  # what dateutil itself refuses, such as a 30 February UNTIL
            reason = f"dateutil refuses it ({exc})"
    if reason is not None:
        raise PydanticCustomError("rrule_unsupported", "{reason}", {"reason": reason})
    return rule


def _some_date(parts: dict[str, str]) -> bool:
    """Whether a month of `BYMONTH` has a day of `BYMONTHDAY` (30 February has none), so
    that the commonest rule no date satisfies is refused before any expansion."""
    if "BYMONTH" not in parts or "BYMONTHDAY" not in parts:
        return True
    lengths = [monthrange(2000, int(month))[1] for month in parts["BYMONTH"].split(",")]
    days = [abs(int(day)) for day in parts["BYMONTHDAY"].split(",")]
    return any(day <= length for day in days for length in lengths)  # 2000: 29 February


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


def _wall(local: str) -> datetime:
    return datetime.fromisoformat(local)


def _text(wall: datetime) -> str:
    return wall.isoformat(timespec="seconds")


def local_time(at: datetime, tz: str) -> str:
    """The wall-clock time of the instant `at` in `tz`, as an anchor is kept."""
    return _text(at.astimezone(_zone(tz)).replace(tzinfo=None))


def instant(local: str, tz: str) -> datetime:
    """When the wall-clock time `local` happens in `tz`, in UTC: in a gap, at the first
    instant after it (the transition); in a fold, at the first of its two instants."""
    zone = _zone(tz)
    wall = _wall(local)
    first = wall.replace(tzinfo=zone).astimezone(UTC)  # fold 0: the earlier offset
    if _shown(first, zone) == wall:
        return first
    # In a gap: read with the later offset it falls before the jump, with the earlier
    # one after it; the jump is the first second whose wall-clock time is past `wall`.
    before, after = wall.replace(tzinfo=zone, fold=1).astimezone(UTC), first
    while after - before > timedelta(seconds=1):
        middle = before + (after - before) // 2
        before, after = (before, middle) if _shown(middle, zone) >= wall else (middle, after)
    return after


def _shown(at: datetime, zone: ZoneInfo) -> datetime:
    return at.astimezone(zone).replace(tzinfo=None)


def _late(wall: datetime) -> int:
    """The years that move `wall` into the last cycles before 9999 (whole cycles)."""
    return max(0, -(-(_LATE_YEAR - wall.year) // _CYCLE_YEARS)) * _CYCLE_YEARS


def _moved(wall: datetime, years: int) -> datetime:
    return wall.replace(year=wall.year + years)  # 400 years on, 29 February still is


@lru_cache(maxsize=1024)
def _series(rule: str, tz: str, anchor: str, reach: str | None = None) -> tuple[rrule, int]:
    """The rule from the wall-clock time `anchor`, moved `years` later (returned), without
    its `COUNT` (the task counts it down in `left`), ending at its `UNTIL` or `HORIZON`
    after the anchor (or after `reach`), whichever comes first; parsed once for each."""
    start = _wall(anchor)
    parts = _parts(rule)
    latest = max(start, _wall(reach or anchor))
    until = latest + HORIZON
    last = datetime.strptime(parts.get("UNTIL", "99991231T000000Z"), "%Y%m%dT%H%M%SZ")
    if last.year <= LAST_YEAR:  # a later one ends no series before `HORIZON` does
        until = min(until, _shown(last.replace(tzinfo=UTC), _zone(tz)))
    years = _late(latest)
    kept = ";".join(f"{name}={value}" for name, value in parts.items() if name not in _ENDS)
    series = rrulestr(kept, dtstart=_moved(start, years))
    return series.replace(until=_moved(until, years)), years  # type: ignore[union-attr]


def following(rule: str, tz: str, anchor: str) -> str | None:
    """The occurrence after the one at the wall-clock time `anchor`, or None (its
    `UNTIL` passed, or none within `HORIZON`)."""
    series, years = _series(rule, tz, anchor)
    after = series.after(_moved(_wall(anchor), years))
    return None if after is None else _text(_moved(after, -years))


def restarted(anchor: str, tz: str, completed_at: datetime) -> str:
    """A series counted from a completion: the anchor's time of day, on the completion's
    day in the zone (the rule then moves on from there)."""
    day = completed_at.astimezone(_zone(tz)).date()
    return f"{day.isoformat()}T{anchor.partition('T')[2]}"


def upcoming(rule: str, tz: str, anchor: str, left: int | None) -> Iterator[str]:
    """The occurrences from the one at `anchor` on, as wall-clock times; at most `left`."""
    series, years = _series(rule, tz, anchor)
    later = series.xafter(_moved(_wall(anchor), years))
    occurrences = chain((anchor,), (_text(_moved(each, -years)) for each in later))
    return islice(occurrences, left)


def count_of(rule: str) -> int | None:
    """The rule's `COUNT`, if it has one."""
    count = _parts(rule).get("COUNT")
    return None if count is None else int(count)


def ended_by(rule: str, tz: str, anchor: str, left: int | None, now: datetime) -> bool:
    """Whether the series from `anchor` has no occurrence at or after `now` (a rule set
    on a task whose due time passed must still have one to come)."""
    if left is not None:  # at most 1,000 steps (`COUNT`)
        return all(instant(local, tz) < now for local in upcoming(rule, tz, anchor, left))
    if instant(anchor, tz) >= now:
        return False
    today = local_time(now, tz)
    series, years = _series(rule, tz, anchor, reach=today)
    return series.after(_moved(_wall(today), years)) is None
