"""Statistics routes."""

from functools import cache
from typing import Annotated
from zoneinfo import ZoneInfo, available_timezones

from fastapi import APIRouter, Query

from backend.deps import OwnerId, SessionDep
from backend.errors import InvalidInput
from backend.models import WeeklyStats
from backend.stats import service

router = APIRouter(prefix="/stats", tags=["stats"])


@cache
def known_time_zones() -> frozenset[str]:
    """IANA names only: not `localtime`, `posixrules` or other files of the zone folder."""
    return frozenset(available_timezones())


@router.get("/weekly", response_model=WeeklyStats)
async def weekly_stats(
    session: SessionDep,
    user_id: OwnerId,
    tz: Annotated[str, Query(max_length=64, description="An IANA time zone name.")] = "UTC",
) -> WeeklyStats:
    """Tasks created and completed on each of the seven local days ending today."""
    if tz not in known_time_zones():
        raise InvalidInput(("query", "tz"), "tz_unknown")
    return await service.weekly_stats(session, user_id=user_id, zone=ZoneInfo(tz))
