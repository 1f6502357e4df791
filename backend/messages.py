"""The API's words: what a problem document, a popup and an MCP tool say to a person.

One catalogue, so that a 422 reads the same in a problem's `errors[].msg`, a popup's
`text` and an MCP tool's result: a sentence about the request ("Title must not be
empty"), never the validator's ("String should have at least 1 character").
"""

from typing import Any, Literal

from pydantic import BaseModel

Icon = Literal["success", "error", "warning", "info"]


class Popup(BaseModel):
    """What a frontend shows after an answer (SweetAlert2's `icon`, `title`, `text`)."""

    icon: Icon
    title: str
    text: str


TITLES = {
    "bad_request": "The request is malformed",
    "not_authenticated": "Sign-in required",
    "invalid_token": "The sign-in is not valid",
    "forbidden": "Not allowed",
    "insufficient_scope": "Not allowed with this token",
    "not_found": "Not found",
    "method_not_allowed": "Method not allowed",
    "conflict": "Conflict",
    "sync_expired": "Sync expired",
    "precondition_failed": "Changed elsewhere",
    "precondition_required": "Version required",
    "payload_too_large": "Request too large",
    "unsupported_media_type": "Unsupported content type",
    "validation_error": "Some fields are not valid",
    "rate_limited": "Too many requests",
    "auth_unavailable": "Sign-in unavailable",
    "db_unavailable": "Service unavailable",
    "timeout": "Request timed out",
    "cors_refused": "Origin not allowed",
    "failed_dependency": "Not run",
    "internal_error": "Something went wrong",
}
"""A problem document's `title` by its `code`: the same for every instance of the code."""


def title(code: str) -> str:
    return TITLES.get(code, "Something went wrong")


_NEXT_STEPS = {
    "not_authenticated": "Sign in and try again.",
    "invalid_token": "Sign in again.",
    "not_found": "Reload the list: it may have been deleted.",
}
"""What to do next, after the problem's detail, where the detail does not say it."""
_ERROR_TEXTS = {
    "precondition_failed": "The {resource} was changed elsewhere since you loaded it. "
    "Reload the {resource} and try again.",
    "rate_limited": "Too many requests. Wait {retry_after} and try again.",
}
"""A popup's text in place of the problem's detail, where a person needs other words."""
_WARNINGS = frozenset({409, 412, 429})


def error_popup(
    operation: str | None, problem: dict[str, Any], *, retry_after: str | None = None
) -> Popup:
    """The popup of an error: the problem's title, and its detail (or first field error)
    with what to do next, where there is something to do."""
    code = str(problem.get("code", ""))
    errors = [e for e in problem.get("errors") or [] if isinstance(e, dict) and "msg" in e]
    text = str(errors[0]["msg"]) if errors else str(problem.get("detail", ""))
    if len(errors) == 2:
        text += " One more field is not valid."
    elif len(errors) > 2:
        text += f" {len(errors) - 1} more fields are not valid."
    if step := _NEXT_STEPS.get(code):
        text = f"{text} {step}"
    wait = "a moment" if not retry_after else _seconds(retry_after)
    if template := _ERROR_TEXTS.get(code):
        text = template.format(resource=_resource(operation), retry_after=wait)
    icon: Icon = "warning" if problem.get("status") in _WARNINGS else "error"
    return Popup(icon=icon, title=str(problem.get("title") or title(code)), text=text)


_WRITES: dict[str, tuple[str, str]] = {
    "create_task": ("Task created", "“{title}” was added."),
    "replace_task": ("Task saved", "“{title}” was saved."),
    "update_task": ("Task updated", "“{title}” was updated."),
    "complete_task": ("Task completed", "“{title}” is done."),
    "reopen_task": ("Task reopened", "“{title}” is open again."),
    "delete_task": ("Task deleted", "The task was deleted."),
    "create_category": ("Category created", "“{name}” was added."),
    "replace_category": ("Category saved", "“{name}” was saved."),
    "update_category": ("Category updated", "“{name}” was updated."),
    "delete_category": ("Category deleted", "The category was deleted; its tasks are kept."),
    "rename_tag": ("Tag renamed", "Its tasks now show “{name}”."),
    "delete_tag": ("Tag deleted", "The tag was removed from its tasks."),
    "create_token": ("Token created", "“{name}” was created. Copy it now: it is shown once."),
    "delete_token": ("Token revoked", "The token no longer works."),
    "create_webhook": ("Webhook created", "Copy its secret now: it is shown once."),
    "update_webhook": ("Webhook updated", "{url} was updated."),
    "delete_webhook": ("Webhook deleted", "Its deliveries stop."),
    "rotate_webhook_secret": ("Secret rotated", "Copy the new secret now: it is shown once."),
    "redeliver_delivery": ("Delivery queued", "The event will be sent again."),
    "ping_webhook": ("Ping queued", "A ping will be sent to the webhook."),
}
"""Each write's popup on success, by operation id; `{field}` is the answer's field."""
QUIET_WRITES = frozenset({"create_event_ticket", "run_batch"})
"""Writes with no popup: a frontend makes them for itself, not for the person (a ticket),
or one popup could not tell them (a batch's operations each answer on their own)."""


def announces(operation: str | None) -> bool:
    """Whether a success of `operation` has a popup (a write does, a read does not)."""
    return operation in _WRITES


def success_popup(operation: str | None, data: Any) -> Popup | None:
    """The popup of a successful answer: one for each write, none for a read."""
    if operation not in _WRITES:
        return None
    heading, text = _WRITES[operation]
    fields = data if isinstance(data, dict) else {}
    return Popup(icon="success", title=heading, text=text.format_map(_Blank(fields)))


class _Blank(dict[str, Any]):
    """Fields for a message; one the answer lacks reads as "this"."""

    def __missing__(self, key: str) -> str:
        return "this"


def _seconds(value: str) -> str:
    return "1 second" if value.strip() == "1" else f"{value.strip()} seconds"


def _resource(operation: str | None) -> str:
    """`update_task` -> "task": the resource an operation acts on."""
    return (operation or "").rpartition("_")[2] or "item"


# Validation messages -------------------------------------------------------------------

FIELD_LABELS = {
    "due_at": "Due date",
    "expires_at": "Expiry",
    "tz": "Time zone",
    "category_id": "Category",
    "parent_id": "Parent task",
    "since": "The sync token",
    "cursor": "The cursor",
    "Idempotency-Key": "The Idempotency-Key header",
    "If-Match": "The If-Match header",
    "q": "The search text",
    "url": "The URL",
}
_SOURCES = frozenset({"body", "query", "path", "header", "cookie"})

_MESSAGES = {
    "missing": "{field} is required.",
    "string_type": "{field} must be text.",
    "string_too_long": "{field} must be at most {max_length} characters.",
    "string_pattern_mismatch": "{field} is not in the expected format.",
    "too_short": "{field} must have at least {min_length} items.",
    "too_long": "{field} must have at most {max_length} items.",
    "string_too_short": "{field} must be at least {min_length} characters.",
    "int_type": "{field} must be a whole number.",
    "int_parsing": "{field} must be a whole number.",
    "int_from_float": "{field} must be a whole number.",
    "float_type": "{field} must be a number.",
    "float_parsing": "{field} must be a number.",
    "greater_than": "{field} must be more than {gt}.",
    "greater_than_equal": "{field} must be at least {ge}.",
    "less_than": "{field} must be less than {lt}.",
    "less_than_equal": "{field} must be at most {le}.",
    "bool_type": "{field} must be true or false.",
    "bool_parsing": "{field} must be true or false.",
    "uuid_type": "{field} must be a UUID.",
    "uuid_parsing": "{field} must be a UUID.",
    "datetime_type": "{field} must be a date and time, such as 2026-12-31T09:00:00Z.",
    "datetime_parsing": "{field} must be a date and time, such as 2026-12-31T09:00:00Z.",
    "datetime_from_date_parsing": "{field} must be a date and time, such as 2026-12-31T09:00:00Z.",
    "timezone_aware": "{field} must include a time zone, such as Z or +01:00.",
    "enum": "{field} must be one of {expected}.",
    "literal_error": "{field} must be one of {expected}.",
    "extra_forbidden": "“{name}” is not a field of this request.",
    "json_invalid": "The body is not valid JSON.",
    "json_type": "The body must be JSON.",
    "model_type": "{field} must be a JSON object.",
    "model_attributes_type": "{field} must be a JSON object.",
    "dict_type": "{field} must be a JSON object.",
    "list_type": "{field} must be a list.",
}
"""A sentence per pydantic error type; `{field}` is the field's label, the rest the
error's context."""


_RULES = {
    "tz_unknown": "{field} must be an IANA time zone, such as Europe/Paris.",
    "category_not_found": "{field} must be one of your categories.",
    "expires_in_past": "{field} must be in the future.",
    "cursor_invalid": "{field} is not one this API gave you for this request.",
    "idempotency_key_reused": "{field} was already used for a different request.",
    "parent_not_found": "{field} must be one of your tasks.",
    "parent_cycle": "{field} must not be the task itself or one of its subtasks.",
    "parent_too_deep": "{field} would nest tasks more than 5 levels deep.",
    "batch_call_refused": "{field} must name another tool than run_batch, with an id of its own.",
    "batch_id_repeated": "{field} is already the id of an earlier operation.",
    "batch_header_refused": "{field} must not set Authorization, Idempotency-Key, Host or "
    "Content-Length (an Idempotency-Key goes on the batch).",
    "batch_reference_unknown": "{field} names an operation that does not come earlier.",
    "batch_path_unknown": "{field} must be one of your routes (not a batch nor an event stream).",
    "recurrence_needs_due_at": "{field} is needed by a recurrence and by reminders set before it.",
    "recurrence_ended": "{field} has no occurrence to come from due_at on (none within 28 "
    "years of the one before, or its COUNT or UNTIL spent).",
    "recurrence_out_of_range": "{field} must fall within the years 1900 to 9900 for a "
    "recurring task.",
    "rrule_unsupported": "{field} is outside the supported subset: {reason}.",
    "tags_too_many": "{field} would make more than 1,000 tags: delete some first.",
    "webhook_url_not_https": "{field} must start with https://.",
    "webhook_url_too_long": "{field} must be at most 2083 characters.",
    "webhook_url_not_public": "{field} must not point inside a private network.",
}
"""The rules only the service can check (`errors.InvalidInput`), by error type."""


def rule_message(error_type: str, loc: Any) -> str:
    """The sentence of a rule only the service checks, about the field at `loc`."""
    template = _RULES.get(error_type, "{field} is not valid.")
    return template.format(field=_label(loc))


def validation_errors(errors: Any) -> list[dict[str, Any]]:
    """pydantic's errors as a problem's `errors`: where, a sentence, and the error type."""
    return [
        {"loc": list(error["loc"]), "msg": validation_message(error), "type": error["type"]}
        for error in errors
    ]


def validation_message(error: Any) -> str:
    """One pydantic error as a sentence in the API's words."""
    kind = error["type"]
    context = dict(error.get("ctx") or {})
    field = _label(error["loc"])
    if isinstance(error.get("input"), str) and kind in ("too_short", "too_long"):
        kind = f"string_{kind}"  # a length checked after a text's own rules
    if kind in ("string_too_short", "too_short") and context.get("min_length") == 1:
        return f"{field} must not be empty."
    if kind == "value_error" and "error" in context:
        reason = str(context["error"]).rstrip(".")
        if reason.startswith("must "):  # the rules of `fields.py`, written to follow a name
            return f"{field} {reason}."
        return f"{field}: {reason[:1].lower()}{reason[1:]}."
    if template := _MESSAGES.get(kind) or _RULES.get(kind):  # or a model's own rule
        name = str(list(error["loc"])[-1]) if error["loc"] else ""
        return template.format_map(_Blank(context | {"field": field, "name": name}))
    message = str(error["msg"]).rstrip(".")
    return f"{field}: {message[:1].lower()}{message[1:]}."


def _label(loc: Any) -> str:
    names = [str(part) for part in loc if part not in _SOURCES]
    if not names:
        return "The body" if list(loc) == ["body"] else "The request"
    name = next((n for n in reversed(names) if not n.isdigit()), names[-1])
    label = FIELD_LABELS.get(name) or name.replace("_", " ").capitalize()
    return f"{label} (item {int(names[-1]) + 1})" if names[-1].isdigit() else label
