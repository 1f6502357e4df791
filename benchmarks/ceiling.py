"""The raw ceiling: a list page straight through psycopg, behind the same token check.

Not part of the service. It is the smallest FastAPI endpoint that does what a list page
must (verify an HS256 token, match its subject to the path, run one owner-scoped keyset
query through an async psycopg pool, answer JSON), so that every figure the service
shows in `benchmarks.run` is a ratio to what the raw driver gives on the same machine in
the same run. Configured by `BENCH_DSN` and `JWT_SECRET`.
"""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import jwt
from fastapi import FastAPI, Header, HTTPException
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

QUERY = """
    SELECT id, title, description, priority, due_at, category_id, completed, completed_at,
           created_at, updated_at, version
    FROM tasks WHERE user_id = %s ORDER BY created_at DESC, id DESC LIMIT %s
"""

pool: AsyncConnectionPool = AsyncConnectionPool(
    os.environ.get("BENCH_DSN", ""), min_size=10, max_size=10, open=False
)


@asynccontextmanager
async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
    await pool.open()
    yield
    await pool.close()


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
    async with pool.connection() as connection:
        cursor = connection.cursor(row_factory=dict_row)
        rows = await (await cursor.execute(QUERY, (user_id, limit))).fetchall()
    return {"items": rows, "next_cursor": None}
