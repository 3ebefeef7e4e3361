#!/usr/bin/env bash
# Runs the Svix SDK compatibility suite (tests/compat/sdk_suite.py) against a real Herald
# binary: makes the virtualenv once, starts Herald on a temporary database and a free port,
# waits for /api/v1/health, runs the suite, stops Herald, exits with the suite's status.
#
#   HERALD_BIN                 the herald binary (default: target/debug/herald); nothing is built
#   COMPAT_VENV                the virtualenv (default: target/compat-venv)
#   HERALD_RETRY_SCHEDULE_MS   retry schedule given to Herald and the suite (default [50,50])
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/tests/compat"
HERALD_BIN="${HERALD_BIN:-$ROOT/target/debug/herald}"
VENV="${COMPAT_VENV:-$ROOT/target/compat-venv}"
REQUIREMENTS="$HERE/requirements.txt"
export HERALD_RETRY_SCHEDULE_MS="${HERALD_RETRY_SCHEDULE_MS:-[50,50]}"
# Bounds: Herald start-up, graceful stop, and the whole suite.
START_TIMEOUT_S=30
STOP_TIMEOUT_S=15
SUITE_TIMEOUT_S=900

if [ ! -x "$HERALD_BIN" ]; then
  echo "run.sh: no herald binary at $HERALD_BIN (build it first, or set HERALD_BIN)" >&2
  exit 2
fi

# The virtualenv is made once and remade only when the pinned requirements change. A lock
# keeps two runs from building it at the same time.
mkdir -p "$(dirname "$VENV")"
exec 9>"$VENV.lock"
flock 9
if [ ! -x "$VENV/bin/python" ] || ! cmp -s "$REQUIREMENTS" "$VENV/.compat-requirements"; then
  echo "run.sh: preparing $VENV" >&2
  python3 -m venv --clear "$VENV"
  "$VENV/bin/python" -m pip install --disable-pip-version-check --quiet -r "$REQUIREMENTS"
  cp "$REQUIREMENTS" "$VENV/.compat-requirements"
fi
flock -u 9
PY="$VENV/bin/python"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/herald-compat.XXXXXX")"
DB="$WORK/herald.redb"
LOG="$WORK/herald.log"
HERALD_PID=""

stop_herald() {
  if [ -n "$HERALD_PID" ] && kill -0 "$HERALD_PID" 2>/dev/null; then
    kill -TERM "$HERALD_PID" 2>/dev/null || true
    for _ in $(seq $((STOP_TIMEOUT_S * 10))); do
      kill -0 "$HERALD_PID" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$HERALD_PID" 2>/dev/null; then
      echo "run.sh: herald did not stop within ${STOP_TIMEOUT_S}s; killing it" >&2
      kill -KILL "$HERALD_PID" 2>/dev/null || true
    fi
    wait "$HERALD_PID" 2>/dev/null || true
  fi
  HERALD_PID=""
}
cleanup() {
  stop_herald
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits until Herald answers /api/v1/health, or it exits, or the deadline passes.
wait_healthy() {
  "$PY" - "$1" "$HERALD_PID" "$START_TIMEOUT_S" <<'PYEOF'
import os, sys, time, urllib.request
url, pid, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
deadline = time.monotonic() + timeout
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit(1)  # herald exited
    try:
        with urllib.request.urlopen(url + "/api/v1/health", timeout=2) as r:
            if 200 <= r.status < 300:
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.05)
sys.exit(1)
PYEOF
}

# The port is free when picked but could be taken before Herald binds it: try a few.
URL=""
for try in 1 2 3; do
  PORT="$(free_port)"
  rm -f "$DB" "$DB.admin-token"
  # Herald reads every HERALD_* variable as a setting and refuses unknown ones, so the
  # variables meant for this script are not passed on.
  env -u HERALD_BIN -u HERALD_URL -u HERALD_TOKEN \
    "$HERALD_BIN" serve --db "$DB" --listen "127.0.0.1:$PORT" \
    --allow-destination 127.0.0.0/8 --allow-http-destinations >"$LOG" 2>&1 &
  HERALD_PID=$!
  if wait_healthy "http://127.0.0.1:$PORT"; then
    URL="http://127.0.0.1:$PORT"
    break
  fi
  echo "run.sh: herald did not come up on port $PORT (try $try); its log begins:" >&2
  head -n 10 "$LOG" >&2 || true
  stop_herald
done
if [ -z "$URL" ]; then
  echo "run.sh: could not start herald" >&2
  exit 2
fi
if [ ! -s "$DB.admin-token" ]; then
  echo "run.sh: herald wrote no admin token to $DB.admin-token" >&2
  exit 2
fi

status=0
HERALD_URL="$URL" HERALD_TOKEN="$(cat "$DB.admin-token")" \
  timeout "$SUITE_TIMEOUT_S" "$PY" "$HERE/sdk_suite.py" || status=$?
if [ "$status" -ne 0 ]; then
  echo "run.sh: suite exited with $status; the last lines of herald's log:" >&2
  tail -n 30 "$LOG" >&2 || true
fi
stop_herald
exit "$status"
