//! What a process with a split role (`--role api` or `--role redirect`) does differently at
//! start-up: the warning about what it cannot serve (README, "Split roles"). Role `api`'s check
//! of the link store against a click log is `super::lost_store::check_from_api`.

use crate::config::{Config, Role};

/// What a split-role process cannot serve, said once at start-up (README, "Split roles"):
/// the stats live in the dataflow's in-memory views, in the process that holds the click
/// log, and only role `all` serves them over HTTP.
pub(super) fn warn_about_split_role(cfg: &Config, dataflow: bool) {
    match cfg.server.role {
        Role::Api => tracing::warn!(
            "role api: this process holds no click log and runs no click dataflow, so the stats, export, report, live and anomaly endpoints answer 503 here and POST /v1/events is not served; run the process that holds the click log with role all to serve them (README, \"Split roles\")"
        ),
        Role::Redirect if dataflow => tracing::warn!(
            "role redirect: this process records clicks and runs the click dataflow but serves no API, so its stats are not reachable over HTTP (only through [redis] or [clickhouse] when configured); run it with role all to serve the stats (README, \"Split roles\")"
        ),
        _ => {}
    }
}
