#!/usr/bin/env bash
# Local ClickHouse for tests and development: chdb_http, ClickHouse's HTTP interface served
# over chdb (the ClickHouse engine as a Python package), see infra/clickhouse/README.md.
#
# Usage: infra/services/clickhouse.sh start|stop|restart|status|env|logs|reset|test
#   start    create/refresh the venv if needed, start the server, wait until /ping answers
#   stop     stop it (SIGTERM, then SIGKILL after 30 s)
#   status   exit 0 if running (prints pid and URL), 3 if not
#   env      print `export CLICKHOUSE_...=` lines for the application and its tests
#   logs     tail the server log
#   reset    stop and delete the data directory
#   test     run the server's own test suite (starts private servers on free ports)
#
# Environment (all optional):
#   SLUICE_CLICKHOUSE_PORT      port on 127.0.0.1 (default 18123, away from ClickHouse's 8123)
#   SLUICE_CLICKHOUSE_PASSWORD  password of user `default` (default "sluice")
#   SLUICE_CLICKHOUSE_DIR       data, log and pid file (default $XDG_CACHE_HOME/sluice/clickhouse)
#   SLUICE_CHDB_VENV            the Python venv (default $XDG_CACHE_HOME/sluice/chdb-venv)
#   SLUICE_PYTHON               interpreter that creates the venv (default python3, >= 3.9)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SERVER_DIR=$(cd "$HERE/../clickhouse" && pwd)
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/sluice
STATE_DIR=${SLUICE_CLICKHOUSE_DIR:-$CACHE/clickhouse}
VENV=${SLUICE_CHDB_VENV:-$CACHE/chdb-venv}
PORT=${SLUICE_CLICKHOUSE_PORT:-18123}
PASSWORD=${SLUICE_CLICKHOUSE_PASSWORD:-sluice}
PYTHON=${SLUICE_PYTHON:-python3}
PIDFILE=$STATE_DIR/server.pid
LOG=$STATE_DIR/server.log
REQUIREMENTS=$SERVER_DIR/requirements.txt

say() { printf 'clickhouse: %s\n' "$*" >&2; }
source "$HERE/../service-lib.sh"

ensure_venv() {
    local stamp=$VENV/.requirements.sha256 want
    want=$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)
    if [[ -x $VENV/bin/python && -f $stamp && $(cat "$stamp") == "$want" ]]; then
        return 0
    fi
    say "installing chdb and friends into $VENV (first run takes a minute)"
    mkdir -p "$(dirname "$VENV")"
    [[ -x $VENV/bin/python ]] || "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQUIREMENTS"
    echo "$want" >"$stamp"
}

running_pid() { pid_from_file "$PIDFILE" chdb_http; }

ping_ok() {
    "$VENV/bin/python" - "$PORT" <<'EOF'
import sys, urllib.request
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/ping", timeout=2) as r:
        sys.exit(0 if r.read() == b"Ok.\n" else 1)
except OSError:
    sys.exit(1)
EOF
}

port_free() {
    "$VENV/bin/python" - "$PORT" <<'EOF'
import socket, sys
s = socket.socket()
# As the server does: connections of a previous server in TIME_WAIT do not make it "taken".
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
finally:
    s.close()
EOF
}

cmd_start() {
    ensure_venv
    mkdir -p "$STATE_DIR/data"
    if pid=$(running_pid); then
        # A server started from another checkout that has since been deleted (a CI clone)
        # lost its working or code directory and fails inserts (getcwd): start a fresh one.
        local src cwd
        src=$(cat "$STATE_DIR/server.src" 2>/dev/null || true)
        cwd=$(readlink "/proc/$pid/cwd" 2>/dev/null || true)
        if [[ -n $cwd && $cwd != *" (deleted)" && -d $cwd && -n $src && -d $src ]]; then
            say "already running (pid $pid) on http://127.0.0.1:$PORT"
            return 0
        fi
        say "running server (pid $pid) lost its directory ($src); restarting it"
        cmd_stop
    fi
    if ! port_free; then
        say "port $PORT on 127.0.0.1 is taken by another process; set SLUICE_CLICKHOUSE_PORT"
        return 1
    fi
    (
        # Run from the state dir (not the checkout, which a CI clone deletes afterwards).
        cd "$STATE_DIR"
        PYTHONPATH=$SERVER_DIR CHDB_HTTP_PASSWORD=$PASSWORD TZ=UTC exec setsid "$VENV/bin/python" -m chdb_http \
            --data-dir "$STATE_DIR/data" --port "$PORT" --log-file "$LOG" \
            </dev/null >>"$STATE_DIR/server.out" 2>&1
    ) &
    echo $! >"$PIDFILE"
    echo "$SERVER_DIR" >"$STATE_DIR/server.src"
    local up=0
    await_start "$PIDFILE" 300 ping_ok || up=$?
    case $up in
        0) say "running (pid $(cat "$PIDFILE")) on http://127.0.0.1:$PORT, data in $STATE_DIR/data" ;;
        1)
            say "server exited; last lines of $STATE_DIR/server.out and $LOG:"
            tail -n 20 "$STATE_DIR/server.out" "$LOG" >&2 || true
            ;;
        *) say "server did not answer /ping within 60 s; see $LOG" ;;
    esac
    return $((up != 0))
}

cmd_stop() {
    local pid
    if ! pid=$(running_pid); then
        rm -f "$PIDFILE"
        say "not running"
        return 0
    fi
    kill -TERM "$pid"
    await_exit "$pid" "$PIDFILE" 150 0.2
}

cmd_status() {
    local pid
    if pid=$(running_pid); then
        echo "running pid=$pid url=http://127.0.0.1:$PORT data=$STATE_DIR/data"
        return 0
    fi
    echo "not running"
    return 3
}

cmd_env() {
    cat <<EOF
export CLICKHOUSE_URL=http://127.0.0.1:$PORT
export CLICKHOUSE_USER=default
export CLICKHOUSE_PASSWORD=$PASSWORD
export CLICKHOUSE_DATABASE=default
EOF
}

case ${1:-} in
    start) cmd_start ;;
    stop) cmd_stop ;;
    restart) cmd_stop && cmd_start ;;
    status) cmd_status ;;
    env) cmd_env ;;
    logs) tail -n "${2:-100}" -F "$LOG" ;;
    reset) cmd_stop && rm -rf "$STATE_DIR/data" && say "data deleted" ;;
    test) ensure_venv && cd "$SERVER_DIR" && exec "$VENV/bin/python" -m pytest -q tests ;;
    *)
        sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//' >&2
        exit 2
        ;;
esac
