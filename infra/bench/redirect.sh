#!/usr/bin/env bash
# The redirect benchmark in one command: installs nginx and wrk (Debian) when missing, builds
# the release binary and runs `sluice bench redirect` (sluice vs nginx's static 302 on
# loopback; see BENCHMARKS.md, "Redirect").
#
#   ./infra/bench/redirect.sh                      defaults: 3 rounds x 10 s per target
#   ./infra/bench/redirect.sh --duration 5s        extra arguments go to `sluice bench redirect`
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
cd "$REPO_DIR"

ensure_apt_packages nginx wrk
cargo build --release --bin sluice
exec ./target/release/sluice bench redirect "$@"
