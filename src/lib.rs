//! The `sluice` binary's library half: CLI, layered configuration and the wiring of
//! store → API → redirect → ingest, kept in a library so tests can build the exact router
//! `sluice serve` runs.
//!
//! | module | what |
//! |---|---|
//! | [`anomalies`] | the anomaly store, its writer behind the dataflow's sink, anomaly/webhook routes, `[webhooks]` |
//! | [`cli`] | clap definitions of every subcommand and flag |
//! | [`config`] | [`config::Config`]: default.toml → `--config` → `SLUICE__…` env → flags |
//! | [`serve`] | `sluice serve`: [`serve::build_stack`] (router without a socket) and [`serve::run`] |
//! | [`router`] | composing API, redirect and health routes by role; HTTP metrics |
//! | [`http_server`] | the HTTP/1.1 server of `serve`: redirect fast path ahead of the router |
//! | [`start_gate`] | the readiness gate: 503 `starting` until the start-up work (`[links] blocklist`) is done |
//! | [`health`] | `/healthz`, `/readyz`, `/metrics` |
//! | [`telemetry`] | tracing and the Prometheus recorder |
//! | [`visitor_secret`] | the visitor-id secret in the data directory |
//! | [`log_tail`] | `sluice log tail` |
//! | [`migrate`] | `sluice migrate`: which link store, checked before anything is created |
//! | [`log_open`] | the message of a click log a command could not open |
//! | [`stdout`] | command output: a closed standard output ends the command quietly (exit 0) |
//! | [`loadgen`] | `sluice loadgen`: realistic traffic and its exact ground truth (also a library for `sluice demo`) |
//! | [`import`] | `sluice import`: backfill from NDJSON events or combined-log access logs |
//! | [`job`] | the click dataflow inside `serve` (log tail, metadata feed) and the whole process ([`job::system::System`]) |
//! | [`kafka`] | Kafka as the click event log: spill-first producer for intake (`[kafka] brokers`) |
//! | [`demo`] | `sluice demo`: the whole system on generated traffic, checked against ground truth |
#![deny(missing_docs)]

pub mod anomalies;
pub mod auto_actions;
pub mod bench;
pub mod cli;
pub mod config;
pub mod demo;
pub mod health;
pub mod http_listener;
pub mod http_server;
pub mod import;
pub mod intake_gate;
pub mod job;
pub mod kafka;
pub mod loadgen;
pub mod log_open;
pub mod log_reset;
pub mod log_tail;
pub mod migrate;
pub mod router;
pub mod sched;
pub mod serve;
pub mod sinks;
pub mod start_gate;
pub mod stdout;
pub mod telemetry;
#[cfg(test)]
mod test_fs;
pub mod visitor_secret;
