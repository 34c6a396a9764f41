# Process helpers shared by the service scripts in infra/services/ (sourced, not run; kept
# outside that folder because infra/test runs every script in it). Each script defines
# `say` (messages prefixed with the service's name) before using these.
# shellcheck shell=bash

# pid_from_file PIDFILE PATTERN: prints the pid in PIDFILE when that process is alive and its
# command line contains PATTERN (a guard against a recycled pid); returns 1 otherwise.
pid_from_file() {
    local pidfile=$1 pattern=$2 pid
    [[ -f $pidfile ]] || return 1
    pid=$(cat "$pidfile")
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$pattern" || return 1
    echo "$pid"
}

# await_exit PID PIDFILE TRIES STEP: waits up to TRIES x STEP seconds for PID to exit (after
# the caller asked it to), then SIGKILLs it; removes PIDFILE either way.
await_exit() {
    local pid=$1 pidfile=$2 tries=$3 step=$4 _
    for _ in $(seq 1 "$tries"); do
        kill -0 "$pid" 2>/dev/null || { rm -f "$pidfile"; say "stopped"; return 0; }
        sleep "$step"
    done
    say "no exit after $(awk "BEGIN { print $tries * $step }") s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$pidfile"
}

# await_start PIDFILE TRIES CHECK...: polls CHECK (a command) every 0.2 s, up to TRIES times,
# while the process in PIDFILE lives. Returns 0 once CHECK succeeds, 1 when the process
# exited first (PIDFILE removed), 2 on timeout.
await_start() {
    local pidfile=$1 tries=$2 _
    shift 2
    for _ in $(seq 1 "$tries"); do
        "$@" && return 0
        if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
            rm -f "$pidfile"
            return 1
        fi
        sleep 0.2
    done
    return 2
}
