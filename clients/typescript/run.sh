#!/usr/bin/env bash
# The client proof: install the pinned packages, generate the types from
# specs/openapi.json, type-check with tsc --strict, then run the quick-start flow
# against a live `todo-api serve` on the given database (migrated at start).
# Usage: clients/typescript/run.sh postgresql://postgres@127.0.0.1:5432/todo_client
# Needs Node 20+ and the project's virtualenv (TODO_API overrides the command).
set -euo pipefail
cd "$(dirname "$0")"

DATABASE_URL=${1:?usage: run.sh DATABASE_URL}
ROOT=$(cd ../.. && pwd)
TODO_API=${TODO_API:-$ROOT/.venv/bin/todo-api}
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
started=$SECONDS

step() { printf -- '--> %s\n' "$*"; }

step "npm ci"
npm ci --no-audit --no-fund --loglevel=error

step "generate src/schema.d.ts from specs/openapi.json"
npm run --silent generate

step "tsc --strict"
rm -rf dist
npx --no-install tsc --strict

port=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log=$(mktemp)
server=""
stop_server() {
    if [[ -n $server ]] && kill -0 "$server" 2>/dev/null; then
        kill "$server"
        wait "$server" 2>/dev/null || true
    fi
    rm -f "$log"
}
trap stop_server EXIT

# A secret for this run only, so no file is left behind and no token outlives it.
export DATABASE_URL ENVIRONMENT=test
JWT_SECRET=$("$PYTHON" -c 'import secrets; print(secrets.token_urlsafe(48))')
export JWT_SECRET

step "todo-api serve on 127.0.0.1:$port (migrations first)"
"$TODO_API" serve --host 127.0.0.1 --port "$port" >"$log" 2>&1 &
server=$!
base="http://127.0.0.1:$port"
if ! "$PYTHON" - "$base/readyz" "$server" <<'EOF'
import os, sys, time, urllib.request
url, pid = sys.argv[1], int(sys.argv[2])
for _ in range(300):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        sys.exit(1)
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            sys.exit(0 if response.status == 200 else 1)
    except OSError:
        time.sleep(0.1)
sys.exit(1)
EOF
then
    echo "the server did not become ready; its output:" >&2
    cat "$log" >&2
    exit 1
fi

user="ts-client-$(date +%s)-$$"
step "flow as $user"
if ! TODO_API_URL=$base TODO_API_USER=$user \
    TODO_API_TOKEN=$("$TODO_API" token "$user" --email "$user@example.com" --ttl 600) \
    node dist/flow.js; then
    echo "the server's output:" >&2
    cat "$log" >&2
    exit 1
fi
step "client proof passed in $((SECONDS - started)) s"
