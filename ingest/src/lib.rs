//! Click intake: how clicks get from the redirect (and `POST /v1/events`) into the durable
//! click log that the dataflow reads.
//!
//! | module | what |
//! |---|---|
//! | [`channel`] | [`click_channel`]: bounded, never-blocking hand-off from the redirect |
//! | [`writer`] | [`spawn_log_writer`]: group-commits the channel into the log, retries, drains on shutdown |
//! | [`durable`] | [`DurableAppender::append_durable`]: append and wait for fsync (API intake) |
//! | [`event_input`] | the explicit event shape of `POST /v1/events` and imports, validated into `ClickEvent`s |
//! | [`http`] | [`events_router`]: `POST /v1/events` (auth, JSON array / NDJSON, per-event rejections) |
//! | [`import`] | parsers of `sluice import`: NDJSON events and combined-log-format access logs |
//!
//! Wiring (in the binary):
//! ```no_run
//! # async fn wire(dir: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
//! use sluice_connectors::click_log::ClickLog;
//! use sluice_ingest::{click_channel, spawn_log_writer, DurableAppender, LogWriterConfig};
//!
//! let log = ClickLog::open(dir)?;
//! let (sender, receiver) = click_channel(65_536);
//! let writer = spawn_log_writer(receiver, log.clone(), LogWriterConfig::default());
//! let api = DurableAppender::new(log.clone());
//! // hand `sender` clones to the redirect and `api` to the events endpoint; on shutdown
//! // drop every sender, then:
//! drop(sender);
//! let summary = writer.await?;
//! # let _ = (api, summary); Ok(()) }
//! ```
//!
//! Metrics are listed in the `telemetry` module docs: `sluice_click_events_logged_total`,
//! `sluice_click_events_dropped_total{reason}`, `sluice_click_log_batches_total`,
//! `sluice_click_log_write_errors_total`.
#![deny(missing_docs)]

pub mod channel;
pub mod durable;
pub mod error;
pub mod event_input;
pub mod http;
pub mod import;
pub mod pending;
mod telemetry;
pub mod writer;

pub use channel::{ClickReceiver, ClickSender, IngestStats, IngestStatsSnapshot, click_channel};
pub use durable::DurableAppender;
pub use error::{Error, Result};
pub use http::{EventsConfig, EventsState, events_router};
pub use pending::PendingFloor;
pub use writer::{AppendPolicy, EventLog, LogWriterConfig, WriterSummary, spawn_log_writer};

#[cfg(test)]
mod full_disk_tests;
#[cfg(test)]
mod tests;
