"""The OpenAPI document's finish: the problems every route documents, tag descriptions,
schema examples, problem media types."""

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from backend import messages
from backend.envelope import document_envelopes
from backend.errors import (
    PROBLEM_JSON,
    Conflict,
    DatabaseUnavailable,
    Forbidden,
    InvalidInput,
    NotAuthenticated,
    NotFound,
    PayloadTooLarge,
    PreconditionFailed,
)


class ProblemDetail(BaseModel):
    """An RFC 9457 problem document; `code` is the stable, machine-readable part."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    code: str
    errors: list[dict[str, Any]] | None = None


def problem_response(
    status: int, code: str, description: str, *, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """An error response for the OpenAPI document: the problem schema, an example, headers."""
    example: dict[str, Any] = {
        "type": "about:blank",
        "title": messages.title(code),
        "status": status,
        "detail": DETAILS_BY_CODE.get(code, HTTPStatus(status).description),
        "code": code,
    }
    if code == "validation_error":
        example["errors"] = [
            {"loc": ["body", "title"], "msg": "Title is required.", "type": "missing"}
        ]
    documented: dict[str, Any] = {
        "model": ProblemDetail,
        "content": {PROBLEM_JSON: {"example": example}},
        "description": description,
    }
    if headers:
        documented["headers"] = {
            name: {"description": text, "schema": {"type": "string"}}
            for name, text in headers.items()
        }
    return documented


RETRY_AFTER = {"Retry-After": "Seconds to wait before trying again."}
DETAILS_BY_CODE = {
    error.code: error.detail
    for error in (
        NotAuthenticated,
        Forbidden,
        NotFound,
        Conflict,
        PreconditionFailed,
        PayloadTooLarge,
        DatabaseUnavailable,
    )
} | {"validation_error": InvalidInput.detail, "bad_request": "The body is not valid JSON."}

PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: problem_response(400, "bad_request", "The body could not be read (`bad_request`)."),
    401: problem_response(
        401,
        "not_authenticated",
        "No valid bearer token (`not_authenticated`, `invalid_token`).",
        headers={"WWW-Authenticate": '`Bearer`, with `error="invalid_token"` for a bad token.'},
    ),
    403: problem_response(
        403,
        "forbidden",
        "The token's subject is not the path's user (`forbidden`), or a personal token's "
        "scope does not allow the request (`insufficient_scope`).",
    ),
    404: problem_response(404, "not_found", "No such resource among the caller's (`not_found`)."),
    409: problem_response(
        409,
        "conflict",
        "A conflict (`conflict`): a duplicate name, a request with the same "
        "Idempotency-Key still in progress, a limit reached, or a resource changing too fast.",
    ),
    413: problem_response(
        413, "payload_too_large", "The body is over 64 KiB (`payload_too_large`)."
    ),
    422: problem_response(
        422, "validation_error", "The request is not valid (`validation_error`), with `errors`."
    ),
    429: problem_response(
        429,
        "rate_limited",
        "Too many requests from this caller or address (`rate_limited`); see `Retry-After`, "
        "and `RateLimit` / `RateLimit-Policy` (on every response).",
        headers={
            "Retry-After": "Seconds until the exhausted budget refills.",
            "RateLimit": 'What is left of each budget, e.g. `"user";r=0;t=42`.',
            "RateLimit-Policy": 'The budgets that apply, e.g. `"user";q=600;w=60`.',
        },
    ),
    503: problem_response(
        503,
        "db_unavailable",
        "The database (`db_unavailable`) or the identity provider's keys (`auth_unavailable`) "
        "are unavailable, or the request took too long (`timeout`).",
        headers=RETRY_AFTER,
    ),
}


def query_parameters(model: type[BaseModel]) -> dict[str, Any]:
    """The `openapi_extra` of a route that reads its query string as `model` itself
    (`pagination.ListQuery`): each field a parameter, as FastAPI documents a query model."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    required = set(schema.get("required", ()))
    parameters = []
    for name, field in schema["properties"].items():
        if "$ref" not in field:
            field.setdefault("title", name.title().replace("_", " "))
        parameter = {"name": name, "in": "query", "required": name in required, "schema": field}
        if "description" in field:
            parameter["description"] = field["description"]
        parameters.append(parameter)
    return {"parameters": parameters}


def document_problems(document: dict[str, Any]) -> dict[str, Any]:
    """Errors are served as `application/problem+json` only: FastAPI documents a response
    model under `application/json`, so move its schema to the problem media type."""
    for path_item in document.get("paths", {}).values():
        for operation in path_item.values():
            for response in operation.get("responses", {}).values():
                content = response.get("content", {})
                if PROBLEM_JSON not in content:
                    continue
                # FastAPI documents the model under the route's own media type (JSON, or
                # an event stream's): the problem's is the only one an error is served as.
                problem = content[PROBLEM_JSON]
                for media_type in [t for t in content if t != PROBLEM_JSON]:
                    problem.setdefault("schema", content.pop(media_type).get("schema"))
    return document


TAGS: list[dict[str, Any]] = [
    {
        "name": "tasks",
        "description": "The caller's tasks: keyset-paginated lists with filters and sorts, "
        "conditional writes (`If-Match`, `ETag`), idempotent creates and completions "
        "(`Idempotency-Key`).",
    },
    {
        "name": "categories",
        "description": "Categories to group tasks; names are unique per user, ignoring case "
        "and Unicode form.",
    },
    {
        "name": "tags",
        "description": "Labels of the caller's tasks, created by naming them on a task; "
        "renaming or deleting one changes every task that carries it.",
    },
    {
        "name": "history",
        "description": "The immutable record of every task change, written in the same "
        "transaction as the change; it survives the task's deletion.",
    },
    {
        "name": "changes",
        "description": "The change feed: what changed since a sync token, each task and "
        "category once, in commit order, for clients that keep a copy.",
    },
    {
        "name": "events",
        "description": "The change feed live, as server-sent events, for open tabs and apps; "
        "browsers open it with a ticket.",
    },
    {
        "name": "batch",
        "description": "Many operations in one request, each as its single request runs: "
        "all or nothing by default.",
    },
    {
        "name": "webhooks",
        "description": "Signed deliveries of the caller's changes to integrations (Standard "
        "Webhooks), retried for a day; their deliveries, redelivery and pings.",
    },
    {"name": "stats", "description": "Weekly statistics, computed from the history."},
    {"name": "users", "description": "The caller's user record."},
    {
        "name": "tokens",
        "description": "Personal access tokens for scripts (`read` or `write` scope). "
        "Managed with a session token only; the secret is shown once.",
    },
    {"name": "health", "description": "Liveness and readiness probes; public."},
]

TASK_ID = "0193a5f2-7c1e-7d3a-9b2e-4f6a8c0d1e2f"
CATEGORY_ID = "0193a5f1-2b3c-7e4d-8f5a-6b7c8d9e0f1a"
TASK_CREATE = {
    "title": "Buy milk",
    "description": "Oat milk, two litres",
    "priority": "high",
    "due_at": "2026-06-01T17:00:00+02:00",
    "category_id": None,
    "parent_id": None,
    "tags": ["groceries", "Urgent"],
    "recurrence": None,
    "reminders": [{"before": "PT30M"}],
}
RECURRENCE = {"rule": "FREQ=WEEKLY;BYDAY=MO", "tz": "Europe/Paris", "from": "due"}
REMINDER_PUBLIC = {
    "id": "0193a5f5-3c4d-7e5f-8a6b-7c8d9e0f1a2b",
    "task_id": TASK_ID,
    "title": "Buy milk",
    "due_at": "2026-06-01T15:00:00Z",
    "fire_at": "2026-06-01T14:30:00Z",
    "fired_at": "2026-06-01T14:30:01Z",
}
OCCURRENCE = {"at": "2026-06-01T07:00:00Z", "local": "2026-06-01T09:00:00"}
TASK_PUBLIC = TASK_CREATE | {
    "id": TASK_ID,
    "due_at": "2026-06-01T15:00:00Z",
    "category_id": CATEGORY_ID,
    "completed": False,
    "completed_at": None,
    "created_at": "2026-05-30T08:15:00Z",
    "updated_at": "2026-05-30T08:15:00Z",
    "version": 1,
}
CATEGORY_PUBLIC = {
    "id": CATEGORY_ID,
    "name": "Errands",
    "color": "#3366FF",
    "created_at": "2026-05-29T18:00:00Z",
    "updated_at": "2026-05-29T18:00:00Z",
    "version": 1,
}
TOKEN_PUBLIC = {
    "id": "0193a5f3-1a2b-7c3d-8e4f-5a6b7c8d9e0f",
    "name": "backup script",
    "scope": "read",
    "hint": "todo_pat_Xy3k",
    "created_at": "2026-05-30T09:00:00Z",
    "expires_at": "2026-08-30T00:00:00Z",
    "last_used_at": None,
}
WEEK = ["2026-05-24", "2026-05-25", "2026-05-26", "2026-05-27", "2026-05-28", "2026-05-29"]

POPUP = {"icon": "success", "title": "Task created", "text": "“Buy milk” was added."}
TAG_PUBLIC = {
    "id": "0193a5f4-7b8c-7d9e-8f0a-1b2c3d4e5f60",
    "name": "Urgent",
    "created_at": "2026-05-29T18:00:00Z",
    "updated_at": "2026-05-29T18:00:00Z",
    "version": 1,
}
BATCH_OPERATIONS = [
    {"id": "trip", "method": "POST", "path": "/tasks", "body": {"title": "Trip"}},
    {
        "id": "flights",
        "method": "POST",
        "path": "/tasks",
        "body": {"title": "Book flights", "parent_id": "$trip"},
        "headers": {},
    },
]
BATCH_RESULTS = [
    {
        "id": "trip",
        "status": 201,
        "headers": {"Location": f"/api/alice/tasks/{TASK_ID}", "ETag": '"1"'},
        "body": TASK_PUBLIC,
    }
]
WEBHOOK_PUBLIC = {
    "id": "0193a5f4-5e6f-7a8b-9c0d-1e2f3a4b5c6d",
    "url": "https://hooks.example.com/todo",
    "events": ["task.completed"],
    "enabled": True,
    "disabled_reason": None,
    "created_at": "2026-05-29T18:00:00Z",
    "updated_at": "2026-05-29T18:00:00Z",
    "version": 1,
}
DELIVERY_PUBLIC = {
    "id": "0193a5f4-6a7b-7c8d-9e0f-1a2b3c4d5e6f",
    "type": "task.completed",
    "status": "pending",
    "attempts": 1,
    "last_status": 503,
    "last_error": "The receiver answered 503.",
    "last_response": "Service Unavailable",
    "last_attempt_at": "2026-05-30T10:00:01Z",
    "next_attempt_at": "2026-05-30T10:00:06Z",
    "created_at": "2026-05-30T10:00:00Z",
}
SCHEMA_EXAMPLES: dict[str, dict[str, Any]] = {
    "TaskCreate": TASK_CREATE,
    "TaskReplace": TASK_CREATE | {"completed": False},
    "TaskUpdate": {"priority": "medium", "completed": True},
    "TaskPublic": TASK_PUBLIC,
    "Recurrence": RECURRENCE,
    "TaskRecurrence": RECURRENCE,
    "ReminderBefore": {"before": "PT15M"},
    "ReminderAt": {"at": "2026-06-01T07:00:00Z"},
    "ReminderPublic": REMINDER_PUBLIC,
    "ReminderChange": {
        "entity": "reminder",
        "id": REMINDER_PUBLIC["id"],
        "op": "upsert",
        "version": 1,
        "data": REMINDER_PUBLIC,
    },
    "Occurrence": OCCURRENCE,
    "Page_Occurrence_": {"items": [OCCURRENCE], "next_cursor": None},
    "Popup": POPUP,
    "TicketPublic": {
        "ticket": "todo_evt_mF4dZ2vYbq0cNw8RkT1sXa7LhUe3Jo9GiP6VyCn5BtQ",
        "expires_at": "2026-05-01T09:31:00Z",
    },
    "Envelope": {"success": True, "data": TASK_PUBLIC, "popup": POPUP, "error": None},
    "Page_TaskPublic_": {"items": [TASK_PUBLIC], "next_cursor": "eyJrIjpbIjIwMjYtMDUt..."},
    "CategoryCreate": {"name": "Errands", "color": "#3366FF"},
    "CategoryUpdate": {"color": "#22AA55"},
    "CategoryPublic": CATEGORY_PUBLIC,
    "TagPublic": TAG_PUBLIC,
    "TagUpdate": {"name": "Errands"},
    "Page_TagPublic_": {"items": [TAG_PUBLIC], "next_cursor": None},
    "Page_CategoryPublic_": {"items": [CATEGORY_PUBLIC], "next_cursor": None},
    "HistoryPublic": {
        "id": "0193a5f4-0a1b-7c2d-9e3f-4a5b6c7d8e9f",
        "task_id": TASK_ID,
        "action": "completed",
        "changes": {
            "completed": {"from": False, "to": True},
            "completed_at": {"from": None, "to": "2026-05-30T10:00:00Z"},
        },
        "title": "Buy milk",
        "occurred_at": "2026-05-30T10:00:00Z",
    },
    "DayStats": {"date": "2026-05-30", "created": 3, "completed": 1},
    "WeeklyStats": {
        "tz": "Europe/Paris",
        "from": "2026-05-24",
        "to": "2026-05-30",
        "days": [{"date": day, "created": 0, "completed": 0} for day in WEEK]
        + [{"date": "2026-05-30", "created": 3, "completed": 1}],
        "created": 3,
        "completed": 1,
        "open": 2,
        "overdue": 0,
        "completion_rate": 0.3333,
    },
    "UserPublic": {
        "id": "alice",
        "email": "alice@example.com",
        "name": "Alice",
        "created_at": "2026-05-29T17:55:00Z",
    },
    "TokenCreate": {"name": "backup script", "scope": "read", "expires_at": "2026-08-30T00:00:00Z"},
    "TokenPublic": TOKEN_PUBLIC,
    "TokenCreated": TOKEN_PUBLIC | {"token": "todo_pat_Xy3kQ0d5mFh2...redacted"},
    "Page_HistoryPublic_": {"items": [], "next_cursor": None},
    "Page_TokenPublic_": {"items": [TOKEN_PUBLIC], "next_cursor": None},
    "TaskChange": {
        "entity": "task",
        "id": TASK_ID,
        "op": "upsert",
        "version": 1,
        "data": TASK_PUBLIC,
    },
    "CategoryChange": {
        "entity": "category",
        "id": CATEGORY_ID,
        "op": "delete",
        "version": 3,
        "data": None,
    },
    "ChangesPage": {
        "changes": [
            {"entity": "task", "id": TASK_ID, "op": "upsert", "version": 1, "data": TASK_PUBLIC},
            {"entity": "category", "id": CATEGORY_ID, "op": "delete", "version": 3, "data": None},
        ],
        "next_since": "WyJjaGFuZ2VzIixbNDIsMCwxNzgwMTM2MDAwXV0...",
        "has_more": False,
    },
    "BatchOperation": BATCH_OPERATIONS[1],
    "BatchRequest": {"atomic": True, "operations": BATCH_OPERATIONS},
    "BatchOperationResult": BATCH_RESULTS[0],
    "BatchResult": {"committed": True, "results": BATCH_RESULTS},
    "WebhookCreate": {"url": "https://hooks.example.com/todo", "events": ["task.completed"]},
    "WebhookUpdate": {"enabled": True},
    "WebhookPublic": WEBHOOK_PUBLIC,
    "WebhookCreated": WEBHOOK_PUBLIC | {"secret": "whsec_MfKQ9r8GKYqQ...redacted"},
    "Page_WebhookPublic_": {"items": [WEBHOOK_PUBLIC], "next_cursor": None},
    "DeliveryPublic": DELIVERY_PUBLIC,
    "Page_DeliveryPublic_": {"items": [DELIVERY_PUBLIC], "next_cursor": None},
    "ProblemDetail": {
        "type": "about:blank",
        "title": "Not Found",
        "status": 404,
        "detail": "No such resource.",
        "code": "not_found",
    },
}
"""One example per schema, shown for request bodies and responses alike; tests validate
each against its model."""


class TodoAPI(FastAPI):
    """FastAPI, with the document finished once: problems under their media type, examples."""

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is None:
            document = document_envelopes(document_problems(super().openapi()))
            for name, schema in document["components"]["schemas"].items():
                if name in SCHEMA_EXAMPLES:
                    schema["examples"] = [SCHEMA_EXAMPLES[name]]
            self.openapi_schema = document
        return self.openapi_schema
