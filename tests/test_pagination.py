"""Lists: opaque cursors only their own owner and list can read back; the query string."""

import base64

import pytest
from fastapi.testclient import TestClient

from backend.errors import InvalidInput
from backend.pagination import CursorSigner
from tests.conftest import AuthFactory, Factory, assert_problem

SECRET = "cursor-secret-that-is-long-enough-for-tests!"
SCOPE = "tasks:-created_at"
VALUES = ["2026-03-01T10:00:00Z", "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"]


def _signer() -> CursorSigner:
    return CursorSigner(SECRET)


def _cursor() -> str:
    return _signer().encode("alice", SCOPE, VALUES)


def _flip(cursor: str, index: int) -> str:
    replacement = "B" if cursor[index] == "A" else "A"
    return cursor[:index] + replacement + cursor[index + 1 :]


def _assert_refused(owner: str, scope: str, cursor: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        _signer().decode(owner, scope, cursor)
    assert refused.value.status == 422
    assert refused.value.code == "validation_error"
    assert refused.value.errors[0]["loc"] == ["query", "cursor"]


def test_decode_cursor_returns_the_encoded_values() -> None:
    cursor = _cursor()

    assert _signer().decode("alice", SCOPE, cursor) == VALUES


def test_encode_cursor_is_url_safe_without_padding() -> None:
    cursor = _cursor()

    assert "=" not in cursor
    assert set(cursor) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_encode_cursor_is_deterministic() -> None:
    assert _cursor() == _cursor()


@pytest.mark.parametrize("values", [[], [None, "x"], ["é ü 漢字", 42], [True, 1.5]])
def test_decode_cursor_round_trips_any_json_values(values: list[object]) -> None:
    cursor = _signer().encode("alice", SCOPE, values)

    assert _signer().decode("alice", SCOPE, cursor) == values


@pytest.mark.parametrize("owner", ["bob", "Alice", "alice ", "", "alice\0"])
def test_decode_cursor_refuses_another_owner(owner: str) -> None:
    _assert_refused(owner, SCOPE, _cursor())


@pytest.mark.parametrize("scope", ["tasks:created_at", "history:-occurred_at", "tasks", ""])
def test_decode_cursor_refuses_another_scope(scope: str) -> None:
    _assert_refused("alice", scope, _cursor())


def test_decode_cursor_refuses_another_secret() -> None:
    cursor = CursorSigner("another-secret-that-is-also-long-enough!").encode("alice", SCOPE, VALUES)

    _assert_refused("alice", SCOPE, cursor)


@pytest.mark.parametrize("index", [0, 5, 20, -12])
def test_decode_cursor_refuses_a_flipped_character(index: int) -> None:
    cursor = _cursor()
    tampered = _flip(cursor, index)
    assert tampered != cursor

    _assert_refused("alice", SCOPE, tampered)


def test_decode_cursor_refuses_a_changed_body_with_the_old_mac() -> None:
    raw = base64.urlsafe_b64decode(_cursor() + "==")
    forged = raw.replace(b"2026-03-01", b"2026-03-02")
    assert forged != raw

    _assert_refused("alice", SCOPE, base64.urlsafe_b64encode(forged).decode().rstrip("="))


@pytest.mark.parametrize("keep", [1, 2, 3, 10, 22, -1, -4, -22])
def test_decode_cursor_refuses_a_truncated_cursor(keep: int) -> None:
    _assert_refused("alice", SCOPE, _cursor()[:keep])


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "x",
        "!!!",
        "!!!!!!!!",
        "é",
        "漢字漢字",
        "a b c d",
        "====",
        base64.urlsafe_b64encode(b"garbage" * 8).decode(),
        base64.urlsafe_b64encode(b'["tasks:-created_at",[]]').decode(),
    ],
)
def test_decode_cursor_refuses_what_is_not_a_cursor(cursor: str) -> None:
    _assert_refused("alice", SCOPE, cursor)


def test_a_list_answers_every_bad_query_parameter_at_once(
    client: TestClient, auth: AuthFactory
) -> None:
    response = client.get(
        "/api/alice/tasks?limit=0&completed=maybe&sort=size", headers=auth("alice")
    )
    errors = assert_problem(response, 422, "validation_error")["errors"]
    assert sorted(error["loc"] for error in errors) == [
        ["query", "completed"],
        ["query", "limit"],
        ["query", "sort"],
    ]
    assert all(error["msg"] and error["type"] for error in errors)


def test_a_list_reads_the_last_of_a_repeated_parameter_and_ignores_unknown_ones(
    client: TestClient, auth: AuthFactory, make_task: Factory
) -> None:
    for title in ("one", "two", "three"):
        make_task("alice", title=title)
    response = client.get(
        "/api/alice/tasks?limit=5&limit=2&color=red&sort=title", headers=auth("alice")
    )
    assert response.status_code == 200
    assert [task["title"] for task in response.json()["items"]] == ["one", "three"]
