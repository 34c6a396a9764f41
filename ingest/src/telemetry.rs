//! Telemetry events of click intake: each `emit()` updates the metric and, where useful,
//! logs once. Emitted per batch, never per event (drops are per event but are the exception).
//!
//! Metrics (Prometheus names):
//! - `sluice_click_events_logged_total{source}`: events made durable in the click log;
//!   `source` = `redirect` (the channel writer) or `api` (`append_durable`).
//! - `sluice_click_events_dropped_total{reason}`: events lost; `reason` = `channel_full`
//!   (intake channel at capacity), `closed` (writer gone, shutting down) or `log_error`
//!   (the log kept failing after all retries).
//! - `sluice_click_log_batches_total`: group commits by the channel writer.
//! - `sluice_click_log_write_errors_total`: failed append attempts (each retry counts).
//!
//! Logs of a failing log (a full disk retried for minutes): the first failed attempt of a
//! failure episode — from a failed append until an append or probe succeeds again — is a
//! warning, the later ones are debug lines (the metric counts each); a batch dropped after
//! its last attempt is an error every time (clicks are lost); the success that ends the
//! episode logs one info line with the episode's failed attempts ([`LogWritesRecovered`]).

use std::time::Duration;

/// Label value of a drop reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The bounded intake channel was full.
    ChannelFull,
    /// The writer task has stopped.
    Closed,
    /// The click log failed persistently.
    LogError,
}

impl DropReason {
    /// The `reason` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::ChannelFull => "channel_full",
            DropReason::Closed => "closed",
            DropReason::LogError => "log_error",
        }
    }
}

/// Events were lost.
pub struct ClicksDropped {
    pub reason: DropReason,
    pub count: u64,
}

impl ClicksDropped {
    pub fn emit(&self) {
        metrics::counter!("sluice_click_events_dropped_total", "reason" => self.reason.as_str()).increment(self.count);
    }
}

/// A batch became durable.
pub struct ClicksLogged {
    pub source: &'static str,
    pub count: u64,
    pub first_offset: u64,
    pub elapsed: Duration,
}

impl ClicksLogged {
    pub fn emit(&self) {
        metrics::counter!("sluice_click_events_logged_total", "source" => self.source).increment(self.count);
        if self.source == "redirect" {
            metrics::counter!("sluice_click_log_batches_total").increment(1);
        }
        tracing::trace!(
            source = self.source,
            count = self.count,
            first_offset = self.first_offset,
            elapsed_ms = self.elapsed.as_secs_f64() * 1e3,
            "clicks logged"
        );
    }
}

/// One append attempt failed.
pub struct LogWriteFailed<'a> {
    pub error: &'a str,
    pub attempt: u32,
    pub max_attempts: u32,
    pub batch: usize,
    /// The first failed attempt of its failure episode (module docs): a warning, not a
    /// debug line.
    pub first_in_episode: bool,
}

impl LogWriteFailed<'_> {
    pub fn emit(&self) {
        metrics::counter!("sluice_click_log_write_errors_total").increment(1);
        let error = self.error;
        if self.attempt >= self.max_attempts {
            tracing::error!(%error, attempt = self.attempt, batch = self.batch, "click log append failed; dropping batch");
        } else if self.first_in_episode {
            tracing::warn!(%error, attempt = self.attempt, batch = self.batch, "click log append failed; retrying");
        } else {
            tracing::debug!(%error, attempt = self.attempt, batch = self.batch, "click log append failed; retrying");
        }
    }
}

/// What ended a failure episode of the click log's writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveredBy {
    /// An append of the writer.
    Append,
    /// The writer's probe (`EventLog::probe`).
    Probe,
    /// A `POST /v1/events` append ([`crate::DurableAppender::with_stats`]).
    Api,
}

impl RecoveredBy {
    /// The `by` field value.
    pub fn as_str(self) -> &'static str {
        match self {
            RecoveredBy::Append => "append",
            RecoveredBy::Probe => "probe",
            RecoveredBy::Api => "api",
        }
    }
}

/// The click log takes writes again: the end of a failure episode (module docs), logged once.
pub struct LogWritesRecovered {
    /// Failed attempts (appends and probes) in the episode.
    pub failed_attempts: u64,
    pub by: RecoveredBy,
}

impl LogWritesRecovered {
    pub fn emit(&self) {
        let failed_attempts = self.failed_attempts;
        tracing::info!(failed_attempts, by = self.by.as_str(), "the click log takes writes again: recovered after {failed_attempts} failed attempts");
    }
}

/// `err: cause: cause` on one line.
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut s = err.to_string();
    let mut src = err.source();
    while let Some(e) = src {
        s.push_str(": ");
        s.push_str(&e.to_string());
        src = e.source();
    }
    s
}
