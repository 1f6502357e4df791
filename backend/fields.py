"""What a valid value is: the text, time, enum and page types the models' fields use.

Each type carries its rule once, for every body, query string and MCP tool that takes it,
and its JSON Schema, so that generated clients know the rule too.
"""

import re
import unicodedata
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BeforeValidator,
    Field,
    StringConstraints,
    TypeAdapter,
    WithJsonSchema,
)
from sqlalchemy import SmallInteger
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

ALLOWED_CONTROLS = frozenset("\t\n\r")


def _plain_text(value: str) -> str:
    """Refuse what no client means to send: NUL, other controls, lone surrogates."""
    for char in value:
        if 0xD800 <= ord(char) <= 0xDFFF:
            raise ValueError("must not contain lone surrogates")
        if unicodedata.category(char) == "Cc" and char not in ALLOWED_CONTROLS:
            raise ValueError("must not contain control characters")
    return value


def _single_line(value: str) -> str:
    if any(char in ALLOWED_CONTROLS for char in value):
        raise ValueError("must be a single line")
    return value


def _to_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+05:00 is before the year 1 in UTC
        raise ValueError("must fall within the years 1 to 9999 in UTC") from None


def _rfc3339_only(value: object) -> object:
    """Refuse the Unix timestamps pydantic would otherwise take for a datetime."""
    if isinstance(value, datetime) or (isinstance(value, str) and _DATE_START.match(value)):
        return value
    raise ValueError("must be an RFC 3339 date-time with an offset")


_DATE_START = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]")
# Control characters, as JSON Schema patterns, so that generated clients know the rule too.
_NO_CONTROLS = r"^[^\x00-\x1f\x7f-\x9f]*$"
_NO_CONTROLS_BUT_WHITESPACE = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*$"
_NOT_BLANK = r"[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
"""A character that is neither a control nor what `str.strip` removes."""
_NO_CONTROLS_NOT_BLANK = rf"^[^\x00-\x1f\x7f-\x9f]*{_NOT_BLANK}[^\x00-\x1f\x7f-\x9f]*$"


Text = Annotated[
    str,
    AfterValidator(_plain_text),
    WithJsonSchema({"type": "string", "pattern": _NO_CONTROLS_BUT_WHITESPACE}),
]
Line = Annotated[
    Text, AfterValidator(_single_line), WithJsonSchema({"type": "string", "pattern": _NO_CONTROLS})
]
Instant = Annotated[AwareDatetime, BeforeValidator(_rfc3339_only), AfterValidator(_to_utc)]
"""A point in time with an explicit offset, kept in UTC."""

# Trimmed first, so that lengths count what is stored and blank is empty.
_TRIMMED_LINE = (
    AfterValidator(str.strip),
    AfterValidator(_plain_text),
    AfterValidator(_single_line),
)
TITLE_MAX_LENGTH = 200
"""A task's title, in the API and in the `tasks` and `task_history` columns."""
Title = Annotated[
    str,
    *_TRIMMED_LINE,
    StringConstraints(min_length=1, max_length=TITLE_MAX_LENGTH),
    WithJsonSchema(
        {"type": "string", "minLength": 1, "maxLength": TITLE_MAX_LENGTH, "pattern": _NO_CONTROLS}
    ),
]
CategoryName = Annotated[
    str,
    *_TRIMMED_LINE,
    StringConstraints(min_length=1, max_length=50),
    WithJsonSchema({"type": "string", "minLength": 1, "maxLength": 50, "pattern": _NO_CONTROLS}),
]
NAME_KEY_MAX_LENGTH = 200


def _keyable(name: str) -> str:
    """A name whose key fits its column: NFKC expands some characters many times over."""
    if len(name_key(name)) > NAME_KEY_MAX_LENGTH:
        raise ValueError("must be shorter once its characters are normalised")
    return name


TagName = Annotated[
    str,
    *_TRIMMED_LINE,
    StringConstraints(min_length=1, max_length=50),
    AfterValidator(_keyable),
    WithJsonSchema(
        {"type": "string", "minLength": 1, "maxLength": 50, "pattern": _NO_CONTROLS_NOT_BLANK}
    ),
]
MAX_TAGS_PER_TASK = 20
TaskTags = Annotated[
    list[TagName],
    Field(
        max_length=MAX_TAGS_PER_TASK,
        description="Tag names, the whole set: a new name creates a tag; one equal to an "
        "existing tag's, ignoring case and Unicode form, is that tag.",
    ),
]


def name_key(name: str) -> str:
    """What makes two names one (categories, tags): Unicode NFKC, then case folded, so
    that `Café`, `CAFÉ` and `Cafe\u0301` are one name."""
    return unicodedata.normalize("NFKC", name).casefold()


def by_name(names: list[str]) -> list[str]:
    """Names as a task shows them: one per key, in the order of their keys."""
    return sorted({name_key(name): name for name in reversed(names)}.values(), key=name_key)


Description = Annotated[
    Text,
    StringConstraints(max_length=5000),
    WithJsonSchema({"type": "string", "maxLength": 5000, "pattern": _NO_CONTROLS_BUT_WHITESPACE}),
]
Color = Annotated[str, StringConstraints(pattern=r"^#[0-9A-Fa-f]{6}$")]
SearchText = Annotated[
    Line,
    StringConstraints(min_length=1, max_length=200),
    WithJsonSchema({"type": "string", "minLength": 1, "maxLength": 200, "pattern": _NO_CONTROLS}),
]


_N = r"[0-9]{1,3}"  # at most 999 of each unit: well inside what a date can move by
_TIME_PART = rf"({_N}H({_N}M)?({_N}S)?|{_N}M({_N}S)?|{_N}S)"
_OFFSET = rf"^P(({_N}W({_N}D)?|{_N}D)(T{_TIME_PART})?|T{_TIME_PART})$"
_OFFSETS: TypeAdapter[timedelta] = TypeAdapter(timedelta)


def reminder_offset(before: str) -> timedelta:
    """How long before its task's due time a reminder falls (`PT15M`: 15 minutes)."""
    return _OFFSETS.validate_python(before)


ReminderOffset = Annotated[
    str,
    StringConstraints(pattern=_OFFSET, max_length=40),
    Field(
        description="An ISO 8601 duration in weeks, days, hours, minutes and seconds, at "
        "most 999 of each: `PT15M`, `P1D`."
    ),
]
MAX_REMINDERS = 5


ChangeEntity = Literal["task", "category", "reminder"]
"""What the change feed tracks (a reminder: once it fired)."""
ChangeOp = Literal["upsert", "delete"]


class Priority(StrEnum):
    none = "none"
    low = "low"
    medium = "medium"
    high = "high"


PRIORITY_RANKS = {priority: rank for rank, priority in enumerate(Priority)}
PRIORITIES_BY_RANK = tuple(Priority)


class PriorityType(TypeDecorator[Priority]):
    """Stored as its rank, so that sorting by priority is sorting by a small integer."""

    impl = SmallInteger
    cache_ok = True

    def process_bind_param(self, value: Priority | None, dialect: Dialect) -> int | None:
        return None if value is None else PRIORITY_RANKS[Priority(value)]

    def process_result_value(self, value: int | None, dialect: Dialect) -> Priority | None:
        return None if value is None else PRIORITIES_BY_RANK[value]


class HistoryAction(StrEnum):
    created = "created"
    updated = "updated"
    completed = "completed"
    reopened = "reopened"
    deleted = "deleted"
    rescheduled = "rescheduled"
    """A recurring task moved on to its next occurrence."""


WEBHOOK_EVENTS = {
    "task.created": 1 << 0,
    "task.updated": 1 << 1,
    "task.completed": 1 << 2,
    "task.reopened": 1 << 3,
    "task.deleted": 1 << 4,
    "task.rescheduled": 1 << 5,
    "task.reminder": 1 << 6,
    "task.*": 0xFFFF,
    "category.created": 1 << 16,
    "category.updated": 1 << 17,
    "category.deleted": 1 << 18,
    "category.*": 0xFF << 16,
    "*": 0x7FFFFFFF,
}
"""What a webhook can subscribe to, each as the bits of the event types it takes (a
`*` also takes the types of that family yet to come): a write finds the webhooks of an
event by one bitwise AND (`webhooks.service`)."""
DeliveryStatus = Literal["pending", "delivered", "failed"]
WebhookEventName = Literal[
    "task.created",
    "task.updated",
    "task.completed",
    "task.reopened",
    "task.deleted",
    "task.rescheduled",
    "task.reminder",
    "task.*",
    "category.created",
    "category.updated",
    "category.deleted",
    "category.*",
    "*",
]


class TokenScope(StrEnum):
    read = "read"
    write = "write"


TokenName = Annotated[
    str,
    *_TRIMMED_LINE,
    StringConstraints(min_length=1, max_length=100),
    WithJsonSchema({"type": "string", "minLength": 1, "maxLength": 100, "pattern": _NO_CONTROLS}),
]


DEFAULT_LIMIT = 50
MAX_LIMIT = 100
# A page's size and position, as every list takes them (REST query strings, MCP tools).
PageLimit = Annotated[int, Field(ge=1, le=MAX_LIMIT, description="Items per page.")]
# The longest cursor the server issues: a title sort's position holds a 200-character
# title, 800 bytes of UTF-8 at most, which with the tiebreak id, the list's name and the
# MAC is under 900 bytes, about 1,200 characters of base64 (`pagination.CursorSigner`).
CURSOR_MAX_LENGTH = 2048
PageCursor = Annotated[
    str | None,
    Field(max_length=CURSOR_MAX_LENGTH, description="`next_cursor` of the previous page."),
]
# The change feed's page (REST and MCP alike).
CHANGES_DEFAULT_LIMIT = 100
ChangesLimit = Annotated[
    int, Field(ge=1, le=500, description="Changes per page, each entity at most once.")
]
SyncToken = Annotated[
    str | None,
    Field(
        max_length=CURSOR_MAX_LENGTH,
        description="`next_since` of an earlier answer; without it, a sync starts over.",
    ),
]
