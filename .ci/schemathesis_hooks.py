"""Schemathesis hooks for .ci/schemathesis: one test user, and the refusals no schema predicts."""

from __future__ import annotations

import os
import zlib
from typing import Any
from zoneinfo import available_timezones

import schemathesis
from schemathesis.core.parameters import ParameterLocation
from schemathesis.openapi.checks import RejectedPositiveData, UseAfterFree

Case = schemathesis.Case[Any]

USER_ID = os.environ.get("ST_USER_ID", "st-user")
TIME_ZONES = sorted(available_timezones())

# A 422 whose every error is one of these is the right answer to a schema-valid request,
# because it depends on server state or the clock, which no schema can say: `cursor` is
# opaque and signed by the server; `tz` is checked against the installed tzdata (an enum
# would tie specs/openapi.json to tzdata releases); a token's `expires_at` must be in the
# future; a task's `category_id` must name one of the caller's categories, its
# `parent_id` one of the caller's tasks, not itself nor below itself, 5 deep at most; a
# user has at most 1,000 tags; an Idempotency-Key may not be reused for a different
# request; a webhook's URL must be https and public unless the server allows its host, and
# fit its column once normalised (punycode, percent-encoding); a batch's operations must
# name routes of the API and earlier operations, once each; a recurrence needs a due time
# (in the years 1900 to 9900) and an occurrence still to come, and its rule each part
# once, FREQ among them, COUNT or UNTIL, ordinals only when monthly or yearly, a yearly
# INTERVAL at most 28 (what a pattern cannot say).
STATEFUL_422_TYPES = frozenset(
    {
        "cursor_invalid",
        "tz_unknown",
        "expires_in_past",
        "category_not_found",
        "parent_not_found",
        "parent_cycle",
        "parent_too_deep",
        "tags_too_many",
        "idempotency_key_reused",
        "webhook_url_not_https",
        "webhook_url_not_public",
        "webhook_url_too_long",
        "batch_id_repeated",
        "batch_header_refused",
        "batch_reference_unknown",
        "batch_path_unknown",
        "recurrence_needs_due_at",
        "recurrence_ended",
        "recurrence_out_of_range",
        "rrule_unsupported",
    }
)


@schemathesis.hook
def before_load_schema(context: schemathesis.HookContext, raw_schema: dict[str, Any]) -> None:
    """Put the test user in every path in place of `{user_id}`; drop the `Public` suffix.

    Requests then reach the handlers instead of the 403 owner guard. Both changes serve the
    link inference of the stateful phase, which matches parameters to schemas by name: it took
    `user_id` for a reference to a `User` that no operation creates, and `category_id` for
    one to a `Category` (the schema is `CategoryPublic`), and then started every scenario
    from POST /tokens alone.
    """
    paths = raw_schema.get("paths", {})
    for item in paths.values():
        for operation in item.values():
            if isinstance(operation, dict) and "parameters" in operation:
                operation["parameters"] = [
                    parameter
                    for parameter in operation["parameters"]
                    if not (parameter.get("in") == "path" and parameter.get("name") == "user_id")
                ]
    raw_schema["paths"] = {path.replace("{user_id}", USER_ID): item for path, item in paths.items()}

    schemas = raw_schema.get("components", {}).get("schemas", {})
    if not schemas:
        return
    renames = {
        name: name.removesuffix("Public")
        for name in schemas
        if name.endswith("Public") and name.removesuffix("Public") not in schemas
    }
    raw_schema["components"]["schemas"] = {renames.get(k, k): v for k, v in schemas.items()}
    prefix = "#/components/schemas/"
    _rename_refs(raw_schema, {prefix + old: prefix + new for old, new in renames.items()})


@schemathesis.hook
def map_case(context: schemathesis.HookContext, case: Case) -> Case:
    """Spend schema-valid queries on the handlers rather than on two certain refusals.

    A generated `cursor` is never one the server signed, and a generated `tz` is almost never
    an IANA name: drop the first and map the second onto a real zone (the same zone for the
    same draw), so that filters, sorts and the weekly statistics are exercised.
    """
    if not case.query or case.meta is None or case.meta.is_negative_at(ParameterLocation.QUERY):
        return case
    query = {name: value for name, value in case.query.items() if name != "cursor"}
    if isinstance(query.get("tz"), str) and query["tz"] not in TIME_ZONES:
        query["tz"] = TIME_ZONES[zlib.crc32(query["tz"].encode()) % len(TIME_ZONES)]
    case.query = query
    return case


@schemathesis.hook
def filter_failure(
    context: schemathesis.HookContext, failure: Any, case: Case, response: Any
) -> bool:
    """Keep every failure but the few where the check does not apply (each said below)."""
    if isinstance(failure, UseAfterFree):
        # The contract: a task's history stays readable after the task is deleted.
        return not (
            case.operation.path.endswith("/tasks/{task_id}/history") and response.status_code == 200
        )
    if isinstance(failure, RejectedPositiveData):
        return not _expected_refusal(case, response)
    return True


def _expected_refusal(case: Case, response: Any) -> bool:
    problem = _json(response)
    if response.status_code == 422:
        errors = problem.get("errors") or []
        return bool(errors) and all(
            error.get("type") in STATEFUL_422_TYPES or _null_from_link(error, case)
            for error in errors
        )
    # An If-Match that is not the current ETag must be refused with 412: a generated value
    # is well-formed per the schema yet never the resource's current version.
    if response.status_code == 412:
        sent_if_match = any(name.lower() == "if-match" for name in case.headers or {})
        return sent_if_match and problem.get("code") == "precondition_failed"
    return False


def _null_from_link(error: dict[str, Any], case: Case) -> bool:
    """A link fed a null field (a task's `category_id`) into a path: `/categories/None`."""
    loc = error.get("loc") or []
    if len(loc) != 2 or loc[0] != "path":
        return False
    value = (case.path_parameters or {}).get(loc[1], "")
    return value is None or value == "None"


def _rename_refs(node: Any, refs: dict[str, str]) -> None:
    if isinstance(node, dict):
        if node.get("$ref") in refs:
            node["$ref"] = refs[node["$ref"]]
        for value in node.values():
            _rename_refs(value, refs)
    elif isinstance(node, list):
        for value in node:
            _rename_refs(value, refs)


def _json(response: Any) -> dict[str, Any]:
    """The problem document of an error answer, plain or in the envelope (ST_ACCEPT)."""
    try:
        body = response.json()
    except ValueError:
        return {}
    if isinstance(body, dict) and isinstance(body.get("error"), dict) and "success" in body:
        body = body["error"]
    return body if isinstance(body, dict) else {}
