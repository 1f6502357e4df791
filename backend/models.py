"""Every table and API schema, in the Base / table / Create / Update / Public pattern."""

from datetime import date, datetime
from typing import Annotated, Any, Generic, Literal, TypeVar
from uuid import UUID

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    HttpUrl,
    StrictBool,
    StringConstraints,
)
from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKeyConstraint,
    Index,
    String,
    UniqueConstraint,
    column,
    table,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel
from uuid6 import uuid7

from backend.db import UTCDateTime
from backend.fields import (
    DEFAULT_LIMIT,
    MAX_REMINDERS,
    MAX_TAGS_PER_TASK,
    TITLE_MAX_LENGTH,
    WEBHOOK_EVENTS,
    CategoryName,
    ChangeEntity,
    ChangeOp,
    Color,
    DeliveryStatus,
    Description,
    HistoryAction,
    Instant,
    PageCursor,
    PageLimit,
    Priority,
    PriorityType,
    ReminderOffset,
    SearchText,
    TagName,
    TaskTags,
    Title,
    TokenName,
    TokenScope,
    WebhookEventName,
)
from backend.recurrence.rules import RULE_MAX_LENGTH, RULE_PATTERN, check_rule, check_zone

USER_ID_MAX = 255
T = TypeVar("T")


class Public(BaseModel):
    """A response body, read from a row's attributes. It is not checked as input again:
    what the database holds was validated on the way in."""

    model_config = ConfigDict(from_attributes=True)


class StrictBody(SQLModel):
    """A request body: unknown and server-owned fields are refused."""

    model_config = ConfigDict(extra="forbid")  # type: ignore[assignment]


def _owner_key() -> Any:
    return Field(primary_key=True, max_length=USER_ID_MAX)


def _timestamp() -> Any:
    return Field(sa_type=UTCDateTime, nullable=False)


class Versioned(SQLModel):
    """A row clients edit concurrently: its version is its ETag and guards every write
    (`OwnedTable.update` and `.delete` match the version read)."""

    created_at: datetime = _timestamp()
    updated_at: datetime = _timestamp()
    version: int = 1


# A user, as last seen in a token's claims.
class User(SQLModel, table=True):
    __tablename__ = "users"

    id: str = Field(primary_key=True, max_length=USER_ID_MAX)
    email: str | None = Field(default=None, max_length=320)
    name: str | None = Field(default=None, max_length=255)
    created_at: datetime = _timestamp()
    updated_at: datetime = _timestamp()
    # SQLite: the user's last change-feed number (PostgreSQL numbers by transaction id).
    change_seq: int = Field(default=0, sa_type=BigInteger, nullable=False)


# What /me shows of the caller.
class UserPublic(Public):
    id: str
    email: str | None
    name: str | None
    created_at: datetime


# Fields of a category that a client sets.
class CategoryBase(SQLModel):
    name: CategoryName
    color: Color | None = None


# A category, owned by one user; its name is unique per user ignoring case.
class Category(CategoryBase, Versioned, table=True):
    __tablename__ = "categories"
    __table_args__ = (
        ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_categories_user"),
        UniqueConstraint("user_id", "name_key", name="uq_categories_user_name_key"),
    )

    user_id: str = _owner_key()
    id: UUID = Field(default_factory=uuid7, primary_key=True)
    name: str = Field(max_length=50)
    color: str | None = Field(default=None, max_length=7)
    name_key: str = Field(max_length=200)


# Body of POST and PUT on a category.
class CategoryCreate(CategoryBase, StrictBody):
    pass


# Body of PATCH on a category: only the fields present change.
class CategoryUpdate(StrictBody):
    # Left out means unchanged; `name` cannot be null.
    name: CategoryName = None  # type: ignore[assignment]
    color: Color | None = None


# A category as the API returns it.
class CategoryPublic(Public):
    id: UUID
    name: str
    color: str | None
    created_at: datetime
    updated_at: datetime
    version: int


# How a task recurs: an RFC 5545 rule on the wall clock of an IANA zone (decision 35).
class Recurrence(BaseModel):
    model_config = ConfigDict(extra="forbid", serialize_by_alias=True)

    rule: Annotated[
        str,
        StringConstraints(max_length=RULE_MAX_LENGTH, pattern=RULE_PATTERN),
        AfterValidator(check_rule),
    ] = Field(
        description="FREQ (DAILY, WEEKLY, MONTHLY, YEARLY), INTERVAL, BYDAY (ordinals when "
        "MONTHLY or YEARLY: `-1FR`), BYMONTHDAY (`-1`: the last day), BYMONTH, and COUNT "
        "or UNTIL (UTC: `20271231T235959Z`), each once, such as `FREQ=WEEKLY;BYDAY=MO`.",
    )
    tz: Annotated[str, AfterValidator(check_zone)] = Field(
        description="The IANA zone whose wall clock the rule follows, such as `Europe/Paris`."
    )
    from_: Literal["due", "completion"] = Field(
        "due",
        alias="from",
        description="Whether the next occurrence follows the current one's due time, or "
        "its completion.",
    )


# A task's recurrence as stored: the rule, and where its series stands (not shown).
class TaskRecurrence(Recurrence):
    model_config = ConfigDict(extra="ignore")

    anchor: str | None = Field(None, exclude=True)
    """The current occurrence as a wall-clock time in `tz` (`recurrence.rules`)."""
    left: int | None = Field(None, exclude=True)
    """How many occurrences remain, the current one included (`COUNT`); None: no count."""


# One occurrence of a recurring task: its instant, and its wall-clock time in the zone.
class Occurrence(BaseModel):
    at: datetime = Field(description="RFC 3339, UTC.")
    local: str = Field(description="`YYYY-MM-DDTHH:MM:SS` in the rule's zone, no offset.")


# The query string of a task's occurrences.
class OccurrencesQuery(BaseModel):
    limit: int = Field(10, ge=1, le=50, description="How many occurrences.")


# A reminder some time before the task's due time.
class ReminderBefore(BaseModel):
    model_config = ConfigDict(extra="forbid")

    before: ReminderOffset


# A reminder at a fixed instant.
class ReminderAt(BaseModel):
    model_config = ConfigDict(extra="forbid")

    at: Instant


Reminder = ReminderBefore | ReminderAt
TaskReminders = Annotated[
    list[Reminder],
    Field(
        max_length=MAX_REMINDERS,
        description='When to remind: `{"before": "PT15M"}` (before `due_at`) or '
        '`{"at": "<instant>"}`; each fires once, through the event stream and webhooks.',
    ),
]


# Fields of a task that a client sets.
class TaskBase(SQLModel):
    title: Title
    description: Description | None = None
    priority: Priority = Priority.none
    due_at: Instant | None = None
    category_id: UUID | None = None
    parent_id: UUID | None = Field(
        default=None, description="The task this one is a subtask of (at most 5 levels deep)."
    )


# A task, owned by one user; its category must be one of the same user's.
class Task(TaskBase, Versioned, table=True):
    __tablename__ = "tasks"
    __table_args__ = (
        ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_tasks_user"),
        ForeignKeyConstraint(
            ["user_id", "category_id"],
            ["categories.user_id", "categories.id"],
            name="fk_tasks_user_category",
        ),
        ForeignKeyConstraint(
            ["user_id", "parent_id"], ["tasks.user_id", "tasks.id"], name="fk_tasks_user_parent"
        ),
        Index("ix_tasks_user_parent", "user_id", "parent_id", "created_at", "id"),
        Index("ix_tasks_user_created", "user_id", "created_at", "id"),
        Index("ix_tasks_user_updated", "user_id", "updated_at", "id"),
        Index("ix_tasks_user_due", "user_id", "due_at", "id"),
        Index("ix_tasks_user_priority", "user_id", "priority", "id"),
        Index("ix_tasks_user_title", "user_id", "title", "id"),
        # `due_at` carried along: the open and overdue counts of the weekly statistics
        # are read from the index alone (PostgreSQL; migration covering_stats_indexes).
        Index(
            "ix_tasks_user_completed",
            "user_id",
            "completed",
            "created_at",
            "id",
            postgresql_include=["due_at"],
        ),
        Index("ix_tasks_user_category", "user_id", "category_id", "created_at", "id"),
    )

    user_id: str = _owner_key()
    id: UUID = Field(default_factory=uuid7, primary_key=True)
    title: str = Field(max_length=TITLE_MAX_LENGTH)
    description: str | None = Field(default=None, max_length=5000)
    priority: Priority = Field(default=Priority.none, sa_type=PriorityType, nullable=False)
    due_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    completed: bool = False
    completed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    tags: list[str] = Field(
        default_factory=list,
        sa_type=JSON,
        nullable=False,
        sa_column_kwargs={"server_default": text("'[]'")},
    )
    """The names of its tags as shown (`fields.by_name`), kept with the row so that a read
    needs no join; `task_tags` links the same tags for filters, renames and deletions."""
    recurrence: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    """A `TaskRecurrence`, with where its series stands."""
    reminders: list[dict[str, Any]] = Field(
        default_factory=list,
        sa_type=JSON,
        nullable=False,
        sa_column_kwargs={"server_default": text("'[]'")},
    )
    """As set; `reminders` holds when each falls and whether it fired."""


# When a task's reminder falls: pending until the worker fires it, which the feed tells.
class ScheduledReminder(SQLModel, table=True):
    __tablename__ = "reminders"
    __table_args__ = (
        ForeignKeyConstraint(
            ["user_id", "task_id"],
            ["tasks.user_id", "tasks.id"],
            name="fk_reminders_task",
            ondelete="CASCADE",
        ),
        Index("ix_reminders_user_task", "user_id", "task_id"),
        # Not owner-first: the worker looks across users for what is due.
        Index(
            "ix_reminders_due",
            "fire_at",
            postgresql_where=text("fired_at IS NULL"),
            sqlite_where=text("fired_at IS NULL"),
        ),
    )

    user_id: str = _owner_key()
    id: UUID = Field(default_factory=uuid7, primary_key=True)
    task_id: UUID
    fire_at: datetime = _timestamp()
    fired_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    title: str | None = Field(default=None, max_length=TITLE_MAX_LENGTH)
    """The task's title when it fired."""
    due_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    """The task's due time when it fired."""


# A reminder that fired, as the feed, the event stream and `task.reminder` webhooks show it.
class ReminderPublic(Public):
    id: UUID
    task_id: UUID
    title: str
    due_at: datetime | None
    fire_at: datetime
    fired_at: datetime


# A label of the user's tasks; its name is unique per user (NFKC, case folded).
class Tag(Versioned, table=True):
    __tablename__ = "tags"
    __table_args__ = (
        ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_tags_user"),
        UniqueConstraint("user_id", "name_key", name="uq_tags_user_name_key"),
    )

    user_id: str = _owner_key()
    id: UUID = Field(default_factory=uuid7, primary_key=True)
    name: str = Field(max_length=50)
    name_key: str = Field(max_length=200)


# Which task carries which tag (by the tag's key, which a rename changes in cascade).
class TaskTag(SQLModel, table=True):
    __tablename__ = "task_tags"
    __table_args__ = (
        ForeignKeyConstraint(
            ["user_id", "task_id"],
            ["tasks.user_id", "tasks.id"],
            name="fk_task_tags_task",
            ondelete="CASCADE",
        ),
        ForeignKeyConstraint(
            ["user_id", "tag_key"],
            ["tags.user_id", "tags.name_key"],
            name="fk_task_tags_tag",
            ondelete="CASCADE",
            onupdate="CASCADE",
        ),
        # A tag filter: the tasks of a tag.
        Index("ix_task_tags_user_tag", "user_id", "tag_key", "task_id"),
    )

    user_id: str = _owner_key()
    task_id: UUID = Field(primary_key=True)
    tag_key: str = Field(primary_key=True, max_length=200)


TASK_SEARCH = table(
    "task_search",
    *(column(c.name, c.type) for c in Task.__table__.columns),  # type: ignore[attr-defined]
)
"""The view searches read (migration `task_search_view`): the tasks of the caller
(`app.user_id`) on PostgreSQL, where the trigram index can serve `ILIKE` under row
security; on SQLite, the table. It has every column of `tasks`."""

POSTGRES_ONLY_INDEXES = frozenset({"ix_tasks_search", "ix_tasks_user_due_desc"})
"""Task indexes a migration creates on PostgreSQL only: trigram search and `-due_at`
(SQLite has neither trigrams nor `NULLS LAST` in an index)."""


# Body of POST on tasks.
class TaskCreate(TaskBase, StrictBody):
    tags: TaskTags = []
    recurrence: Recurrence | None = Field(None, description="Needs `due_at`.")
    reminders: TaskReminders = []


# Body of PUT on a task: every client-settable field, absent ones back to their defaults.
class TaskReplace(TaskBase, StrictBody):
    completed: StrictBool = False
    tags: TaskTags = []
    recurrence: Recurrence | None = Field(None, description="Needs `due_at`.")
    reminders: TaskReminders = []


# Body of PATCH on a task: only the fields present change.
class TaskUpdate(StrictBody):
    # Left out means unchanged; `title`, `priority` and `completed` cannot be null.
    title: Title = None  # type: ignore[assignment]
    description: Description | None = None
    priority: Priority = None  # type: ignore[assignment]
    due_at: Instant | None = None
    category_id: UUID | None = None
    parent_id: UUID | None = None
    completed: StrictBool = None  # type: ignore[assignment]
    tags: TaskTags = None  # type: ignore[assignment]
    recurrence: Recurrence | None = None
    reminders: TaskReminders = None  # type: ignore[assignment]


# A task as the API returns it.
class TaskPublic(Public):
    id: UUID
    title: str
    description: str | None
    priority: Priority
    due_at: datetime | None
    category_id: UUID | None
    parent_id: UUID | None
    completed: bool
    completed_at: datetime | None
    tags: list[str]
    recurrence: TaskRecurrence | None
    reminders: list[Reminder]
    created_at: datetime
    updated_at: datetime
    version: int


# A tag as the API returns it.
class TagPublic(Public):
    id: UUID
    name: str
    created_at: datetime
    updated_at: datetime
    version: int


# Body of PATCH on a tag: its new name (onto another tag's name is 409).
class TagUpdate(StrictBody):
    name: TagName


# What a list's query string asks of its page; a list with filters extends it.
class PageQuery(BaseModel):
    model_config = ConfigDict(frozen=True)

    limit: PageLimit = DEFAULT_LIMIT
    cursor: PageCursor = None


# The filters of a task list, read from its query string; they combine with AND.
class TaskFilters(BaseModel):
    model_config = ConfigDict(frozen=True)

    completed: bool | None = None
    category_id: UUID | Literal["none"] | None = Field(
        None, description="A category id, or `none`."
    )
    parent_id: UUID | Literal["none"] | None = Field(
        None, description="A task's id (its direct subtasks), or `none` (top-level tasks)."
    )
    priority: Priority | None = None
    due_before: Instant | None = None
    due_after: Instant | None = None
    q: SearchText | None = Field(None, description="Substring of title or description.")
    tag: list[TagName] | None = Field(
        None, max_length=MAX_TAGS_PER_TASK, description="A tag's name; repeat for more."
    )
    tag_mode: Literal["all", "any"] = Field(
        "all", description="Whether a task must carry every `tag` or any of them."
    )


TaskSort = Literal[
    "created_at", "-created_at", "updated_at", "-updated_at", "due_at", "-due_at",
    "priority", "-priority", "title", "-title",
]  # fmt: skip


# The query string of a task list: its filters, its sort and its page.
class TaskListQuery(PageQuery, TaskFilters):
    sort: TaskSort = "-created_at"


# One immutable entry of a task's audit log; it outlives the task.
class TaskHistory(SQLModel, table=True):
    __tablename__ = "task_history"
    __table_args__ = (
        ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_task_history_user"),
        # `action` carried along: the week's counts are read from the index alone.
        Index(
            "ix_task_history_user_occurred",
            "user_id",
            "occurred_at",
            "id",
            postgresql_include=["action"],
        ),
        Index("ix_task_history_user_task", "user_id", "task_id", "occurred_at", "id"),
    )

    user_id: str = _owner_key()
    id: UUID = Field(default_factory=uuid7, primary_key=True)
    task_id: UUID
    action: HistoryAction = Field(sa_type=String(16), nullable=False)
    changes: dict[str, Any] = Field(sa_type=JSON().with_variant(JSONB(), "postgresql"))
    title: str = Field(max_length=TITLE_MAX_LENGTH)
    occurred_at: datetime = _timestamp()


# A history entry as the API returns it.
class HistoryPublic(Public):
    id: UUID
    task_id: UUID
    action: HistoryAction
    changes: dict[str, Any]
    title: str
    occurred_at: datetime


# The filters of a history list, read from its query string; they combine with AND.
class HistoryFilters(BaseModel):
    model_config = ConfigDict(frozen=True)

    task_id: UUID | None = None
    action: HistoryAction | None = None
    since: Instant | None = Field(None, description="Inclusive.")
    until: Instant | None = Field(None, description="Exclusive.")


# The query string of a history list: its filters and its page.
class HistoryListQuery(PageQuery, HistoryFilters):
    pass


# The change feed: per entity of a user, its last change, numbered in commit order.
class Change(SQLModel, table=True):
    __tablename__ = "changes"
    __table_args__ = (
        ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_changes_user"),
        UniqueConstraint("user_id", "seq", name="uq_changes_user_seq"),
        # Not owner-first: `todo-api prune` finds every user's old deletions.
        Index(
            "ix_changes_deletions",
            "changed_at",
            postgresql_where=text("op = 'delete'"),
            sqlite_where=text("op = 'delete'"),
        ),
    )

    user_id: str = _owner_key()
    entity: ChangeEntity = Field(primary_key=True, sa_type=String(16))
    entity_id: UUID = Field(primary_key=True)
    seq: int = Field(sa_type=BigInteger, nullable=False)
    op: ChangeOp = Field(sa_type=String(8), nullable=False)
    version: int
    changed_at: datetime = _timestamp()


# A task in the change feed: its current state, or null once deleted.
class TaskChange(BaseModel):
    entity: Literal["task"]
    id: UUID
    op: ChangeOp
    version: int
    data: TaskPublic | None


# A category in the change feed: its current state, or null once deleted.
class CategoryChange(BaseModel):
    entity: Literal["category"]
    id: UUID
    op: ChangeOp
    version: int
    data: CategoryPublic | None


# A reminder in the change feed, once it fired; null once its task is deleted.
class ReminderChange(BaseModel):
    entity: Literal["reminder"]
    id: UUID
    op: ChangeOp
    version: int
    data: ReminderPublic | None


# One page of the change feed; pass `next_since` back as `since` for what follows.
class ChangesPage(BaseModel):
    changes: list[
        Annotated[TaskChange | CategoryChange | ReminderChange, Field(discriminator="entity")]
    ]
    next_since: str
    has_more: bool


# A ticket that opens one event stream from a browser (`EventSource` sends no header);
# only its SHA-256 is stored, and opening the stream deletes it.
class EventTicket(SQLModel, table=True):
    __tablename__ = "event_tickets"
    __table_args__ = (
        ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_event_tickets_user"),
    )

    user_id: str = _owner_key()
    digest: str = Field(primary_key=True, max_length=64)
    expires_at: datetime = _timestamp()
    stream_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    """When the token that asked for the ticket stops being accepted: the stream ends then."""
    token_digest: str | None = Field(default=None, max_length=64)
    """The personal access token that asked for it: the stream ends when it is revoked."""


# A ticket as its 201 answer shows it, the one time its secret is shown.
class TicketPublic(BaseModel):
    ticket: str
    expires_at: datetime


# A change as an event stream tells it: what changed, not its state (read it if needed).
class ChangeEvent(BaseModel):
    entity: ChangeEntity
    id: UUID
    op: ChangeOp
    version: int


# A personal access token for scripts and integrations; only its SHA-256 is stored.
class PersonalToken(SQLModel, table=True):
    __tablename__ = "personal_tokens"
    __table_args__ = (
        ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_personal_tokens_user"),
        UniqueConstraint("token_hash", name="uq_personal_tokens_hash"),
    )

    user_id: str = _owner_key()
    id: UUID = Field(default_factory=uuid7, primary_key=True)
    name: str = Field(max_length=100)
    scope: TokenScope = Field(sa_type=String(8), nullable=False)
    token_hash: str = Field(max_length=64)
    hint: str = Field(max_length=16)
    created_at: datetime = _timestamp()
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


# Body of POST on tokens.
class TokenCreate(StrictBody):
    name: TokenName
    scope: TokenScope = TokenScope.read
    expires_at: Instant | None = None


# A personal access token as listed: never its secret.
class TokenPublic(Public):
    id: UUID
    name: str
    scope: TokenScope
    hint: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None


# The answer to POST on tokens: the only time the secret is shown.
class TokenCreated(TokenPublic):
    token: str


# An integration's endpoint: signed deliveries of the events it subscribes to.
class Webhook(Versioned, table=True):
    __tablename__ = "webhooks"
    __table_args__ = (ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_webhooks_user"),)

    user_id: str = _owner_key()
    id: UUID = Field(default_factory=uuid7, primary_key=True)
    url: str = Field(max_length=2083)
    events: list[str] = Field(sa_type=JSON, nullable=False)
    event_mask: int = Field(sa_type=BigInteger, nullable=False)
    """`events` as the bits of `fields.WEBHOOK_EVENTS`, which a write matches in SQL."""
    enabled: bool = True
    disabled_reason: str | None = Field(default=None, max_length=300)
    secret: str = Field(max_length=100)
    """Kept whole: deliveries are signed with it (HMAC needs the key itself)."""
    previous_secret: str | None = Field(default=None, max_length=100)
    previous_secret_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    """A rotation signs with both secrets until then."""


# One event to one webhook: an outbox row written with the change, then its attempts.
class WebhookDelivery(SQLModel, table=True):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        ForeignKeyConstraint(
            ["user_id", "webhook_id"],
            ["webhooks.user_id", "webhooks.id"],
            name="fk_webhook_deliveries_webhook",
            ondelete="CASCADE",
        ),
        # The endpoint's line: its oldest pending delivery goes first.
        Index(
            "ix_webhook_deliveries_pending_line",
            "user_id",
            "webhook_id",
            "seq",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
        # Not owner-first: the worker looks across users for what is due.
        Index(
            "ix_webhook_deliveries_due",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
        Index("ix_webhook_deliveries_listed", "user_id", "webhook_id", "created_at", "id"),
    )

    user_id: str = _owner_key()
    webhook_id: UUID = Field(primary_key=True)
    id: UUID = Field(primary_key=True)
    """The `webhook-id` of every attempt; one event has the same id at every webhook."""
    seq: int = Field(sa_type=BigInteger, nullable=False)
    """The endpoint's order, numbered as the change feed is (`changes.service`)."""
    type: str = Field(max_length=40)
    body: str
    """The body as signed, fixed when the change commits: every retry sends these bytes."""
    created_at: datetime = _timestamp()
    status: DeliveryStatus = Field(default="pending", sa_type=String(10), nullable=False)
    attempts: int = 0
    next_attempt_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    leased_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    """A worker holds the delivery until then; one killed meanwhile leaves it to the next."""
    last_attempt_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_status: int | None = None
    last_error: str | None = Field(default=None, max_length=300)
    last_response: str | None = Field(default=None, max_length=1024)


WebhookEvents = Annotated[
    list[WebhookEventName],
    Field(
        min_length=1,
        max_length=len(WEBHOOK_EVENTS),
        description="What to deliver; `*` is every event.",
    ),
]


# Body of POST on webhooks.
class WebhookCreate(StrictBody):
    url: HttpUrl = Field(
        description="`https`, except for hosts the server allows (`WEBHOOK_ALLOWED_HOSTS`)."
    )
    events: WebhookEvents = ["*"]
    enabled: StrictBool = True


# Body of PATCH on a webhook: only the fields present change; enabling clears the reason.
class WebhookUpdate(StrictBody):
    url: HttpUrl = None  # type: ignore[assignment]
    events: WebhookEvents = None  # type: ignore[assignment]
    enabled: StrictBool = None  # type: ignore[assignment]


# A webhook as listed: never its secret.
class WebhookPublic(Public):
    id: UUID
    url: str
    events: list[WebhookEventName]
    enabled: bool
    disabled_reason: str | None
    created_at: datetime
    updated_at: datetime
    version: int


# The answer to creating a webhook or rotating its secret: the only time it is shown.
class WebhookCreated(WebhookPublic):
    secret: str = Field(description="`whsec_` and the base64 key: verify deliveries with it.")


# A delivery as listed: the event, and how its attempts went.
class DeliveryPublic(Public):
    id: UUID = Field(description="The `webhook-id` header of each attempt.")
    type: str
    status: DeliveryStatus
    attempts: int
    last_status: int | None = Field(description="The receiver's HTTP status, if it answered.")
    last_error: str | None
    last_response: str | None = Field(description="The first KiB of the receiver's answer.")
    last_attempt_at: datetime | None
    next_attempt_at: datetime | None
    created_at: datetime


# A write's `Idempotency-Key`: claimed while in flight, then the response to replay.
class IdempotencyRecord(SQLModel, table=True):
    __tablename__ = "idempotency_keys"
    __table_args__ = (
        ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_idempotency_keys_user"),
        Index("ix_idempotency_keys_user_expires", "user_id", "expires_at"),
    )

    user_id: str = _owner_key()
    key: str = Field(primary_key=True, max_length=255)
    fingerprint: str = Field(max_length=64)
    status_code: int | None = None
    headers: dict[str, str] | None = Field(default=None, sa_type=JSON)
    body: str | None = None
    created_at: datetime = _timestamp()
    expires_at: datetime = _timestamp()


BatchOperationId = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
]


# One request of a batch: a route of the caller's, relative to `/api/{user_id}`.
class BatchOperation(StrictBody):
    id: BatchOperationId = Field(
        description="Names the operation: `$<id>` stands for the id it creates."
    )
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
    path: Annotated[str, StringConstraints(max_length=2048, pattern=r"^/")] = Field(
        description="Relative to `/api/{user_id}`, e.g. `/tasks/$op1/complete`."
    )
    body: Any = None
    headers: dict[str, str] = Field(
        default_factory=dict, description="Such as `If-Match`; not `Idempotency-Key`."
    )


# Body of POST on batch.
class BatchRequest(StrictBody):
    atomic: StrictBool = Field(
        default=True, description="All or nothing in one transaction; else each on its own."
    )
    operations: list[BatchOperation] = Field(min_length=1, max_length=100)


# What one operation answered, as its single request would have.
class BatchOperationResult(BaseModel):
    id: str
    status: int
    headers: dict[str, str]
    body: Any


# The answer to a batch: whether its writes are stored, and each operation's answer.
class BatchResult(BaseModel):
    committed: bool
    results: list[BatchOperationResult]


# One page of a list; `next_cursor` is null on the last page.
class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None


# One local day of the weekly statistics.
class DayStats(BaseModel):
    date: date
    created: int
    completed: int


# The seven local days ending today, computed from the history.
class WeeklyStats(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    tz: str
    from_: date = Field(alias="from")
    to: date
    days: list[DayStats]
    created: int
    completed: int
    open: int
    overdue: int
    completion_rate: float
