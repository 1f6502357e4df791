"""The operations of the OpenAPI document, a seeded world to send them at, and a row dump."""

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx2
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlmodel import Session, SQLModel

from backend.config import Settings
from backend.main import create_app
from tests.conftest import SECRET, TABLES, AuthFactory, Headers

PUBLIC_PATHS = frozenset({"/healthz", "/readyz"})
USER_PREFIX = "/api/{user_id}"
TOKENS_PREFIX = f"{USER_PREFIX}/tokens"
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MISSING_ID = "00000000-0000-7000-8000-00000000d1ed"
PARAM = re.compile(r"\{(\w+)\}")
SCHEMA_REF = "#/components/schemas/"

# The kind of row each path id names; a path id not listed here fails the matrix.
ID_KINDS = {
    "task_id": "task",
    "category_id": "category",
    "entry_id": "history",
    "token_id": "token",
    "tag_id": "tag",
    "webhook_id": "webhook",
    "delivery_id": "delivery",
}
NEVER_SEEN = dict.fromkeys(ID_KINDS.values(), MISSING_ID)
"""One id of each kind that no row has."""

# A valid body per write operation, by operation id.
BODIES: dict[str, dict[str, Any]] = {
    "create_task": {"title": "Matrix task"},
    "replace_task": {"title": "Matrix task"},
    "update_task": {"title": "Matrix task"},
    "create_category": {"name": "Matrix category"},
    "replace_category": {"name": "Matrix category"},
    "update_category": {"name": "Matrix category"},
    "create_token": {"name": "Matrix token"},
    "create_webhook": {"url": "https://hooks.example.com/matrix"},
    "update_webhook": {"events": ["task.*"]},
    "rename_tag": {"name": "Matrix tag"},
    "run_batch": {"operations": [{"id": "read", "method": "GET", "path": "/tasks"}]},
}

NFC_USER = "jos\u00e9"
NFD_USER = "jose\u0301"
# Path segments that only look like the token's subject, by name: (subject, segment).
EQUIVALENTS = {
    "uppercase": ("alice", "ALICE"),
    "capitalized": ("alice", "Alice"),
    "trailing-space": ("alice", "alice%20"),
    "leading-space": ("alice", "%20alice"),
    "cyrillic-a": ("alice", quote("\u0430lice")),
    "encoded-slash": ("alice", "alice%2F.."),
    "nul": ("alice", "alice%00"),
    "nfd-path-nfc-token": (NFC_USER, quote(NFD_USER)),
    "nfc-path-nfd-token": (NFD_USER, quote(NFC_USER)),
}


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    operation_id: str
    body_required: bool
    body_fields: frozenset[str]
    """The properties of the request body's schema; empty when the operation takes none."""
    returns_page: bool
    streams: bool
    """Its answer is an event stream (`text/event-stream`), not one JSON document."""
    creates: bool = False
    """It answers 201 with what it created."""

    @property
    def id_params(self) -> list[str]:
        return [name for name in PARAM.findall(self.path) if name != "user_id"]

    @property
    def writes(self) -> bool:
        return self.method not in READ_METHODS

    @property
    def manages_tokens(self) -> bool:
        return self.path.startswith(TOKENS_PREFIX)

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def _schema(document: dict[str, Any], schema: dict[str, Any] | None) -> dict[str, Any]:
    if schema is not None and "$ref" in schema:
        resolved: dict[str, Any] = document["components"]["schemas"][
            schema["$ref"].removeprefix(SCHEMA_REF)
        ]
        return resolved
    return schema or {}


def operations(document: dict[str, Any]) -> list[Operation]:
    found = []
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            body = operation.get("requestBody", {})
            body_schema = body.get("content", {}).get("application/json", {}).get("schema")
            answer = operation["responses"].get("200", {}).get("content", {})
            answer_ref = answer.get("application/json", {}).get("schema", {}).get("$ref", "")
            found.append(
                Operation(
                    method=method.upper(),
                    path=path,
                    operation_id=operation["operationId"],
                    body_required=body.get("required", False),
                    body_fields=frozenset(_schema(document, body_schema).get("properties", {})),
                    returns_page=answer_ref.startswith(f"{SCHEMA_REF}Page_"),
                    streams="text/event-stream" in answer,
                    creates="201" in operation["responses"],
                )
            )
    return found


def document() -> dict[str, Any]:
    settings = Settings(_env_file=None, environment="test", jwt_secret=SECRET)
    return create_app(settings).openapi()


ALL = operations(document())
PROTECTED = [op for op in ALL if op.path not in PUBLIC_PATHS]
USER_OPS = [op for op in ALL if op.path.startswith(USER_PREFIX)]
ID_OPS = [op for op in USER_OPS if op.id_params]
READS = [op for op in USER_OPS if not op.writes and not op.streams]
"""The reads that answer one JSON document; STREAMS answer event streams (tests/test_events.py)."""
STREAMS = [op for op in USER_OPS if op.streams]
WRITES = [op for op in USER_OPS if op.writes]
LISTS = [op for op in USER_OPS if op.returns_page]
BODY_OPS = [op for op in USER_OPS if op.body_fields]


def url(op: Operation, user: str, ids: dict[str, str]) -> str:
    """The operation's path for `user` (already URL-encoded) with one id of each kind."""

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "user_id":
            return user
        if name not in ID_KINDS:
            pytest.fail(f"{op}: no id kind for path parameter {name}; add it to ID_KINDS")
        return ids[ID_KINDS[name]]

    return PARAM.sub(fill, op.path)


def never_seen_url(op: Operation, subject: str) -> str:
    """The operation's path for `subject` (URL-quoted here) with an id no row has for each id."""
    return url(op, quote(subject, safe=""), NEVER_SEEN)


def send(
    client: TestClient,
    op: Operation,
    target: str,
    headers: Headers,
    body: dict[str, Any] | None = None,
) -> httpx2.Response:
    """The operation at `target`, with `body` or else its usual valid body."""
    body = BODIES.get(op.operation_id) if body is None else body
    if op.body_required and body is None:
        pytest.fail(f"{op.operation_id} needs a body: add one to BODIES")
    return client.request(op.method, target, json=body, headers=headers)


def bearer(token: str) -> Headers:
    return {"Authorization": f"Bearer {token}"}


def create_pat(
    client: TestClient, auth: AuthFactory, user: str = "alice", **fields: Any
) -> dict[str, Any]:
    """A personal access token created with `user`'s session token; `token` is its secret."""
    response = client.post(
        f"/api/{quote(user)}/tokens", json={"name": "cli"} | fields, headers=auth(user)
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def seed(client: TestClient, auth: AuthFactory, user: str) -> dict[str, str]:
    """A category, a recurring task in it with a tag and a reminder, a deleted task, a
    personal token, a webhook and its delivery (a ping); one id of each kind."""
    prefix, headers = f"/api/{quote(user)}", auth(user)

    def create(path: str, body: dict[str, Any]) -> str:
        response = client.post(f"{prefix}/{path}", json=body, headers=headers)
        assert response.status_code == 201, response.text
        created: str = response.json()["id"]
        return created

    category = create("categories", {"name": f"{user} secret category"})
    task = create(
        "tasks",
        {
            "title": f"{user} secret task",
            "category_id": category,
            "tags": [f"{user} secret tag"],
            "due_at": "2027-01-04T09:00:00Z",
            "recurrence": {"rule": "FREQ=WEEKLY", "tz": "Europe/Paris"},
            "reminders": [{"before": "PT1H"}],
        },
    )
    tag = client.get(f"{prefix}/tags", headers=headers).json()["items"][0]["id"]
    gone = create("tasks", {"title": f"{user} deleted task"})
    assert client.delete(f"{prefix}/tasks/{gone}", headers=headers).status_code == 204
    history = client.get(f"{prefix}/history", headers=headers).json()["items"]
    webhook = create("webhooks", {"url": f"https://hooks.example.com/{quote(user)}"})
    ping = client.post(f"{prefix}/webhooks/{webhook}/ping", headers=headers)
    assert ping.status_code == 202, ping.text
    return {
        "tag": tag,
        "webhook": webhook,
        "delivery": ping.json()["id"],
        "task": task,
        "category": category,
        "history": history[-1]["id"],
        "token": create_pat(client, auth, user)["id"],
    }


def seed_world(client: TestClient, auth: AuthFactory) -> dict[str, dict[str, str]]:
    """Alice's and Bob's rows of every kind, by user."""
    return {user: seed(client, auth, user) for user in ("alice", "bob")}


def dump(db: Session) -> dict[str, list[tuple[Any, ...]]]:
    """Every stored row, in a stable order."""
    rows = {}
    for name in TABLES:
        table = SQLModel.metadata.tables[name]
        result = db.connection().execute(select(table).order_by(*table.primary_key.columns))
        rows[name] = [tuple(row) for row in result]
    db.rollback()
    return rows
