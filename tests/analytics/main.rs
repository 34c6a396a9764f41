//! The analytics path end to end: redirects and `POST /v1/events` → click log → the real
//! dataflow → `GET /v1/links/{code}/stats` and `/v1/stats/summary`, in-process (a complete
//! [`sluice::job::system::System`]) and through the real binary (restart, demo).

mod blocklist_feed;
mod cases;
#[cfg(feature = "integration-tests")]
mod ch_backfill;
mod checkpoint_stop;
#[path = "../support/child.rs"]
mod child;
mod click_log_damage;
#[cfg(feature = "integration-tests")]
#[path = "../support/clickhouse.rs"]
mod clickhouse;
mod config_blocklist;
mod damaged;
mod damaged_jobs;
mod demo_config;
mod demo_interrupt;
mod drain_bound;
mod errors;
mod exact;
mod harness;
mod history;
mod idle;
mod link_store_write_back;
mod listen;
mod loadgen_truth;
mod lost_store;
#[path = "../support/old_blocklist.rs"]
mod old_blocklist;
mod org_summary;
#[cfg(feature = "integration-tests")]
mod pg;
mod process;
mod readiness;
mod reports;
#[cfg(feature = "integration-tests")]
mod sinks;
#[cfg(feature = "integration-tests")]
mod sinks_restore;
mod tag_history;
