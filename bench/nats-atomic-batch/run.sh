#!/usr/bin/env bash
# Measures two-event appends one by one vs as one atomic batch on a private
# nats-server (the one `./dev setup` installs into .tools/). See measure.py.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$HERE/../.."
SERVER="$ROOT/.tools/venv/bin/nats-server"
[ -x "$SERVER" ] || "$ROOT/dev" setup
[ -x "$HERE/.venv/bin/python" ] || { python3 -m venv "$HERE/.venv" && "$HERE/.venv/bin/pip" install -q nats-py; }
STORE="$(mktemp -d)"
PORT="${PORT:-14555}"
"$SERVER" --version
"$SERVER" -js -p "$PORT" -sd "$STORE" >"$STORE/log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$STORE"' EXIT
for _ in $(seq 50); do "$HERE/.venv/bin/python" -c "import socket; socket.create_connection(('127.0.0.1', $PORT))" 2>/dev/null && break; sleep 0.1; done
"$HERE/.venv/bin/python" "$HERE/measure.py" "nats://127.0.0.1:$PORT"
