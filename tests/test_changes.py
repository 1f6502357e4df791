"""The change feed: a sync that starts over, what changed since a token, paging, tokens
that are not the caller's or too old, and the rows each write leaves."""

import time
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlmodel import Session, col, select
from typer.testing import CliRunner

from backend import cli
from backend.config import Settings, get_settings
from backend.db import utcnow
from backend.models import Change, EventTicket, IdempotencyRecord
from backend.pagination import CursorSigner
from tests.conftest import AuthFactory, Factory, assert_invalid, assert_problem

CHANGES = "/api/alice/changes"


def _changes(
    client: TestClient, auth: AuthFactory, since: str | None = None, **query: Any
) -> dict[str, Any]:
    params = query | ({"since": since} if since is not None else {})
    response = client.get(CHANGES, params=params, headers=auth())
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _token(client: TestClient, auth: AuthFactory) -> str:
    token: str = _changes(client, auth)["next_since"]
    return token


def _summary(page: dict[str, Any]) -> list[tuple[str, str, str, int]]:
    return [(c["entity"], c["id"], c["op"], c["version"]) for c in page["changes"]]


def _stored(db: Session, user: str = "alice") -> list[tuple[str, str, int]]:
    db.expire_all()
    rows = db.exec(select(Change).where(Change.user_id == user).order_by(col(Change.seq)))
    return [(row.entity, str(row.entity_id), row.seq) for row in rows]


def test_list_changes_without_since_starts_a_sync_with_every_live_entity(
    client: TestClient, auth: AuthFactory, make_task: Factory, make_category: Factory
) -> None:
    home = make_category(name="Home")
    kept = make_task(title="Kept", category_id=home["id"])
    gone = make_task(title="Gone")
    client.delete(f"/api/alice/tasks/{gone['id']}", headers=auth())

    page = _changes(client, auth)

    assert _summary(page) == [
        ("category", home["id"], "upsert", 1),
        ("task", kept["id"], "upsert", 1),
    ]
    assert (
        page["changes"][0]["data"]
        == client.get(f"/api/alice/categories/{home['id']}", headers=auth()).json()
    )
    assert (
        page["changes"][1]["data"]
        == client.get(f"/api/alice/tasks/{kept['id']}", headers=auth()).json()
    )
    assert page["has_more"] is False
    assert isinstance(page["next_since"], str)


def test_list_changes_since_a_token_has_each_changed_entity_once_as_it_is_now(
    client: TestClient, auth: AuthFactory, make_task: Factory
) -> None:
    edited, removed, untouched = (make_task(title=title) for title in ("A", "B", "C"))
    since = _token(client, auth)
    client.patch(f"/api/alice/tasks/{edited['id']}", json={"title": "A1"}, headers=auth())
    client.delete(f"/api/alice/tasks/{removed['id']}", headers=auth())
    client.patch(f"/api/alice/tasks/{edited['id']}/complete", headers=auth())
    category = client.post("/api/alice/categories", json={"name": "New"}, headers=auth()).json()

    page = _changes(client, auth, since)

    assert _summary(page) == [
        ("task", removed["id"], "delete", 1),
        ("task", edited["id"], "upsert", 3),
        ("category", category["id"], "upsert", 1),
    ]
    assert page["changes"][0]["data"] is None
    assert page["changes"][1]["data"]["title"] == "A1"
    assert page["changes"][1]["data"]["completed"] is True
    assert untouched["id"] not in {change["id"] for change in page["changes"]}
    assert _changes(client, auth, page["next_since"])["changes"] == []


def test_list_changes_pages_with_next_since_until_has_more_is_false(
    client: TestClient, auth: AuthFactory, make_task: Factory
) -> None:
    created = [make_task(title=f"Task {number}")["id"] for number in range(5)]

    first = _changes(client, auth, limit=2)
    second = _changes(client, auth, first["next_since"], limit=2)
    third = _changes(client, auth, second["next_since"], limit=2)

    assert (first["has_more"], second["has_more"], third["has_more"]) == (True, True, False)
    seen = [c["id"] for page in (first, second, third) for c in page["changes"]]
    assert seen == created


def test_deleting_a_category_feeds_its_deletion_and_each_uncategorized_task(
    client: TestClient, auth: AuthFactory, make_task: Factory, make_category: Factory
) -> None:
    home = make_category(name="Home")
    tasks = [make_task(title=title, category_id=home["id"]) for title in ("A", "B")]
    since = _token(client, auth)

    response = client.delete(f"/api/alice/categories/{home['id']}", headers=auth())

    assert response.status_code == 204
    page = _changes(client, auth, since)
    assert sorted(_summary(page)[:2]) == sorted(("task", t["id"], "upsert", 2) for t in tasks)
    assert _summary(page)[2] == ("category", home["id"], "delete", 1)
    assert all(change["data"]["category_id"] is None for change in page["changes"][:2])


def test_a_write_numbers_its_change_after_the_last_and_a_no_op_numbers_none(
    client: TestClient, auth: AuthFactory, make_task: Factory, db: Session
) -> None:
    first, second = make_task(title="One"), make_task(title="Two")
    path = f"/api/alice/tasks/{first['id']}"
    created = _stored(db)

    unchanged = client.patch(path, json={"title": "One"}, headers=auth())
    refused = client.patch(path, json={"title": "X"}, headers=auth() | {"If-Match": '"9"'})
    untouched = _stored(db)
    changed = client.patch(path, json={"title": "Uno"}, headers=auth())

    assert (unchanged.status_code, refused.status_code, changed.status_code) == (200, 412, 200)
    assert [(entity, id_) for entity, id_, _ in created] == [
        ("task", first["id"]),
        ("task", second["id"]),
    ]
    assert untouched == created
    stored = _stored(db)
    assert [(entity, id_) for entity, id_, _ in stored] == [
        ("task", second["id"]),
        ("task", first["id"]),
    ]
    assert stored[0] == created[1]
    assert stored[1][2] > created[1][2]


def test_another_users_feed_never_shows_alices_changes(
    client: TestClient, auth: AuthFactory, make_task: Factory
) -> None:
    make_task("alice", title="Alice's")
    make_task("bob", title="Bob's")

    response = client.get("/api/bob/changes", headers=auth("bob"))

    assert response.status_code == 200
    assert [c["data"]["title"] for c in response.json()["changes"]] == ["Bob's"]


@pytest.mark.parametrize(
    "since",
    ["not-a-token", "eyJub3QiOiJzaWduZWQifQ", "A" * 2049],
    ids=["malformed", "unsigned", "too long"],
)
def test_list_changes_with_a_bad_token_is_422(
    client: TestClient, auth: AuthFactory, since: str
) -> None:
    response = client.get(CHANGES, params={"since": since}, headers=auth())

    assert_invalid(response, "since")


def test_list_changes_with_another_users_token_or_a_list_cursor_is_422(
    client: TestClient, auth: AuthFactory, make_task: Factory
) -> None:
    make_task("alice")
    make_task("alice")
    bobs = client.get("/api/bob/changes", headers=auth("bob")).json()["next_since"]
    cursor = client.get("/api/alice/tasks?limit=1", headers=auth()).json()["next_cursor"]

    for token in (bobs, cursor):
        response = client.get(CHANGES, params={"since": token}, headers=auth())
        assert_invalid(response, "since")


def test_list_changes_with_a_token_older_than_the_feed_keeps_is_410(
    client: TestClient, auth: AuthFactory
) -> None:
    signer: CursorSigner = client.app.state.cursor_signer  # type: ignore[attr-defined]
    issued = int(time.time()) - 31 * 24 * 3600
    old = signer.encode("alice", "changes", [0, 0, issued])

    response = client.get(CHANGES, params={"since": old}, headers=auth())

    body = assert_problem(response, 410, "sync_expired")
    assert "start a new sync" in body["detail"]


def test_a_token_while_pages_follow_keeps_the_time_its_paging_started_from(
    client: TestClient, auth: AuthFactory, make_task: Factory
) -> None:
    """A client that stops half way holds a token no younger than the deletions it has not
    read yet: it expires with them (410) rather than outlive them (decision 30)."""
    signer: CursorSigner = client.app.state.cursor_signer  # type: ignore[attr-defined]
    for title in ("A", "B", "C"):
        make_task(title=title)
    ten_days_ago = int(time.time()) - 10 * 24 * 3600
    since = signer.encode("alice", "changes", [0, 0, ten_days_ago])

    middle = _changes(client, auth, since, limit=2)
    end = _changes(client, auth, middle["next_since"], limit=2)
    started = int(time.time())
    first = _changes(client, auth, limit=2)

    assert (middle["has_more"], end["has_more"], first["has_more"]) == (True, False, True)
    assert signer.decode("alice", "changes", middle["next_since"])[2] == ten_days_ago
    assert signer.decode("alice", "changes", end["next_since"])[2] >= started - 1
    assert started - 1 <= signer.decode("alice", "changes", first["next_since"])[2] <= started + 1


@pytest.mark.parametrize("limit", [0, 501, "many"])
def test_list_changes_with_a_limit_out_of_range_is_422(
    client: TestClient, auth: AuthFactory, limit: int | str
) -> None:
    response = client.get(CHANGES, params={"limit": limit}, headers=auth())

    assert_invalid(response, "limit")


def test_prune_forgets_old_deletions_expired_keys_and_tickets_only(
    client: TestClient,
    auth: AuthFactory,
    make_task: Factory,
    db: Session,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    live, old, recent = (make_task(title=title) for title in ("live", "old", "recent"))
    for task in (old, recent):
        client.delete(f"/api/alice/tasks/{task['id']}", headers=auth())
    long_ago = utcnow() - timedelta(days=32)
    db.exec(
        update(Change).where(col(Change.entity_id) == UUID(old["id"])).values(changed_at=long_ago)
    )
    for key, expires_at in (("spent", long_ago), ("fresh", utcnow() + timedelta(hours=1))):
        db.add(
            IdempotencyRecord(
                user_id="alice",
                key=key,
                fingerprint="f",
                created_at=long_ago,
                expires_at=expires_at,
            )
        )
    for digest, expires_at in (("used-up", long_ago), ("usable", utcnow() + timedelta(minutes=1))):
        db.add(EventTicket(user_id="alice", digest=digest, expires_at=expires_at))
    db.commit()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    get_settings.cache_clear()

    try:
        result = CliRunner().invoke(cli.app, ["prune"])
    finally:
        get_settings.cache_clear()

    assert result.exit_code == 0, result.output
    assert (
        "Pruned 1 deletions from the change feed, 1 idempotency keys, 1 event tickets, "
        "0 webhook deliveries." in result.stdout
    )
    assert [(entity, entity_id) for entity, entity_id, _ in _stored(db)] == [
        ("task", live["id"]),
        ("task", recent["id"]),
    ]
    db.expire_all()
    assert [record.key for record in db.exec(select(IdempotencyRecord))] == ["fresh"]
    assert [ticket.digest for ticket in db.exec(select(EventTicket))] == ["usable"]
