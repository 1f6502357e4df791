"""Weekly statistics: seven local days counted from history, open and overdue from tasks."""

from datetime import UTC, date, datetime, timedelta
from uuid import UUID

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from backend.fields import HistoryAction
from backend.models import Task, TaskHistory, User
from tests.conftest import AuthFactory, Factory, assert_problem

NOW = datetime(2026, 3, 12, 20, 0, tzinfo=UTC)
TASK = UUID("00000000-0000-7000-8000-000000000001")
CREATED = HistoryAction.created
COMPLETED = HistoryAction.completed


def _freeze(monkeypatch: pytest.MonkeyPatch, now: datetime) -> None:
    monkeypatch.setattr("backend.stats.service.utcnow", lambda: now)


def _add_user(db: Session, user_id: str = "alice") -> None:
    db.add(User(id=user_id, created_at=NOW, updated_at=NOW))
    db.commit()


def _add_history(
    db: Session, rows: list[tuple[HistoryAction, datetime]], user_id: str = "alice"
) -> None:
    db.add_all(
        TaskHistory(
            user_id=user_id,
            task_id=TASK,
            action=action,
            changes={},
            title="A task",
            occurred_at=at,
        )
        for action, at in rows
    )
    db.commit()


def _add_tasks(db: Session, *tasks: tuple[bool, datetime | None], user_id: str = "alice") -> None:
    """Tasks given as (completed, due_at)."""
    db.add_all(
        Task(
            user_id=user_id,
            title=f"task {number}",
            completed=completed,
            completed_at=NOW if completed else None,
            due_at=due_at,
            created_at=NOW - timedelta(days=30),
            updated_at=NOW - timedelta(days=30),
        )
        for number, (completed, due_at) in enumerate(tasks)
    )
    db.commit()


def _days(first: date, counts: dict[date, tuple[int, int]]) -> list[dict[str, object]]:
    """The expected seven days from `first`; `counts` maps a day to (created, completed)."""
    days = [first + timedelta(days=offset) for offset in range(7)]
    return [
        {"date": day.isoformat(), "created": counts.get(day, (0, 0))[0],
         "completed": counts.get(day, (0, 0))[1]}
        for day in days
    ]  # fmt: skip


def test_weekly_stats_returns_the_shape_in_utc_by_default(
    client: TestClient, auth: AuthFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    _freeze(monkeypatch, NOW)

    response = client.get("/api/alice/stats/weekly", headers=auth())

    assert response.status_code == 200
    assert response.json() == {
        "tz": "UTC",
        "from": "2026-03-06",
        "to": "2026-03-12",
        "days": _days(date(2026, 3, 6), {}),
        "created": 0,
        "completed": 0,
        "open": 0,
        "overdue": 0,
        "completion_rate": 0.0,
    }


@pytest.mark.parametrize(
    "tz", ["Mars/Olympus_Mons", "utc+1", "", "../../etc/passwd", "/etc/localtime", "Europe/"]
)
def test_weekly_stats_refuses_an_unknown_time_zone(
    client: TestClient, auth: AuthFactory, tz: str
) -> None:
    response = client.get("/api/alice/stats/weekly", params={"tz": tz}, headers=auth())

    body = assert_problem(response, 422, "validation_error")
    assert body["errors"][0]["loc"] == ["query", "tz"]


def test_weekly_stats_refuses_a_too_long_time_zone(client: TestClient, auth: AuthFactory) -> None:
    response = client.get("/api/alice/stats/weekly", params={"tz": "A" * 65}, headers=auth())

    assert_problem(response, 422, "validation_error")


HISTORY_ACROSS_MIDNIGHT = [
    (CREATED, datetime(2026, 3, 6, 3, 0, tzinfo=UTC)),
    (CREATED, datetime(2026, 3, 10, 23, 30, tzinfo=UTC)),
    (COMPLETED, datetime(2026, 3, 11, 6, 30, tzinfo=UTC)),
    (HistoryAction.updated, datetime(2026, 3, 11, 12, 0, tzinfo=UTC)),
    (HistoryAction.reopened, datetime(2026, 3, 11, 13, 0, tzinfo=UTC)),
    (CREATED, datetime(2026, 3, 12, 16, 0, tzinfo=UTC)),
    (CREATED, datetime(2026, 3, 5, 12, 0, tzinfo=UTC)),
]


@pytest.mark.parametrize(
    ("tz", "first", "counts", "created", "completed"),
    [
        (
            "UTC",
            date(2026, 3, 6),
            {date(2026, 3, 6): (1, 0), date(2026, 3, 10): (1, 0), date(2026, 3, 11): (0, 1),
             date(2026, 3, 12): (1, 0)},
            3,
            1,
        ),
        (
            "Asia/Tokyo",
            date(2026, 3, 7),
            {date(2026, 3, 11): (1, 1), date(2026, 3, 13): (1, 0)},
            2,
            1,
        ),
        (
            "America/Los_Angeles",
            date(2026, 3, 6),
            {date(2026, 3, 10): (1, 1), date(2026, 3, 12): (1, 0)},
            2,
            1,
        ),
    ],
)  # fmt: skip
def test_weekly_stats_counts_each_entry_on_its_local_day(
    client: TestClient,
    auth: AuthFactory,
    db: Session,
    monkeypatch: pytest.MonkeyPatch,
    tz: str,
    first: date,
    counts: dict[date, tuple[int, int]],
    created: int,
    completed: int,
) -> None:
    _freeze(monkeypatch, NOW)
    _add_user(db)
    _add_history(db, HISTORY_ACROSS_MIDNIGHT)

    response = client.get("/api/alice/stats/weekly", params={"tz": tz}, headers=auth())

    assert response.status_code == 200
    body = response.json()
    assert (body["tz"], body["from"], body["to"]) == (
        tz,
        first.isoformat(),
        (first + timedelta(days=6)).isoformat(),
    )
    assert body["days"] == _days(first, counts)
    assert (body["created"], body["completed"]) == (created, completed)


@pytest.mark.parametrize(
    ("now", "first", "rows", "counts"),
    [
        (
            datetime(2026, 3, 31, 10, 0, tzinfo=UTC),
            date(2026, 3, 25),
            [
                datetime(2026, 3, 24, 22, 59, tzinfo=UTC),
                datetime(2026, 3, 24, 23, 0, tzinfo=UTC),
                datetime(2026, 3, 28, 22, 59, tzinfo=UTC),
                datetime(2026, 3, 28, 23, 0, tzinfo=UTC),
                datetime(2026, 3, 29, 21, 59, tzinfo=UTC),
                datetime(2026, 3, 29, 22, 0, tzinfo=UTC),
                datetime(2026, 3, 31, 21, 59, tzinfo=UTC),
                datetime(2026, 3, 31, 22, 0, tzinfo=UTC),
            ],
            {date(2026, 3, 25): 1, date(2026, 3, 28): 1, date(2026, 3, 29): 2,
             date(2026, 3, 30): 1, date(2026, 3, 31): 1},
        ),
        (
            datetime(2026, 10, 27, 10, 0, tzinfo=UTC),
            date(2026, 10, 21),
            [
                datetime(2026, 10, 24, 21, 59, tzinfo=UTC),
                datetime(2026, 10, 24, 22, 0, tzinfo=UTC),
                datetime(2026, 10, 25, 22, 30, tzinfo=UTC),
                datetime(2026, 10, 25, 22, 59, tzinfo=UTC),
                datetime(2026, 10, 25, 23, 0, tzinfo=UTC),
                datetime(2026, 10, 27, 22, 59, tzinfo=UTC),
                datetime(2026, 10, 27, 23, 0, tzinfo=UTC),
            ],
            {date(2026, 10, 24): 1, date(2026, 10, 25): 3, date(2026, 10, 26): 1,
             date(2026, 10, 27): 1},
        ),
    ],
    ids=["spring-forward", "fall-back"],
)  # fmt: skip
def test_weekly_stats_lines_up_days_across_a_dst_change(
    client: TestClient,
    auth: AuthFactory,
    db: Session,
    monkeypatch: pytest.MonkeyPatch,
    now: datetime,
    first: date,
    rows: list[datetime],
    counts: dict[date, int],
) -> None:
    _freeze(monkeypatch, now)
    _add_user(db)
    _add_history(db, [(CREATED, at) for at in rows])

    response = client.get("/api/alice/stats/weekly", params={"tz": "Europe/Paris"}, headers=auth())

    assert response.status_code == 200
    body = response.json()
    assert body["from"] == first.isoformat()
    assert body["to"] == (first + timedelta(days=6)).isoformat()
    expected = {day: (count, 0) for day, count in counts.items()}
    assert body["days"] == _days(first, expected)
    assert body["created"] == sum(counts.values())


def test_weekly_stats_counts_a_deleted_task(
    client: TestClient,
    auth: AuthFactory,
    make_task: Factory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("backend.unit_of_work.utcnow", lambda: NOW - timedelta(days=1))
    task = make_task(title="Short-lived")
    assert (
        client.patch(f"/api/alice/tasks/{task['id']}/complete", headers=auth()).status_code == 200
    )
    assert client.delete(f"/api/alice/tasks/{task['id']}", headers=auth()).status_code == 204
    _freeze(monkeypatch, NOW)

    response = client.get("/api/alice/stats/weekly", headers=auth())

    assert response.status_code == 200
    body = response.json()
    assert body["days"] == _days(date(2026, 3, 6), {date(2026, 3, 11): (1, 1)})
    assert (body["created"], body["completed"], body["open"], body["overdue"]) == (1, 1, 0, 0)
    assert body["completion_rate"] == 1.0


def test_weekly_stats_counts_open_and_overdue_from_current_tasks(
    client: TestClient, auth: AuthFactory, db: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    _freeze(monkeypatch, NOW)
    _add_user(db)
    _add_user(db, "bob")
    _add_tasks(
        db,
        (False, NOW - timedelta(days=3)),
        (False, NOW - timedelta(seconds=1)),
        (False, NOW),
        (False, NOW + timedelta(hours=1)),
        (False, None),
        (True, NOW - timedelta(days=2)),
        (True, None),
    )
    _add_tasks(db, (False, NOW - timedelta(days=1)), user_id="bob")

    response = client.get("/api/alice/stats/weekly", headers=auth())

    assert response.status_code == 200
    body = response.json()
    assert (body["open"], body["overdue"]) == (5, 2)
    assert (body["created"], body["completed"]) == (0, 0)
    assert body["completion_rate"] == 0.0


def test_weekly_stats_ignores_other_users_history(
    client: TestClient, auth: AuthFactory, db: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    _freeze(monkeypatch, NOW)
    _add_user(db)
    _add_user(db, "bob")
    _add_history(db, [(CREATED, NOW - timedelta(hours=1))], user_id="bob")

    response = client.get("/api/alice/stats/weekly", headers=auth())

    assert response.status_code == 200
    assert response.json()["created"] == 0


@pytest.mark.parametrize(
    ("completed", "open_tasks", "rate"),
    [(0, 0, 0.0), (1, 0, 1.0), (0, 3, 0.0), (1, 2, 0.3333), (2, 1, 0.6667), (2, 5, 0.2857)],
)
def test_weekly_stats_computes_the_completion_rate(
    client: TestClient,
    auth: AuthFactory,
    db: Session,
    monkeypatch: pytest.MonkeyPatch,
    completed: int,
    open_tasks: int,
    rate: float,
) -> None:
    _freeze(monkeypatch, NOW)
    _add_user(db)
    _add_history(db, [(COMPLETED, NOW - timedelta(hours=hour + 1)) for hour in range(completed)])
    _add_tasks(db, *[(False, None)] * open_tasks)

    response = client.get("/api/alice/stats/weekly", headers=auth())

    assert response.status_code == 200
    body = response.json()
    assert (body["completed"], body["open"]) == (completed, open_tasks)
    assert body["completion_rate"] == rate
