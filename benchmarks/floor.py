"""The stack's floor: the raw ceiling's endpoint, its query through SQLAlchemy instead.

Not part of the service. It is `benchmarks/ceiling.py` with one change: the list query
runs through the fixed stack's data layer (SQLAlchemy 2 on psycopg 3, one `run_sync`
on a pooled `AsyncConnection`: the leanest way that stack runs a statement from async
code) instead of straight through a psycopg pool. Same token check, same owner match,
same rows as dicts, no middleware, no row-level security. What the ceiling can do and
the floor cannot is what FastAPI over SQLAlchemy costs before the service adds anything
of its own; `benchmarks.run` and `benchmarks.instructions` print both
(specs/performance.md). Configured by `BENCH_DSN` and `JWT_SECRET`, as the ceiling.
"""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import jwt
from fastapi import FastAPI, Header, HTTPException
from sqlalchemy import Connection, make_url, text
from sqlalchemy.ext.asyncio import create_async_engine

from benchmarks.ceiling import QUERY

STATEMENT = text(QUERY.replace("%s", ":user_id", 1).replace("%s", ":limit", 1))

engine = create_async_engine(
    make_url(os.environ.get("BENCH_DSN", "postgresql://")).set(drivername="postgresql+psycopg"),
    pool_size=10,
    max_overflow=0,
)


@asynccontextmanager
async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
    yield
    await engine.dispose()


app = FastAPI(lifespan=lifespan)


@app.get("/api/{user_id}/tasks")
async def list_tasks(
    user_id: str, authorization: Annotated[str, Header()], limit: int = 20
) -> dict[str, Any]:
    try:
        claims = jwt.decode(
            authorization.removeprefix("Bearer "), os.environ["JWT_SECRET"], algorithms=["HS256"]
        )
    except jwt.InvalidTokenError:
        raise HTTPException(401) from None
    if claims["sub"] != user_id:
        raise HTTPException(403)

    def fetch(connection: Connection) -> list[dict[str, Any]]:
        result = connection.execute(STATEMENT, {"user_id": user_id, "limit": limit})
        rows = [dict(zip(result.keys(), row, strict=True)) for row in result.all()]
        connection.commit()
        return rows

    async with engine.connect() as connection:
        rows = await connection.run_sync(fetch)
    return {"items": rows, "next_cursor": None}
