#!/usr/bin/env bash
# Celery 5 + Redis peer benchmark: the same end-to-end figures as
# `skynet bench` (throughput, latency at a fixed offered rate), for comparison
# on the same machine. See README.md beside this file.
#
# Usage: bench/peers/celery/run.sh [TASKS [LATENCY_TASKS [RATE]]]
#   TASKS          tasks in the throughput run      (default 3000, as skynet bench --jobs)
#   LATENCY_TASKS  tasks in the latency run         (default 500, as skynet bench)
#   RATE           latency run's offered rate, /s   (default 50, as skynet bench)
# Environment (each optional):
#   TASKS, LATENCY_TASKS, RATE  as above (arguments win)
#   CONCURRENCY    worker pool processes            (default: number of CPUs)
#   REDIS_URL      Redis server, without a DB       (default redis://127.0.0.1:6379)
#   REDIS_DB       the benchmark's own DB, FLUSHed before each run (default 15)
#   PYTHON         interpreter for the venv         (default python3)
#   LOAD_ARGS      extra flags for load.py, e.g. "--pool-threads 64 --deadline 300"
# Prints the load generator's JSON on stdout; everything else goes to stderr.
set -euo pipefail
set +m # no job control: `setsid` below then makes the worker its own group leader in place

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$HERE/.venv"
PY="$VENV/bin/python"

TASKS="${1:-${TASKS:-3000}}"
LATENCY_TASKS="${2:-${LATENCY_TASKS:-500}}"
RATE="${3:-${RATE:-50}}"
CONCURRENCY="${CONCURRENCY:-$(nproc)}"
REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"
REDIS_DB="${REDIS_DB:-15}"

say() { printf '[celery-peer] %s\n' "$*" >&2; }
die() { say "FAILED: $*"; exit 1; }

for v in TASKS LATENCY_TASKS CONCURRENCY REDIS_DB; do
  [[ "${!v}" =~ ^[0-9]+$ ]] || die "$v must be a whole number, got '${!v}'"
done
[[ "$RATE" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "RATE must be a number, got '$RATE'"
# The DB is ours: strip any /N the caller's URL carries and use REDIS_DB.
REDIS_URL="${REDIS_URL%/}"
[[ "$REDIS_URL" =~ ^(rediss?://.*)/[0-9]+$ ]] && REDIS_URL="${BASH_REMATCH[1]}"
export CELERY_BENCH_URL="$REDIS_URL/$REDIS_DB"

# --- 1. the venv, (re)installed only when requirements.txt changes ----------
if [[ ! -x "$PY" ]]; then
  say "creating $VENV"
  "${PYTHON:-python3}" -m venv "$VENV" >&2 \
    || die "python3 -m venv failed (on Debian: apt-get install -y python3-venv)"
fi
want="$(sha256sum "$HERE/requirements.txt" | cut -d' ' -f1)"
if [[ "$(cat "$VENV/.requirements.sha256" 2>/dev/null || true)" != "$want" ]]; then
  say "installing requirements.txt into $VENV"
  "$PY" -m pip install --quiet --disable-pip-version-check -r "$HERE/requirements.txt" >&2
  echo "$want" >"$VENV/.requirements.sha256"
fi

# --- 2. a reachable Redis --------------------------------------------------
redis_cmd() { # redis_cmd CMD [ARGS...] against the benchmark's DB
  "$PY" - "$CELERY_BENCH_URL" "$@" <<'EOF'
import sys, redis
r = redis.Redis.from_url(sys.argv[1], socket_connect_timeout=2, socket_timeout=10)
print(r.execute_command(*sys.argv[2:]))
EOF
}
redis_up() { redis_cmd PING >/dev/null 2>&1; }

if ! redis_up; then
  read -r host port < <("$PY" -c 'import sys, urllib.parse as u; p = u.urlparse(sys.argv[1]); print(p.hostname or "127.0.0.1", p.port or 6379)' "$REDIS_URL")
  [[ "$host" == 127.0.0.1 || "$host" == localhost ]] \
    || die "no Redis answers at $REDIS_URL (and it is not this machine's to start)"
  if ! command -v redis-server >/dev/null; then
    say "installing redis-server"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server; } >&2 \
      || die "could not install redis-server"
  fi
  # apt's post-install may have started it already.
  if ! redis_up; then
    # Its working directory (where its default snapshots go) is a temp dir,
    # not wherever this script was run from.
    rdir="$(mktemp -d "${TMPDIR:-/tmp}/celery-peer-redis.XXXXXX")"
    say "starting redis-server on port $port (dir $rdir; default persistence)"
    redis-server --daemonize yes --port "$port" --bind 127.0.0.1 --dir "$rdir" >&2
  fi
  deadline=$((SECONDS + 30))
  until redis_up; do
    (( SECONDS < deadline )) || die "redis-server did not answer within 30 s on port $port"
    sleep 0.1
  done
fi
say "Redis at $CELERY_BENCH_URL; flushing DB $REDIS_DB (only that DB)"
redis_cmd FLUSHDB >/dev/null

# --- 3. the worker, always stopped on exit ---------------------------------
WORK="$(mktemp -d)"
WORKER_LOG="$WORK/worker.log"
WORKER_PID=""
LOAD_PID=""
NODE="skynet-peer-bench-$$@$(hostname)"
export CELERY_BENCH_NODE="$NODE"

stop_worker() {
  [[ -n "$WORKER_PID" ]] || return 0
  local pid="$WORKER_PID" deadline
  WORKER_PID=""
  # Warm shutdown: the main process stops its pool processes itself (a TERM to
  # them directly would make it report them lost). The worker leads its own
  # process group (setsid below), so whatever is left after the deadline is
  # found and killed by group, and no prefork child is left behind.
  kill -TERM "$pid" 2>/dev/null || true
  deadline=$((SECONDS + 15))
  while pgrep -g "$pid" >/dev/null 2>&1 && (( SECONDS < deadline )); do sleep 0.1; done
  if pgrep -g "$pid" >/dev/null 2>&1; then
    say "worker did not stop in 15 s; killing its process group"
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}
on_exit() {
  local rc=$?
  if [[ -n "$LOAD_PID" ]]; then
    kill -TERM "$LOAD_PID" 2>/dev/null || true
    wait "$LOAD_PID" 2>/dev/null || true
  fi
  stop_worker
  if (( rc != 0 )) && [[ -s "$WORKER_LOG" ]]; then
    say "worker log (last 40 lines):"; tail -n 40 "$WORKER_LOG" >&2
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "starting worker $NODE: prefork, concurrency $CONCURRENCY"
# Gossip, mingle and worker heartbeats are cluster chatter with one worker
# and nothing consuming events; turning them off is the usual tuning.
setsid "$VENV/bin/celery" --workdir "$HERE" -A tasks worker \
  --pool prefork --concurrency "$CONCURRENCY" --loglevel warning \
  --hostname "$NODE" --without-gossip --without-mingle --without-heartbeat \
  >"$WORKER_LOG" 2>&1 </dev/null &
WORKER_PID=$!
pgid="$(ps -o pgid= -p "$WORKER_PID" 2>/dev/null | tr -d ' ' || true)"
[[ -z "$pgid" || "$pgid" == "$WORKER_PID" ]] \
  || die "the worker is not the leader of its own process group (pgid $pgid)"

deadline=$((SECONDS + 60))
until "$VENV/bin/celery" --workdir "$HERE" -A tasks inspect ping \
        --destination "$NODE" --timeout 1 >/dev/null 2>&1; do
  kill -0 "$WORKER_PID" 2>/dev/null || die "the worker exited before answering a ping"
  (( SECONDS < deadline )) || die "the worker did not answer a ping within 60 s"
done
say "worker answers"

# --- 4. the load ------------------------------------------------------------
# In the background and waited for, so that a signal to this script is
# handled at once (bash runs traps only between foreground commands).
(cd "$HERE" && exec "$PY" load.py --tasks "$TASKS" --latency-tasks "$LATENCY_TASKS" \
  --rate "$RATE" --node "$NODE" ${LOAD_ARGS:-}) &
LOAD_PID=$!
wait "$LOAD_PID"
LOAD_PID=""
