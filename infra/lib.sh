# Shared helpers of infra/test and infra/dev (sourced, not run).
# shellcheck shell=bash

INFRA_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$INFRA_DIR/.." && pwd)

# Debian packages the tests and benchmarks use; installed only when missing.
# cmake + libcurl headers: rdkafka's bundled librdkafka build (its 2.12 cmake build includes
# curl.h even without curl, confluentinc/librdkafka#5135).
SLUICE_APT_PACKAGES=(postgresql redis-server nginx wrk cmake libcurl4-openssl-dev)

log() { printf '==> %s\n' "$*" >&2; }

# Installs the given Debian packages that are not installed yet (apt-get update only then).
ensure_apt_packages() {
    local missing=() p
    for p in "$@"; do
        if [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true) != "install ok installed" ]]; then
            missing+=("$p")
        fi
    done
    ((${#missing[@]} == 0)) && return 0
    local sudo=()
    if [[ $(id -u) != 0 ]]; then
        command -v sudo >/dev/null || { log "missing packages ${missing[*]} and not root (no sudo)"; return 1; }
        sudo=(sudo)
    fi
    log "installing Debian packages: ${missing[*]}"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# The service scripts to use, in name order: infra/services/<name>.sh. SLUICE_SERVICES (space
# separated names, e.g. "postgres redis") restricts the set.
service_scripts() {
    local s name
    for s in "$INFRA_DIR"/services/*.sh; do
        [[ -e $s ]] || continue
        name=$(basename "$s" .sh)
        if [[ -n ${SLUICE_SERVICES:-} && " $SLUICE_SERVICES " != *" $name "* ]]; then
            continue
        fi
        echo "$s"
    done
}

# Whether service script $1 implements subcommand $2 (a `name)` arm in its case statement).
service_has() {
    grep -Eq "^[[:space:]]*([A-Za-z0-9_-]+[[:space:]]*\|[[:space:]]*)*$2\)" "$1"
}
