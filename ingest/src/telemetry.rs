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
    pub error: &'a dyn std::error::Error,
    pub attempt: u32,
    pub max_attempts: u32,
    pub batch: usize,
}

impl LogWriteFailed<'_> {
    pub fn emit(&self) {
        metrics::counter!("sluice_click_log_write_errors_total").increment(1);
        let error = error_chain(self.error);
        if self.attempt >= self.max_attempts {
            tracing::error!(%error, attempt = self.attempt, batch = self.batch, "click log append failed; dropping batch");
        } else {
            tracing::warn!(%error, attempt = self.attempt, batch = self.batch, "click log append failed; retrying");
        }
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
