#!/usr/bin/env bash
# The browser proof: the page (clients/web) served on one origin, the API on another with
# CORS set; headless Chromium opens the page, which lists the tasks and opens the event
# stream with a ticket; a task created from outside the browser must show within 2 s.
# Usage: clients/web/run.sh DATABASE_URL [SCREENSHOT_PATH]
# Needs Node 20+, Debian's chromium (CHROMIUM overrides the path) and the project's venv.
set -euo pipefail
cd "$(dirname "$0")"

DATABASE_URL=${1:?usage: run.sh DATABASE_URL [SCREENSHOT_PATH]}
SCREENSHOT=${2:-}
ROOT=$(cd ../.. && pwd)
TODO_API=${TODO_API:-$ROOT/.venv/bin/todo-api}
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}

free_port() { "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_for() {
    "$PYTHON" - "$1" <<'PY'
import sys, time, urllib.request
for _ in range(300):
    try:
        with urllib.request.urlopen(sys.argv[1], timeout=1):
            sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit(1)
PY
}

npm ci --no-audit --no-fund --loglevel=error

api_port=$(free_port)
web_port=$(free_port)
log=$(mktemp)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -f "$log"
}
trap cleanup EXIT

export DATABASE_URL ENVIRONMENT=test CORS_ORIGINS="http://127.0.0.1:$web_port"
JWT_SECRET=$("$PYTHON" -c 'import secrets; print(secrets.token_urlsafe(48))')
export JWT_SECRET
"$TODO_API" serve --host 127.0.0.1 --port "$api_port" >"$log" 2>&1 &
pids+=($!)
"$PYTHON" -m http.server "$web_port" --bind 127.0.0.1 >/dev/null 2>&1 &
pids+=($!)
wait_for "http://127.0.0.1:$api_port/readyz" || { cat "$log" >&2; exit 1; }
wait_for "http://127.0.0.1:$web_port/index.html"

user="web-$(date +%s)-$$"
if ! WEB_URL="http://127.0.0.1:$web_port" API_URL="http://127.0.0.1:$api_port" API_USER=$user \
    API_TOKEN=$("$TODO_API" token "$user" --ttl 600) SCREENSHOT=$SCREENSHOT node proof.mjs; then
    echo "the server's output:" >&2
    cat "$log" >&2
    exit 1
fi
