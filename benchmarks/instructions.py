"""Instructions per request, counted by callgrind: the service against the raw ceiling.

    apt-get install valgrind
    .venv/bin/python -m benchmarks.instructions                      # ~5 minutes
    .venv/bin/python -m benchmarks.instructions --query "completed=false&sort=due_at"
    .venv/bin/python -m benchmarks.instructions --route stats/weekly --query ""
    .venv/bin/python -m benchmarks.instructions --method POST --query "" --body '{"title": "x"}'
    .venv/bin/python -m benchmarks.instructions --method PATCH --route tasks/<id> --query "" \
        --body '{"title": "renamed {n}"}'

Requests per second and CPU time move by a quarter between runs on a shared machine; the
instructions a request executes do not, so a change to the request path is judged here
before `benchmarks.run` (specs/performance.md). Each app, the service (as a role subject to
row-level security), `benchmarks.ceiling` and the stack's floor `benchmarks.floor` (the
ceiling's endpoint through SQLAlchemy), is called in process as an ASGI app on uvloop
(the event loop they serve on), with no HTTP server and no load generator, under
callgrind, twice: with a few requests and with `--requests` more. The difference over
`--requests` is one request's instructions; start-up and imports cancel out. The ceiling
and the floor always serve their list page; `--route`, `--query`, `--method` and `--body`
choose the service's request (a list page by default; a POST creates a task per request
in the benchmark user's list; `{n}` in the body is the request's number). Both runs of an
app go side by side, one per core.
"""

import argparse
import itertools
import logging.config
import os
import re
import shutil
import subprocess
import sys
import time

import uvloop
from starlette.types import Message

from backend.auth import issue_token
from backend.config import Settings
from benchmarks import dataset

WARM_UP = 20
LIST_QUERY = "limit=20"
APPS = ("ceiling", "floor", "service")
REFS = re.compile(r"I\s+refs:\s+([\d,]+)")


async def _serve(
    app_name: str, path: str, query: str, requests: int, method: str = "GET", body: str = ""
) -> None:
    """The worker: `requests` requests through the app, after its start-up."""
    if app_name == "ceiling":
        from benchmarks.ceiling import app
    elif app_name == "floor":
        from benchmarks.floor import app
    else:
        from backend.main import serve_app
        from backend.observability import logging_config

        # As `todo-api serve` runs it: its logging (without, the access log's logger has no
        # level and drops every line before building a record), then the server process's app.
        logging.config.dictConfig(logging_config(Settings()))
        app = serve_app()
    user_id = path.split("/")[2]
    token = issue_token(Settings(), user_id, ttl_seconds=3600, now=int(time.time()))
    headers = [(b"host", b"bench"), (b"authorization", f"Bearer {token}".encode())]
    if body:
        headers.append((b"content-type", b"application/json"))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("bench", 80),
    }

    # `{n}` in the body numbers the requests (and the process, as two run side by side),
    # so that each PATCH really changes the task.
    bodies = (body.replace("{n}", f"{os.getpid()}-{n}").encode() for n in itertools.count())
    sent = b""

    async def receive() -> Message:
        return {"type": "http.request", "body": sent, "more_body": False}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start" and message["status"] not in (200, 201):
            raise SystemExit(f"{app_name} answered {message['status']}")

    async with app.router.lifespan_context(app):
        for _ in range(requests):
            sent = next(bodies)
            length = [(b"content-length", b"%d" % len(sent))] if body else []
            await app({**scope, "headers": headers + length, "state": {}}, receive, send)


def _count(
    app_name: str, requests: int, target: tuple[str, ...], env: dict[str, str]
) -> "subprocess.Popen[str]":
    path, query, method, body = target
    command = [
        "valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
        sys.executable, "-m", "benchmarks.instructions", "--worker", app_name,
        "--requests", str(requests), "--path", path, "--query", query,
        "--method", method, "--body", body,
    ]  # fmt: skip
    return subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


def _refs(process: "subprocess.Popen[str]") -> int:
    _, errors = process.communicate()
    found = REFS.search(errors)
    if process.returncode != 0 or found is None:
        raise SystemExit(f"callgrind run failed:\n{errors[-2000:]}")
    return int(found.group(1).replace(",", ""))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--database", default="todo_bench")
    parser.add_argument("--size", type=int, default=1_000, help="tasks of the listed user")
    parser.add_argument("--requests", type=int, default=150)
    parser.add_argument("--route", default="tasks", help="the service's path after /api/{user}/")
    parser.add_argument("--query", default=LIST_QUERY)
    parser.add_argument("--method", default="GET")
    parser.add_argument("--body", default="", help="a JSON body for the service's request")
    parser.add_argument("--path", default="", help=argparse.SUPPRESS)
    parser.add_argument("--worker", choices=APPS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        uvloop.run(
            _serve(args.worker, args.path, args.query, args.requests, args.method, args.body)
        )
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is missing: apt-get install valgrind")
    data = dataset.prepare(args.server, args.database, sizes=(args.size,), reseed=False)
    prefix = f"/api/{dataset.user_for(args.size)}"
    targets = {
        "ceiling": (f"{prefix}/tasks", LIST_QUERY, "GET", ""),
        "floor": (f"{prefix}/tasks", LIST_QUERY, "GET", ""),
        "service": (f"{prefix}/{args.route}", args.query, args.method, args.body),
    }
    env = os.environ | dataset.ceiling_env(data) | dataset.service_env(data)
    # Under callgrind a request runs some fifty times slower, more with runs side by side:
    # the service's 8 s deadline would answer 503 to a slow one (weekly stats did).
    env["REQUEST_DEADLINE_SECONDS"] = "600"
    # One string-hash seed for every run: with a random one, dicts and sets lay out
    # differently in each process and the same code counted up to 4% apart.
    env["PYTHONHASHSEED"] = "0"
    for app_name, (path, query, method, body) in targets.items():
        print(
            f"{app_name}: {method} {path}?{query} {body}, {args.requests} requests under callgrind"
        )
    per_request = {}
    for app_name in APPS:
        few, many = (
            _count(app_name, n, targets[app_name], env) for n in (WARM_UP, WARM_UP + args.requests)
        )
        per_request[app_name] = (_refs(many) - _refs(few)) / args.requests
    print(f"{'app':<8} {'M instructions a request':>25} {'ratio':>6} {'to the floor':>13}")
    for app_name in APPS:
        ratio, to_floor = (per_request[base] / per_request[app_name] for base in APPS[:2])
        print(f"{app_name:<8} {per_request[app_name] / 1e6:>25.2f} {ratio:>6.2f} {to_floor:>13.2f}")


if __name__ == "__main__":
    main()
