"""`POST /api/{user_id}/batch`: many operations in one request, each through the same
route, guard, validation and service as its single request (decision 34).

Each operation is an ASGI request of its own, sent to the app's routes with its
exception handlers (`batch_target`), sharing the batch's `RequestSession`: in an atomic
batch the units of work execute their statements without committing (`DEFERRED`), and
the batch commits once at the end, or rolls everything back at the first failure. The
operations' guard counts each against the rate budget, and the batch's turn is theirs.
"""

import json
import re
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Request
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.types import ASGIApp, Message, Scope

from backend.deps import OwnerId
from backend.errors import InvalidInput
from backend.idempotency.guard import Idempotent
from backend.middleware import request_session
from backend.models import BatchOperation, BatchOperationResult, BatchRequest, BatchResult
from backend.unit_of_work import DEFERRED

router = APIRouter(tags=["batch"])

REFERENCE = re.compile(r"^\$([A-Za-z0-9_-]+)$")
KEPT_HEADERS = {"etag": "ETag", "location": "Location"}
REFUSED_HEADERS = frozenset({"idempotency-key", "authorization", "content-length", "host"})
UNBATCHABLE = frozenset({"/api/{user_id}/batch", "/api/{user_id}/events"})
"""No batch in a batch, and no event stream."""
FAILED_DEPENDENCY = 424


def batch_target(app: FastAPI) -> ASGIApp:
    """The app's routes with its exception handlers, as each operation reaches them."""
    return ExceptionMiddleware(app.router, handlers=app.exception_handlers)


@router.post("/batch", response_model=BatchResult, dependencies=[Idempotent])
async def run_batch(user_id: OwnerId, batch: BatchRequest, request: Request) -> BatchResult:
    """Run `operations` in order, each as its single request would run, and answer what
    each answered. `atomic` (the default): all in one transaction; at the first failure
    nothing is stored, that operation shows its problem and the rest 424. Otherwise each
    commits on its own. A later operation may name an id an earlier one created: a whole
    path segment or string value `$<id>`."""
    _check(request, batch)
    session = request_session(request.scope).open()
    key = session.info.get(DEFERRED)  # the batch's own Idempotency-Key, if any
    if batch.atomic:
        session.info[DEFERRED] = key or True
    created: dict[str, str] = {}
    results: list[BatchOperationResult] = []
    failed: str | None = None
    for operation in batch.operations:
        if failed is not None:
            results.append(_not_run(operation, failed))
            continue
        if missing := [name for name in _references(operation) if name not in created]:
            results.append(_not_run(operation, missing[0]))
            failed = operation.id if batch.atomic else None
            continue
        if not batch.atomic:
            session.info.pop(DEFERRED, None)  # each commits on its own
        result = await _run(request, user_id, operation, created)
        results.append(result)
        if result.status >= 400 and batch.atomic:
            failed = operation.id
        elif isinstance(result.body, dict) and "id" in result.body:
            created[operation.id] = str(result.body["id"])
    if batch.atomic:
        if failed is not None:
            await session.rollback()
        elif key is None:
            await session.commit()
        session.info.pop(DEFERRED, None)
        if key is not None:
            session.info[DEFERRED] = key  # the answer commits with the writes
    elif key is not None:
        session.info[DEFERRED] = key
    return BatchResult(committed=not batch.atomic or failed is None, results=results)


def _check(request: Request, batch: BatchRequest) -> None:
    """422 for the whole batch, before anything runs: repeated ids, a reference to no
    earlier operation, a path outside the caller's routes, an `Idempotency-Key` on one
    operation."""
    seen: set[str] = set()
    for index, operation in enumerate(batch.operations):
        where = ("body", "operations", index)
        if operation.id in seen:
            raise InvalidInput((*where, "id"), "batch_id_repeated")
        if any(name.lower() in REFUSED_HEADERS for name in operation.headers):
            raise InvalidInput((*where, "headers"), "batch_header_refused")
        for reference in _references(operation):
            if reference not in seen:
                raise InvalidInput((*where, "path"), "batch_reference_unknown")
        seen.add(operation.id)
        if not _routed(request, operation):
            raise InvalidInput((*where, "path"), "batch_path_unknown")


def _references(operation: BatchOperation) -> list[str]:
    path = operation.path.partition("?")[0]
    found = [m.group(1) for segment in path.split("/") if (m := REFERENCE.match(segment))]

    def walk(value: Any) -> None:
        if isinstance(value, str) and (match := REFERENCE.match(value)):
            found.append(match.group(1))
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(operation.body)
    return found


def _routed(request: Request, operation: BatchOperation) -> bool:
    """Whether the operation's path is one of the caller's routes, other than a batch or
    a stream (a reference stands in as any id)."""
    path = operation.path.partition("?")[0]
    if any(segment in ("", ".", "..") for segment in path.split("/")[1:]):
        return False
    state = request.app.state
    if getattr(state, "batch_paths", None) is None:
        state.batch_paths = _user_paths(request.app.openapi())
    return any(pattern.fullmatch(path) for pattern in state.batch_paths)


def _user_paths(document: dict[str, Any]) -> list[re.Pattern[str]]:
    """The caller's routes of the OpenAPI document, relative to `/api/{user_id}`, as
    patterns (a path parameter is one segment)."""
    prefix = "/api/{user_id}"
    return [
        re.compile(re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(path.removeprefix(prefix))))
        for path in document["paths"]
        if path.startswith(prefix + "/") and path not in UNBATCHABLE
    ]


def _scope(request: Request, operation: BatchOperation, reference: str | dict[str, str]) -> Scope:
    """The operation as a request of its own, with the batch's bearer token and state."""
    path, _, query = operation.path.partition("?")
    resolve = (lambda _: reference) if isinstance(reference, str) else reference.__getitem__
    segments = [
        resolve(match.group(1)) if (match := REFERENCE.match(s)) else s for s in path.split("/")
    ]
    prefix = request.scope["path"].removesuffix("/batch")
    full = prefix + "/".join(segments)
    headers = [
        (name, value)
        for name, value in request.scope["headers"]
        if name in (b"authorization", b"accept", b"user-agent")
    ]
    headers += [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in operation.headers.items()
    ]
    headers.append((b"content-type", b"application/json"))
    return {
        **request.scope,
        "method": operation.method,
        "path": full,
        "raw_path": quote(full).encode(),
        "query_string": query.encode(),
        "headers": headers,
        "state": request.scope["state"],
    }


async def _run(
    request: Request, user_id: str, operation: BatchOperation, created: dict[str, str]
) -> BatchOperationResult:
    body = resolved(operation.body, created)
    payload = b"" if body is None else json.dumps(body).encode()
    scope = _scope(request, operation, created)
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": payload, "more_body": False}

    answer: dict[str, Any] = {"status": 500, "headers": [], "body": b""}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            answer["status"], answer["headers"] = message["status"], message.get("headers", [])
        elif message["type"] == "http.response.body":
            answer["body"] += message.get("body", b"")

    await request.app.state.batch_target(scope, receive, send)
    headers = {
        KEPT_HEADERS[name.decode("latin-1").lower()]: value.decode("latin-1")
        for name, value in answer["headers"]
        if name.decode("latin-1").lower() in KEPT_HEADERS
    }
    content = json.loads(answer["body"]) if answer["body"] else None
    return BatchOperationResult(
        id=operation.id, status=answer["status"], headers=headers, body=content
    )


def resolved(value: Any, created: dict[str, str]) -> Any:
    """`value` with each whole string `$<id>` replaced by what operation `<id>` created
    (REST batches and the MCP `run_batch` tool)."""
    if isinstance(value, str) and (match := REFERENCE.match(value)):
        return created.get(match.group(1), value)
    if isinstance(value, dict):
        return {name: resolved(item, created) for name, item in value.items()}
    if isinstance(value, list):
        return [resolved(item, created) for item in value]
    return value


def _not_run(operation: BatchOperation, failed: str) -> BatchOperationResult:
    """424: the operation depends on one that failed (or created nothing to name)."""
    return BatchOperationResult(
        id=operation.id,
        status=FAILED_DEPENDENCY,
        headers={},
        body={
            "type": "about:blank",
            "title": "Not run",
            "status": FAILED_DEPENDENCY,
            "detail": f"Not run: it depends on operation {failed}, which failed.",
            "code": "failed_dependency",
        },
    )
