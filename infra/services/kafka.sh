#!/usr/bin/env bash
# Local Kafka-API broker for tests and development: tansu 0.6.0 (a Kafka-compatible broker in
# Rust, https://crates.io/crates/tansu) with SQLite storage. No Apache Kafka can be installed on
# our machines; tansu speaks the protocol librdkafka needs (topics, acks=all, idempotent
# producer, consumer groups, committed offsets). It has no transactions (no EndTxn), which
# Sluice does not use.
#
# Usage: infra/services/kafka.sh start|stop|restart|status|env|logs|reset|install|build-deps
#   install     cargo install tansu when the binary is missing (first time ~20 min on 2 cores,
#               ~1.7 GB RAM; instant afterwards)
#   start       install if needed, start the broker on 127.0.0.1, wait until it answers
#   stop        stop it (SIGTERM, then SIGKILL after 30 s)
#   status      exit 0 if running (prints pid and address), 3 if not
#   env         print `export KAFKA_BROKERS=...` and the binary for the outage tests
#   app-env     print `export KAFKA_BROKERS=...` for `sluice serve` (infra/dev env)
#   logs        tail the broker log
#   reset       stop and delete the broker's data (topics, offsets)
#   test-setup  reset + start: infra/test runs every test run on an empty broker (tests use
#               fresh topics anyway; an old tansu.db only grows and slows the broker)
#   build-deps  install what building librdkafka (rdkafka's cmake-build) needs: cmake and the
#               libcurl headers (librdkafka 2.12 includes curl.h even without curl, issue
#               confluentinc/librdkafka#5135); uses apt-get, skips what is present
#
# Environment (all optional):
#   SLUICE_KAFKA_PORT   port on 127.0.0.1 (default 19092, away from Kafka's 9092)
#   SLUICE_KAFKA_DIR    working directory: tansu.db, log, pid file (default $XDG_CACHE_HOME/sluice/kafka)
#   SLUICE_TANSU_ROOT   cargo install root of tansu (default $XDG_CACHE_HOME/sluice/tansu)
set -euo pipefail

CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/sluice
STATE_DIR=${SLUICE_KAFKA_DIR:-$CACHE/kafka}
TANSU_ROOT=${SLUICE_TANSU_ROOT:-$CACHE/tansu}
TANSU=$TANSU_ROOT/bin/tansu
TANSU_VERSION=0.6.0
PORT=${SLUICE_KAFKA_PORT:-19092}
PIDFILE=$STATE_DIR/broker.pid
LOG=$STATE_DIR/broker.log

say() { printf 'kafka: %s\n' "$*" >&2; }
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../service-lib.sh"

cmd_install() {
    if [[ -x $TANSU ]] && "$TANSU" --version 2>/dev/null | grep -q "$TANSU_VERSION"; then
        return 0
    fi
    say "installing tansu $TANSU_VERSION into $TANSU_ROOT (takes ~20 minutes the first time)"
    mkdir -p "$TANSU_ROOT"
    # The default build has no storage engine; these features give sqlite (libsql) and postgres.
    cargo install tansu --version "$TANSU_VERSION" --locked --features dynostore,libsql,postgres \
        --root "$TANSU_ROOT" >"$TANSU_ROOT/build.log" 2>&1 || {
        say "cargo install failed; last lines of $TANSU_ROOT/build.log:"
        tail -n 30 "$TANSU_ROOT/build.log" >&2
        return 1
    }
}

running_pid() { pid_from_file "$PIDFILE" "tansu broker"; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }

broker_up() { port_open && broker_answers; }

# The broker answers the Kafka protocol (metadata request), not just TCP.
broker_answers() {
    timeout 5 "$TANSU" topic list --broker "tcp://127.0.0.1:$PORT" >/dev/null 2>&1
}

cmd_start() {
    cmd_install
    mkdir -p "$STATE_DIR"
    if pid=$(running_pid); then
        if broker_answers; then
            say "already running (pid $pid) on 127.0.0.1:$PORT"
            return 0
        fi
        say "running (pid $pid) but not answering: restarting it"
        cmd_stop
    fi
    if port_open; then
        say "port $PORT on 127.0.0.1 is taken by another process; set SLUICE_KAFKA_PORT"
        return 1
    fi
    (
        # tansu reads ./.env: run from its own directory, and keep tansu's own env variables
        # (CLUSTER_ID, LISTENER_URL, STORAGE_ENGINE, SCHEMA_REGISTRY, ...) from leaking in.
        cd "$STATE_DIR"
        exec env -u CLUSTER_ID -u LISTENER_URL -u ADVERTISED_LISTENER_URL -u STORAGE_ENGINE \
            -u SCHEMA_REGISTRY -u DATA_LAKE -u OTEL_EXPORTER_OTLP_ENDPOINT \
            RUST_LOG="${SLUICE_KAFKA_LOG:-warn}" setsid "$TANSU" broker \
            --listener-url "tcp://127.0.0.1:$PORT" \
            --advertised-listener-url "tcp://127.0.0.1:$PORT" \
            --storage-engine "sqlite://tansu.db" \
            </dev/null >>"$LOG" 2>&1
    ) &
    echo $! >"$PIDFILE"
    local up=0
    await_start "$PIDFILE" 150 broker_up || up=$?
    case $up in
        0) say "running (pid $(cat "$PIDFILE")) on 127.0.0.1:$PORT, data in $STATE_DIR/tansu.db" ;;
        1)
            say "broker exited; last lines of $LOG:"
            tail -n 20 "$LOG" >&2 || true
            ;;
        *) say "broker did not answer within 30 s; see $LOG" ;;
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
        echo "running pid=$pid brokers=127.0.0.1:$PORT data=$STATE_DIR/tansu.db"
        return 0
    fi
    echo "not running"
    return 3
}

cmd_env() {
    cat <<EOF
export KAFKA_BROKERS=127.0.0.1:$PORT
export SLUICE_TANSU_BIN=$TANSU
EOF
}

cmd_app_env() {
    echo "export KAFKA_BROKERS=127.0.0.1:$PORT"
}

cmd_build_deps() {
    local missing=()
    command -v cmake >/dev/null 2>&1 || missing+=(cmake)
    if ! printf '#include <curl/curl.h>\n' | cc -E - >/dev/null 2>&1; then
        missing+=(libcurl4-openssl-dev)
    fi
    if ((${#missing[@]} == 0)); then
        say "librdkafka build prerequisites present"
        return 0
    fi
    say "installing ${missing[*]}"
    local sudo=()
    ((EUID == 0)) || sudo=(sudo)
    "${sudo[@]}" apt-get install -y "${missing[@]}" >/dev/null
}

case ${1:-} in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    restart) cmd_stop && cmd_start ;;
    status) cmd_status ;;
    env) cmd_env ;;
    app-env) cmd_app_env ;;
    logs) tail -n "${2:-100}" -F "$LOG" ;;
    reset) cmd_stop && rm -f "$STATE_DIR"/tansu.db* && say "data deleted" ;;
    test-setup) cmd_stop && rm -f "$STATE_DIR"/tansu.db* && cmd_start ;;
    build-deps) cmd_build_deps ;;
    *)
        sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//' >&2
        exit 2
        ;;
esac
