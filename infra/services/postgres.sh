#!/usr/bin/env bash
# Local PostgreSQL for tests and development: a private cluster on 127.0.0.1 (its own data
# directory and port, so it never touches a system cluster), from Debian's `postgresql`.
#
# Usage: infra/services/postgres.sh install|start|stop|restart|status|env|app-env|test-setup|logs|reset
#   install        apt-get install postgresql if its server binaries are missing
#   start          install if needed, init the cluster on first use, start it, wait until it
#                  accepts connections, create role `sluice` and databases `sluice`, `sluice_test`
#   stop           stop the cluster (fast shutdown)
#   status         exit 0 if it accepts connections, 3 if not
#   env            print `export SLUICE_POSTGRES_URL=...` (the test database) for the tests
#   app-env        print `export SLUICE__STORE__URL=...` (the dev database) for `sluice serve`
#   test-setup     drop and re-create database `sluice_test` (infra/test does this every run;
#                  alias reset-test-db)
#   logs           tail the server log
#   reset          stop and delete the cluster directory
#
# PostgreSQL refuses to run as root: as root the cluster runs as the `postgres` OS user (created
# by the Debian package) and lives under that user's home; otherwise it runs as you.
#
# Environment (all optional):
#   SLUICE_PG_PORT  port on 127.0.0.1 (default 54329, away from the system's 5432)
#   SLUICE_PG_DIR   cluster directory (default: as root /var/lib/postgresql/sluice/pg-PORT,
#                   else ${XDG_CACHE_HOME:-$HOME/.cache}/sluice/pg-PORT)
set -euo pipefail

PORT=${SLUICE_PG_PORT:-54329}
if [[ $(id -u) == 0 ]]; then
    DEFAULT_DIR=/var/lib/postgresql/sluice/pg-$PORT
else
    DEFAULT_DIR=${XDG_CACHE_HOME:-$HOME/.cache}/sluice/pg-$PORT
fi
PG_DIR=${SLUICE_PG_DIR:-$DEFAULT_DIR}
DATA=$PG_DIR/data
LOG=$PG_DIR/server.log
ROLE=sluice
PASSWORD=sluice

say() { printf 'postgres: %s\n' "$*" >&2; }

# Runs a command as the cluster's OS user.
as_pg() {
    if [[ $(id -u) == 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

pg_bin_dir() {
    local d
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    [[ -n $d && -x $d/initdb && -x $d/pg_ctl ]] || return 1
    echo "$d"
}

cmd_install() {
    if pg_bin_dir >/dev/null && command -v psql >/dev/null; then
        return 0
    fi
    if [[ $(id -u) != 0 ]]; then
        say "PostgreSQL server binaries missing and not root: run 'sudo apt-get install -y postgresql'"
        return 1
    fi
    say "installing the Debian postgresql package"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    pg_bin_dir >/dev/null || { say "postgresql installed but no server binaries found"; return 1; }
}

# psql as the superuser over the cluster's private socket.
psql_su() {
    local bin
    bin=$(pg_bin_dir)
    as_pg "$bin/psql" -X -q -h "$PG_DIR" -p "$PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 "$@"
}

ready() {
    local bin
    bin=$(pg_bin_dir) || return 1
    "$bin/pg_isready" -q -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -t 1
}

ensure_dir() {
    if [[ $(id -u) == 0 ]]; then
        mkdir -p "$PG_DIR"
        chown postgres:postgres "$PG_DIR"
        # the postgres user must be able to reach the directory
        local parent
        parent=$(dirname "$PG_DIR")
        while [[ $parent != / ]]; do
            if ! runuser -u postgres -- test -x "$parent"; then
                say "the postgres user cannot enter $parent; set SLUICE_PG_DIR to a directory it can reach"
                return 1
            fi
            parent=$(dirname "$parent")
        done
    else
        mkdir -p "$PG_DIR"
    fi
    chmod 700 "$PG_DIR"
}

ensure_roles() {
    psql_su <<SQL
SELECT 'CREATE ROLE $ROLE LOGIN CREATEDB PASSWORD ''$PASSWORD'''
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$ROLE') \gexec
SELECT 'CREATE DATABASE $ROLE OWNER $ROLE'
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '$ROLE') \gexec
SELECT 'CREATE DATABASE ${ROLE}_test OWNER $ROLE'
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '${ROLE}_test') \gexec
SQL
}

cmd_start() {
    cmd_install
    local bin
    bin=$(pg_bin_dir)
    if ready; then
        if [[ -f $DATA/postmaster.pid ]]; then
            ensure_roles
            say "already running on 127.0.0.1:$PORT ($DATA)"
            return 0
        fi
        say "127.0.0.1:$PORT is served by another PostgreSQL (not $DATA); set SLUICE_PG_PORT"
        return 1
    fi
    ensure_dir
    if [[ ! -f $DATA/PG_VERSION ]]; then
        say "initializing a new cluster in $DATA"
        # trust: the server listens on 127.0.0.1 and a private socket only.
        as_pg "$bin/initdb" -D "$DATA" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >/dev/null
    fi
    # Retried: after a crash, orphaned backends of the old postmaster keep its lock for a
    # moment (they exit once they notice the postmaster is gone).
    local attempt
    for attempt in 1 2 3 4 5 6; do
        if as_pg "$bin/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 \
            -o "-p $PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null 2>&1; then
            break
        fi
        if ((attempt == 6)); then
            say "could not start; last lines of $LOG:"
            tail -n 20 "$LOG" >&2 || true
            return 1
        fi
        sleep 2
    done
    for _ in $(seq 1 100); do
        ready && break
        sleep 0.1
    done
    ready || { say "not accepting connections; see $LOG"; return 1; }
    ensure_roles
    say "running on 127.0.0.1:$PORT ($DATA)"
}

cmd_stop() {
    local bin
    bin=$(pg_bin_dir) || { say "not installed"; return 0; }
    if [[ -f $DATA/postmaster.pid ]]; then
        as_pg "$bin/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null && say "stopped"
    else
        say "not running"
    fi
}

cmd_status() {
    if ready; then
        echo "running url=postgres://$ROLE:$PASSWORD@127.0.0.1:$PORT/$ROLE data=$DATA"
        return 0
    fi
    echo "not running"
    return 3
}

cmd_reset_test_db() {
    psql_su <<SQL
DROP DATABASE IF EXISTS ${ROLE}_test WITH (FORCE);
CREATE DATABASE ${ROLE}_test OWNER $ROLE;
SQL
}

case ${1:-} in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    restart) cmd_stop && cmd_start ;;
    status) cmd_status ;;
    env) echo "export SLUICE_POSTGRES_URL=postgres://$ROLE:$PASSWORD@127.0.0.1:$PORT/${ROLE}_test" ;;
    app-env) echo "export SLUICE__STORE__URL=postgres://$ROLE:$PASSWORD@127.0.0.1:$PORT/$ROLE" ;;
    reset-test-db | test-setup) cmd_reset_test_db ;;
    logs) tail -n "${2:-100}" -F "$LOG" ;;
    reset) cmd_stop && rm -rf "$PG_DIR" && say "cluster deleted" ;;
    *)
        sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//' >&2
        exit 2
        ;;
esac
