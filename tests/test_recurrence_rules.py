"""Property tests of the recurrence rules against python-dateutil's own expansion: for
random rules of the subset, zones that change their clocks (both ways, by an hour, half
an hour, and south of the equator) and start times near those changes and month ends,
each next occurrence the task moves to is the one dateutil expands in the zone, placed on
the time line by a rule of the test's own."""

from datetime import UTC, date, datetime, timedelta
from itertools import islice
from zoneinfo import ZoneInfo

from dateutil.rrule import rrulestr
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from backend.errors import InvalidInput
from backend.models import Recurrence, TaskRecurrence
from backend.recurrence import rules, series

ZONES = [
    "Europe/Paris",
    "America/New_York",
    "America/Santiago",  # south: clocks go back in April, forward in September
    "Australia/Sydney",
    "Australia/Lord_Howe",  # a change of half an hour
    "Pacific/Chatham",  # UTC+12:45
    "Asia/Kolkata",  # no change at all
    "UTC",
]
DAYS = ["MO", "TU", "WE", "TH", "FR", "SA", "SU"]
STEPS = 12


@st.composite
def rule_texts(draw: st.DrawFn) -> str:
    freq = draw(st.sampled_from(["DAILY", "WEEKLY", "MONTHLY", "YEARLY"]))
    parts = [f"FREQ={freq}"]
    if draw(st.booleans()):
        parts.append(f"INTERVAL={draw(st.integers(1, 3))}")
    if draw(st.booleans()):
        days = draw(st.lists(st.sampled_from(DAYS), min_size=1, max_size=3, unique=True))
        if freq == "MONTHLY" and draw(st.booleans()):
            days = [f"{draw(st.sampled_from([1, 2, -1, -2]))}{day}" for day in days]
        parts.append("BYDAY=" + ",".join(days))
    elif freq in ("MONTHLY", "YEARLY") and draw(st.booleans()):
        monthdays = draw(
            st.lists(
                st.sampled_from([1, 15, 28, 29, 30, 31, -1]), min_size=1, max_size=2, unique=True
            )
        )
        parts.append("BYMONTHDAY=" + ",".join(map(str, monthdays)))
    if freq != "DAILY" and draw(st.booleans()):
        months = draw(st.lists(st.integers(1, 12), min_size=1, max_size=4, unique=True))
        parts.append("BYMONTH=" + ",".join(map(str, sorted(months))))
    if draw(st.booleans()):
        parts.append(f"COUNT={draw(st.integers(1, STEPS))}")
    return ";".join(parts)


@st.composite
def anchors(draw: st.DrawFn) -> datetime:
    """Wall-clock starts near the clock changes and month ends of the years drawn."""
    day = draw(
        st.one_of(
            st.dates(date(2026, 1, 1), date(2030, 12, 31)),
            st.sampled_from(
                [
                    date(2027, 3, 28),
                    date(2027, 10, 31),
                    date(2027, 3, 14),
                    date(2027, 11, 7),
                    date(2027, 4, 4),
                    date(2027, 9, 5),
                    date(2027, 10, 3),
                    date(2028, 2, 29),
                    date(2027, 1, 31),
                    date(2027, 4, 30),
                    date(2027, 12, 31),
                ]
            ),
        )
    )
    hour = draw(st.sampled_from([0, 1, 2, 3, 9, 23]))
    minute = draw(st.sampled_from([0, 15, 30, 45]))
    return datetime(day.year, day.month, day.day, hour, minute)


def placed(wall: datetime, tz: str) -> datetime:
    """The test's own rule: the earliest instant that shows `wall`, or, where none does
    (the spring gap), the first whole minute after which the clock reads past it."""
    zone = ZoneInfo(tz)
    offsets = {(wall + timedelta(hours=h)).replace(tzinfo=zone).utcoffset() for h in (-24, 24)}
    shown = [
        (wall - offset).replace(tzinfo=UTC)
        for offset in offsets
        if offset is not None
        and (wall - offset).replace(tzinfo=UTC).astimezone(zone).replace(tzinfo=None) == wall
    ]
    if shown:
        return min(shown)
    at = (wall - timedelta(hours=14)).replace(tzinfo=UTC)
    while at.astimezone(zone).replace(tzinfo=None) < wall:
        at += timedelta(minutes=1)
    return at


def dateutil_series(rule: str, tz: str, anchor: datetime) -> list[datetime]:
    """The occurrences dateutil expands from `anchor` in the zone, as RFC 5545 counts them:
    the start first even where the rule does not match it (dateutil leaves it out then)."""
    start = anchor.replace(tzinfo=ZoneInfo(tz))
    expanded = [
        each.replace(tzinfo=None) for each in islice(rrulestr(rule, dtstart=start), STEPS + 1)
    ]
    if expanded[:1] != [anchor]:
        count = rules.count_of(rule)
        expanded = [anchor, *expanded][: count or STEPS + 1]
    return expanded


@settings(max_examples=300, deadline=None)
@given(rule=rule_texts(), tz=st.sampled_from(ZONES), anchor=anchors())
@example(rule="FREQ=WEEKLY;BYDAY=SU", tz="Europe/Paris", anchor=datetime(2027, 3, 21, 2, 30))
@example(rule="FREQ=MONTHLY;BYMONTHDAY=31", tz="UTC", anchor=datetime(2027, 1, 31, 9, 0))
@example(
    rule="FREQ=MONTHLY;BYDAY=-1FR;COUNT=3",
    tz="Australia/Lord_Howe",
    anchor=datetime(2027, 3, 26, 2, 15),
)
def test_each_next_occurrence_is_dateutils_in_the_zone(
    rule: str, tz: str, anchor: datetime
) -> None:
    due_at = placed(anchor, tz)
    anchor = due_at.astimezone(ZoneInfo(tz)).replace(tzinfo=None)  # a due time shows no gap
    expected = dateutil_series(rule, tz, anchor)
    started = _started(rule, tz, due_at)
    if isinstance(started, str):  # refused: only a rule with nothing after the due time
        assert started in ("rrule_unsupported", "recurrence_ended")
        assert started == "rrule_unsupported" or rules.count_of(rule) != 1  # COUNT=1: one
        assert not [wall for wall in expected[1:] if wall - anchor <= rules.HORIZON]
        return

    moved_to = [due_at]
    while started is not None and len(moved_to) < len(expected):
        advanced = series.advance(started, completed_at=moved_to[-1])
        if advanced is None:
            break
        due, started = advanced
        moved_to.append(due)

    assert moved_to == [placed(wall, tz) for wall in expected]
    if rules.count_of(rule) == len(expected) and started is not None:
        assert series.advance(started, completed_at=moved_to[-1]) is None  # COUNT reached


def _started(rule: str, tz: str, due_at: datetime) -> TaskRecurrence | str:
    """The series the service starts at `due_at`, or the type of its refusal."""
    try:
        return series.start(Recurrence.model_validate({"rule": rule, "tz": tz}), due_at, due_at)
    except ValidationError as invalid:
        return str(invalid.errors()[0]["type"])
    except InvalidInput as refused:
        return str(refused.errors[0]["type"])


@settings(max_examples=300, deadline=None)
@given(tz=st.sampled_from(ZONES), wall=anchors())
def test_a_wall_clock_time_is_placed_at_its_first_instant_or_right_after_the_gap(
    tz: str, wall: datetime
) -> None:
    at = rules.instant(wall.isoformat(timespec="seconds"), tz)

    assert at == placed(wall, tz)
