//! HTTP-level tests of the link API and the redirect path against the real stores
//! (SQLite always; PostgreSQL with `--features integration-tests` and
//! `SLUICE_POSTGRES_URL`), plus real-socket and real-binary tests.

mod admin;
mod admin_blocklist;
mod admin_c25;
mod admin_redis;
mod build_paths;
mod cases;
#[path = "../support/child.rs"]
#[allow(dead_code)] // this target does not poll `/healthz` or SIGKILL its children (`kill9`)
mod child;
mod cli;
mod cli_data_dir;
mod cli_messages;
mod cli_run;
mod cluster_config;
mod cluster_settings;
mod concurrency;
mod config_sources;
mod cross_origin;
mod doc_links;
mod empty_link_store;
mod error_codes;
mod full_disk;
mod harness;
mod hostile;
#[cfg(target_os = "linux")]
mod huge_pages;
mod idempotency;
mod import_data_dir;
mod import_target;
mod intake_bounds;
mod links_api;
mod links_cursor;
mod links_org;
mod links_requests;
mod loadgen_exit;
#[path = "../support/old_blocklist.rs"]
mod old_blocklist;
mod props;
mod redirect;
mod restored_store;
mod socket;
mod split_roles;
#[cfg(feature = "integration-tests")]
mod start_gate;
mod stop;
mod store_connect;
#[cfg(feature = "integration-tests")]
mod store_gone;
#[cfg(feature = "integration-tests")]
mod store_pool_timeout;
mod timestamps;
mod visitor_secret;
