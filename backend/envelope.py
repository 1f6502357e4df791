"""The optional response envelope: `{"success", "data", "popup", "error"}` for frontends
that ask for it with `Accept: application/vnd.todo.envelope+json`.

One middleware around every route of `/api/`: a route answers as always, and the
middleware wraps what it answered, so a route added later gets the envelope without a line
of its own, and an idempotent replay or an error from another middleware is wrapped like
any answer. The status and headers stay those of the plain answer, but a 204 becomes a
200 with `data: null`; a 304 stays empty. Plain requests pass through untouched, with
`Vary: Accept` added, since the answer now depends on that header.
"""

import json
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend import messages
from backend.asgi import route_path

ENVELOPE_JSON = "application/vnd.todo.envelope+json"
JSON_TYPES = frozenset({"application/json", "application/problem+json"})
PREFIX = "/api/"


def wants_envelope(accept: str) -> bool:
    """Whether `accept` prefers the envelope: it names the envelope's type with a `q` above
    0 and at least the `q` it gives JSON, by the most specific range that matches JSON
    (`application/json`, then `application/*`, then `*/*`; RFC 9110 section 12.5.1)."""
    accept = accept.lower()
    if ENVELOPE_JSON not in accept:  # the plain path: no parsing
        return False
    qualities: dict[str, float] = {}
    for media_range in accept.split(","):
        media_type, *parameters = (part.strip() for part in media_range.split(";"))
        quality = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip() == "q":
                quality = _quality(value.strip())
        qualities[media_type] = max(quality, qualities.get(media_type, 0.0))
    plain = next(
        (qualities[t] for t in ("application/json", "application/*", "*/*") if t in qualities), 0.0
    )
    envelope = qualities.get(ENVELOPE_JSON, 0.0)
    return envelope > 0 and envelope >= plain


def _quality(value: str) -> float:
    """A `q` value, 0 to 1; anything else counts as 0 (that range is not acceptable)."""
    try:
        quality = float(value)
    except ValueError:
        return 0.0
    return quality if 0.0 <= quality <= 1.0 else 0.0


def _accept(scope: Scope) -> str:
    return ",".join(
        value.decode("latin-1") for name, value in scope["headers"] if name == b"accept"
    )


def _wrapped(start: Message) -> bool:
    """Whether an answer goes into the envelope: JSON (plain or a problem), or a 204."""
    if start["status"] == 204:
        return True
    media_type = MutableHeaders(raw=start["headers"]).get("content-type", "")
    return media_type.partition(";")[0].strip().lower() in JSON_TYPES


class Envelope:
    """Wrap each `/api/` answer in the envelope where the request asks for it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not route_path(scope).startswith(PREFIX):
            await self.app(scope, receive, send)
            return
        if not wants_envelope(_accept(scope)):
            await self.app(scope, receive, _varying(send))
            return
        start: Message | None = None
        body: list[bytes] = []

        async def hold(message: Message) -> None:
            """The answer's start and body, held until its last part, then the envelope
            sent at once: not after the app returns, which is after its session ended."""
            nonlocal start
            if message["type"] == "http.response.start":
                if _wrapped(message) and message["status"] != 304:
                    start = message
                    return
                await _varying(send)(message)
            elif start is None:
                await send(message)
            else:
                body.append(message.get("body", b""))
                if not message.get("more_body", False):
                    await _send_envelope(scope, start, b"".join(body), send)

        await self.app(scope, receive, hold)


def _varying(send: Send) -> Send:
    async def send_varying(message: Message) -> None:
        if message["type"] == "http.response.start":
            MutableHeaders(raw=message["headers"]).add_vary_header("Accept")
        await send(message)

    return send_varying


async def _send_envelope(scope: Scope, start: Message, body: bytes, send: Send) -> None:
    """The plain body goes into the envelope as it is, byte for byte: it is parsed only for
    what a popup says (a write's answer, a problem document), never to be written again."""
    status = start["status"]
    success = status < 400
    operation = getattr(scope.get("route"), "name", None)
    if success:
        data = _parsed(body) if messages.announces(operation) else None
        popup = messages.success_popup(operation, data)
    else:
        retry_after = MutableHeaders(raw=start["headers"]).get("retry-after")
        problem = _parsed(body)
        problem = problem if isinstance(problem, dict) else {"status": status}
        popup = messages.error_popup(operation, problem, retry_after=retry_after)
    plain = body or b"null"
    content = b'{"success":%s,"data":%s,"popup":%s,"error":%s}' % (
        b"true" if success else b"false",
        plain if success else b"null",
        popup.model_dump_json().encode() if popup else b"null",
        b"null" if success else plain,
    )
    headers = MutableHeaders(raw=list(start["headers"]))
    headers["content-type"] = ENVELOPE_JSON
    headers["content-length"] = str(len(content))
    headers.add_vary_header("Accept")
    await send({"type": "http.response.start", "status": 200 if status == 204 else status,
                "headers": headers.raw})  # fmt: skip
    await send({"type": "http.response.body", "body": content})


def _parsed(body: bytes) -> Any:
    """The answer's JSON, or None where it is not (the popup then says less)."""
    try:
        return json.loads(body) if body else None
    except ValueError:
        return None


def document_envelopes(document: dict[str, Any]) -> dict[str, Any]:
    """Document the envelope beside each `/api/` answer: its own media type, whose schema is
    the generic `Envelope` with the answer's schema as `data` (a success) or `error` (an
    error) and its popup (one for a write's success and every error, null for a read's);
    for a 204, the 200 that the envelope answers instead."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas["Popup"] = messages.Popup.model_json_schema()
    schemas["Envelope"] = _ENVELOPE_SCHEMA
    for path, path_item in document.get("paths", {}).items():
        if not path.startswith(PREFIX):
            continue
        for operation in path_item.values():
            announces = messages.announces(operation.get("operationId"))
            responses = operation.get("responses", {})
            for status, response in list(responses.items()):
                success = not status.startswith(("4", "5"))
                if status == "204":
                    responses.setdefault("200", _empty_success(response, announces))
                    continue
                content = response.get("content", {})
                plain = next((content[t] for t in content if t in JSON_TYPES), None)
                if plain is not None and "schema" in plain:
                    popup = announces or not success
                    enveloped = _named(schemas, plain["schema"], success=success, popup=popup)
                    content[ENVELOPE_JSON] = {"schema": enveloped}
    return document


def _named(schemas: dict[str, Any], schema: dict[str, Any], **kinds: bool) -> dict[str, Any]:
    """The envelope over `schema`, as a component of its own where `schema` is one, named
    as pydantic names a generic model: `Envelope_TaskPublic_` (with no popup, a read's),
    `EnvelopeWithPopup_TaskPublic_` (a write's), `Envelope_ProblemDetail_` (an error's)."""
    ref: str = schema.get("$ref", "")
    if not ref:
        return _specialised(schema, **kinds)
    kind = "EnvelopeWithPopup" if kinds["success"] and kinds["popup"] else "Envelope"
    name = f"{kind}_{ref.rpartition('/')[2]}_"
    schemas.setdefault(name, _specialised(schema, **kinds))
    return {"$ref": f"#/components/schemas/{name}"}


_ENVELOPE_SCHEMA: dict[str, Any] = {
    "title": "Envelope",
    "description": "Every answer, when the request sends `Accept: " + ENVELOPE_JSON + "`.",
    "type": "object",
    "properties": {
        "success": {"type": "boolean"},
        "data": {"description": "The plain answer's body on success, else null."},
        "popup": {"anyOf": [{"$ref": "#/components/schemas/Popup"}, {"type": "null"}]},
        "error": {"description": "The plain answer's problem document on error, else null."},
    },
    "required": ["success", "data", "popup", "error"],
}
_NULL = {"type": "null"}


def _specialised(schema: dict[str, Any], *, success: bool, popup: bool) -> dict[str, Any]:
    fields: dict[str, Any] = {"success": {"const": success}}
    fields |= {"data": schema, "error": _NULL} if success else {"data": _NULL, "error": schema}
    fields["popup"] = {"$ref": "#/components/schemas/Popup"} if popup else _NULL
    return {
        "allOf": [
            {"$ref": "#/components/schemas/Envelope"},
            {"type": "object", "properties": fields, "required": list(fields)},
        ]
    }


def _empty_success(response: dict[str, Any], popup: bool) -> dict[str, Any]:
    schema = _specialised(_NULL, success=True, popup=popup)
    return {
        "description": f"{response.get('description', 'Done')} (the envelope: `data` is null)",
        "content": {ENVELOPE_JSON: {"schema": schema}},
    }
