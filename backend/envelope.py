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
JSON_TYPES = (b"application/json", b"application/problem+json")
PREFIX = "/api/"


def wants_envelope(accept: str) -> bool:
    """Whether `accept` prefers the envelope: it names it with a `q` above 0 and no other
    type with a higher one (wildcards included)."""
    envelope, best_other = 0.0, 0.0
    for media_range in accept.split(","):
        media_type, *parameters = (part.strip() for part in media_range.split(";"))
        quality = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if media_type.lower() == ENVELOPE_JSON:
            envelope = max(envelope, quality)
        elif media_type:
            best_other = max(best_other, quality)
    return envelope > 0 and envelope >= best_other


def _accept(scope: Scope) -> str:
    return ",".join(
        value.decode("latin-1") for name, value in scope["headers"] if name == b"accept"
    )


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
        passing = False

        async def hold(message: Message) -> None:
            nonlocal start, passing
            if message["type"] == "http.response.start":
                media_type = MutableHeaders(raw=message["headers"]).get("content-type", "")
                wrapped = media_type.encode().startswith(JSON_TYPES) or message["status"] == 204
                passing = not wrapped or message["status"] == 304
                if passing:
                    await _varying(send)(message)
                else:
                    start = message
            elif passing:
                await send(message)
            else:
                body.append(message.get("body", b""))

        await self.app(scope, receive, hold)
        if start is not None:
            await _send_envelope(scope, start, b"".join(body), send)


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
    operation = getattr(scope.get("route"), "name", None)
    if status < 400:
        data = json.loads(body) if body and messages.announces(operation) else None
        popup = messages.success_popup(operation, data)
    else:
        problem = json.loads(body) if body else {}
        retry_after = MutableHeaders(raw=start["headers"]).get("retry-after")
        popup = messages.error_popup(operation, problem, retry_after=retry_after)
    plain, popup_json = body or b"null", popup.model_dump_json().encode() if popup else b"null"
    data_json, error_json = (plain, b"null") if status < 400 else (b"null", plain)
    success = b"true" if status < 400 else b"false"
    content = b'{"success":%s,"data":%s,"popup":%s,"error":%s}' % (
        success,
        data_json,
        popup_json,
        error_json,
    )
    headers = MutableHeaders(raw=list(start["headers"]))
    headers["content-type"] = ENVELOPE_JSON
    headers["content-length"] = str(len(content))
    headers.add_vary_header("Accept")
    await send(
        {
            "type": "http.response.start",
            "status": 200 if status == 204 else status,
            "headers": headers.raw,
        }
    )
    await send({"type": "http.response.body", "body": content})


def document_envelopes(document: dict[str, Any]) -> dict[str, Any]:
    """Document the envelope beside each `/api/` answer: its own media type whose schema is
    the generic `Envelope` with the answer's schema as `data` (a success) or `error` (an
    error), and, for a 204, the 200 that the envelope answers instead."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas["Popup"] = messages.Popup.model_json_schema()
    schemas["Envelope"] = _ENVELOPE_SCHEMA
    for path, path_item in document.get("paths", {}).items():
        if not path.startswith(PREFIX):
            continue
        for operation in path_item.values():
            responses = operation.get("responses", {})
            for status, response in list(responses.items()):
                if status == "204":
                    responses.setdefault("200", _empty_success(response))
                    continue
                content = response.get("content", {})
                plain = next((content[t] for t in content if t.encode() in JSON_TYPES), None)
                if plain is not None and "schema" in plain:
                    success = int(status) < 400
                    content[ENVELOPE_JSON] = {"schema": _named(schemas, plain["schema"], success)}
    return document


def _named(schemas: dict[str, Any], schema: dict[str, Any], success: bool) -> dict[str, Any]:
    """The envelope over `schema`, as a component of its own (`Envelope_TaskPublic_`, as
    pydantic names a generic model) where `schema` is one."""
    ref: str = schema.get("$ref", "")
    if not ref:
        return _specialised(schema, success)
    name = f"Envelope_{ref.rpartition('/')[2]}_"
    schemas.setdefault(name, _specialised(schema, success))
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


def _specialised(schema: dict[str, Any], success: bool) -> dict[str, Any]:
    null = {"type": "null"}
    fields: dict[str, Any] = {"success": {"const": success}}
    fields |= {"data": schema, "error": null} if success else {"data": null, "error": schema}
    return {
        "allOf": [
            {"$ref": "#/components/schemas/Envelope"},
            {"type": "object", "properties": fields, "required": list(fields)},
        ]
    }


def _empty_success(response: dict[str, Any]) -> dict[str, Any]:
    return {
        "description": f"{response.get('description', 'Done')} (the envelope: `data` is null)",
        "content": {ENVELOPE_JSON: {"schema": _specialised({"type": "null"}, True)}},
    }
