#!/usr/bin/env bash
# Local Redis for tests and development: a private redis-server on 127.0.0.1 (Debian's
# `redis-server` package), without persistence (RDB and AOF off): the hot views are rebuilt
# from the dataflow's change stream and the link cache from the link store.
#
# Usage: infra/services/redis.sh install|start|stop|restart|status|env|app-env|logs|flush
#   install   apt-get install redis-server if `redis-server` is missing
#   start     install if needed, start the server, wait until it answers PING
#   stop      SHUTDOWN NOSAVE (SIGTERM, then SIGKILL after 10 s)
#   status    exit 0 if it answers PING (prints the URL), 3 if not
#   env       print `export SLUICE_REDIS_URL=...` for the tests
#   app-env   print `export SLUICE__REDIS__URL=...` for `sluice serve` (infra/dev env)
#   logs      tail the server log
#   flush     FLUSHALL (tests use their own key prefixes and never need this)
#
# Environment (all optional):
#   SLUICE_REDIS_PORT  port on 127.0.0.1 (default 16379, away from Redis's 6379)
#   SLUICE_REDIS_DIR   working directory: log, pid file (default $XDG_CACHE_HOME/sluice/redis)
set -euo pipefail

PORT=${SLUICE_REDIS_PORT:-16379}
STATE_DIR=${SLUICE_REDIS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sluice/redis}
PIDFILE=$STATE_DIR/redis.pid
LOG=$STATE_DIR/redis.log

say() { printf 'redis: %s\n' "$*" >&2; }
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../service-lib.sh"

cmd_install() {
    command -v redis-server >/dev/null && command -v redis-cli >/dev/null && return 0
    if [[ $(id -u) != 0 ]]; then
        say "redis-server missing and not root: run 'sudo apt-get install -y redis-server'"
        return 1
    fi
    say "installing the Debian redis-server package"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >/dev/null
}

ping_ok() {
    [[ $(redis-cli -h 127.0.0.1 -p "$PORT" ping 2>/dev/null || true) == PONG ]]
}

running_pid() { pid_from_file "$PIDFILE" redis-server; }

cmd_start() {
    cmd_install
    mkdir -p "$STATE_DIR"
    if ping_ok; then
        if running_pid >/dev/null; then
            say "already running on redis://127.0.0.1:$PORT"
            return 0
        fi
        say "127.0.0.1:$PORT is served by another Redis (not ours); set SLUICE_REDIS_PORT"
        return 1
    fi
    # --daemonize writes the pid file; no RDB snapshots, no AOF, loopback only.
    redis-server --port "$PORT" --bind 127.0.0.1 --protected-mode yes --save "" --appendonly no \
        --daemonize yes --pidfile "$PIDFILE" --logfile "$LOG" --dir "$STATE_DIR" \
        --maxclients 4000 >/dev/null
    for _ in $(seq 1 100); do
        if ping_ok; then
            say "running on redis://127.0.0.1:$PORT (no persistence)"
            return 0
        fi
        sleep 0.1
    done
    say "did not answer PING within 10 s; last lines of $LOG:"
    tail -n 20 "$LOG" >&2 || true
    return 1
}

cmd_stop() {
    local pid
    if ! pid=$(running_pid); then
        rm -f "$PIDFILE"
        say "not running"
        return 0
    fi
    redis-cli -h 127.0.0.1 -p "$PORT" shutdown nosave >/dev/null 2>&1 || kill -TERM "$pid" 2>/dev/null || true
    await_exit "$pid" "$PIDFILE" 100 0.1
}

cmd_status() {
    if ping_ok; then
        echo "running url=redis://127.0.0.1:$PORT/"
        return 0
    fi
    echo "not running"
    return 3
}

case ${1:-} in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    restart) cmd_stop && cmd_start ;;
    status) cmd_status ;;
    env) echo "export SLUICE_REDIS_URL=redis://127.0.0.1:$PORT/" ;;
    app-env) echo "export SLUICE__REDIS__URL=redis://127.0.0.1:$PORT/" ;;
    logs) tail -n "${2:-100}" -F "$LOG" ;;
    flush) redis-cli -h 127.0.0.1 -p "$PORT" flushall ;;
    *)
        sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//' >&2
        exit 2
        ;;
esac
