"""The OpenAPI document clients are generated from: tags, descriptions, examples, errors."""

from typing import Any
from unittest.mock import ANY

import jsonschema_rs
import pytest
from fastapi import FastAPI
from pydantic import BaseModel

from backend import models
from backend.envelope import ENVELOPE_JSON
from backend.errors import PROBLEM_JSON
from backend.messages import QUIET_WRITES
from backend.openapi import SCHEMA_EXAMPLES

REQUEST_MODELS: list[type[BaseModel]] = [
    models.TaskCreate,
    models.TaskReplace,
    models.TaskUpdate,
    models.CategoryCreate,
    models.CategoryUpdate,
    models.TokenCreate,
]


@pytest.fixture(scope="module")
def document(app: FastAPI) -> dict[str, Any]:
    return app.openapi()


def _operations(document: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{method.upper()} {path}", operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
    ]


def test_every_operation_has_a_described_tag_a_summary_and_a_description(
    document: dict[str, Any],
) -> None:
    described = {tag["name"] for tag in document["tags"] if tag["description"]}

    for name, operation in _operations(document):
        assert len(operation["tags"]) == 1, name
        assert operation["tags"][0] in described, name
        assert operation["summary"], name
        assert operation["description"], name


def test_operation_ids_are_the_route_names(document: dict[str, Any]) -> None:
    ids = {operation["operationId"] for _, operation in _operations(document)}

    assert {"list_tasks", "create_task", "complete_task", "weekly_stats", "get_me"} <= ids
    assert all(identifier.replace("_", "").isalpha() for identifier in ids)


def test_every_error_is_a_problem_document_with_an_example(document: dict[str, Any]) -> None:
    for name, operation in _operations(document):
        for status, response in operation["responses"].items():
            if int(status) < 400:
                continue
            enveloped = [ENVELOPE_JSON] if " /api/" in name else []
            assert list(response["content"]) == [PROBLEM_JSON, *enveloped], (name, status)
            content = response["content"][PROBLEM_JSON]
            assert content["schema"] == {"$ref": "#/components/schemas/ProblemDetail"}
            assert content["example"]["status"] == int(status), (name, status)


def _resolved(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    if "$ref" not in schema:
        return schema
    resolved: dict[str, Any] = document["components"]["schemas"][schema["$ref"].split("/")[-1]]
    return resolved


def test_every_api_answer_documents_its_envelope_over_its_own_schema(
    document: dict[str, Any],
) -> None:
    """Each JSON answer of `/api/` has the envelope beside it: the generic `Envelope` with the
    answer's own schema as `data` (a success) or `error`; a 204 documents the envelope's 200."""
    for name, operation in _operations(document):
        if " /api/" not in name:
            continue
        responses = operation["responses"]
        for status, response in responses.items():
            content = response.get("content", {})
            plain = content.get("application/json") or content.get(PROBLEM_JSON)
            if plain is None:  # no body, the envelope's 200 for a 204, or an event stream
                streams = "text/event-stream" in content
                assert status in ("204", "304") or "204" in responses or streams, (name, status)
                continue
            envelope, specialised = _resolved(document, content[ENVELOPE_JSON]["schema"])["allOf"]
            assert envelope == {"$ref": "#/components/schemas/Envelope"}
            fields = specialised["properties"]
            success = int(status) < 400
            assert fields["success"] == {"const": success}, (name, status)
            assert fields["data" if success else "error"] == plain["schema"], (name, status)
            assert fields["error" if success else "data"] == {"type": "null"}, (name, status)
            writes = not name.startswith("GET") and operation["operationId"] not in QUIET_WRITES
            popup = {"$ref": "#/components/schemas/Popup"} if writes or not success else None
            assert fields["popup"] == (popup or {"type": "null"}), (name, status)
        if "204" in responses:
            envelope = responses["200"]["content"][ENVELOPE_JSON]["schema"]["allOf"][1]
            assert envelope["properties"]["data"] == {"type": "null"}, name


def test_user_routes_document_their_errors(document: dict[str, Any]) -> None:
    for name, operation in _operations(document):
        if " /api/" in name:
            assert {"401", "403", "404", "422", "503"} <= operation["responses"].keys(), name
        if name.startswith(("PUT", "PATCH")) and "{" in name.rsplit("/", 1)[-1]:
            assert "412" in operation["responses"], name


def test_user_routes_and_only_they_ask_for_a_bearer_token(document: dict[str, Any]) -> None:
    schemes = document["components"]["securitySchemes"]

    assert schemes == {"HTTPBearer": {"type": "http", "scheme": "bearer", "description": ANY}}
    for name, operation in _operations(document):
        if " /api/{user_id}/" in name:
            assert operation["security"] == [{"HTTPBearer": []}], name
        else:
            assert "security" not in operation, name


def test_every_object_schema_has_a_valid_example(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]

    for name, schema in schemas.items():
        if schema.get("type") != "object":
            continue
        [example] = schema["examples"]
        root = {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
        jsonschema_rs.Draft202012Validator(root).validate(example)


@pytest.mark.parametrize("model", REQUEST_MODELS, ids=lambda model: model.__name__)
def test_request_examples_pass_the_models_own_validation(model: type[BaseModel]) -> None:
    model.model_validate(SCHEMA_EXAMPLES[model.__name__])


QUERY_MODELS: dict[str, type[BaseModel]] = {
    "GET /api/{user_id}/tasks": models.TaskListQuery,
    "GET /api/{user_id}/history": models.HistoryListQuery,
    "GET /api/{user_id}/tasks/{task_id}/occurrences": models.OccurrencesQuery,
}


def test_every_list_documents_its_whole_query_string(document: dict[str, Any]) -> None:
    """Lists read their query string themselves (`pagination.ListQuery`) and document it by
    hand (`openapi_extra`): each documents every field of its model, and no other."""
    lists = [
        (name, operation)
        for name, operation in _operations(document)
        if operation["responses"]
        .get("200", {})
        .get("content", {})
        .get("application/json", {})
        .get("schema", {})
        .get("$ref", "")
        .startswith("#/components/schemas/Page_")
    ]
    assert len(lists) == 9
    for name, operation in lists:
        documented = [p["name"] for p in operation["parameters"] if p["in"] == "query"]
        model = QUERY_MODELS.get(name, models.PageQuery)
        assert sorted(documented) == sorted(model.model_fields), name


def test_every_reference_resolves(document: dict[str, Any]) -> None:
    """Parameters documented by hand (`openapi.query_parameters`) point into the
    components FastAPI built from the models: each `$ref` must name one."""

    def refs(node: Any) -> list[str]:
        if isinstance(node, dict):
            own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
            return own + [ref for value in node.values() for ref in refs(value)]
        if isinstance(node, list):
            return [ref for value in node for ref in refs(value)]
        return []

    schemas = document["components"]["schemas"]
    names = {ref.removeprefix("#/components/schemas/") for ref in refs(document)}
    assert names
    assert names <= schemas.keys(), names - schemas.keys()


def test_every_link_names_an_operation_and_its_path_parameters(
    document: dict[str, Any],
) -> None:
    """OpenAPI links (a history page to its first entry) must lead somewhere real."""
    operations = {operation["operationId"]: operation for _, operation in _operations(document)}
    links = [
        link
        for _, operation in _operations(document)
        for response in operation["responses"].values()
        for link in response.get("links", {}).values()
    ]
    assert len(links) == 2  # the history lists, the caller's and a task's
    for link in links:
        target = operations[link["operationId"]]
        path_parameters = {p["name"] for p in target["parameters"] if p["in"] == "path"}
        assert link["parameters"]
        assert set(link["parameters"]) <= path_parameters
        assert all(value.startswith("$") for value in link["parameters"].values())
