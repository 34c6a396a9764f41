//! Dead letters: clicks the pipeline refuses, with a reason, handed to a sink the binary
//! provides and counted in `sluice_events_dead_lettered_total{reason}` (metrics facade;
//! the binary installs the Prometheus exporter) and in [`DeadLetterCounters`].
//!
//! A dead letter is never silently dropped: every refused record reaches the sink (if one
//! is configured) and the counter, once, in the batch that refused it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use sluice_schemas::ClickEvent;

/// Why a click was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum DeadLetterReason {
    /// Older than its partition's watermark minus the allowed lateness (or, for backfill,
    /// older than the longest retention), so applying it would touch evicted rollups.
    TooLate,
    /// Stamped later than the processing clock plus the clock-skew tolerance.
    Future,
    /// Fails validation (code syntax, timestamp range, nil event id).
    Invalid,
}

impl DeadLetterReason {
    /// All reasons.
    pub const ALL: [DeadLetterReason; 3] = [DeadLetterReason::TooLate, DeadLetterReason::Future, DeadLetterReason::Invalid];

    /// Metric label value: `too_late`, `future`, `invalid`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterReason::TooLate => "too_late",
            DeadLetterReason::Future => "future",
            DeadLetterReason::Invalid => "invalid",
        }
    }
}

/// A refused click.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Source partition.
    pub partition: u32,
    /// Offset within the partition.
    pub offset: u64,
    /// Why.
    pub reason: DeadLetterReason,
    /// Human-readable detail, lowercase (which field is invalid, the watermark it missed).
    pub detail: String,
    /// The event as received.
    pub event: ClickEvent,
}

/// Receives each batch of dead letters (called from worker threads; keep it cheap, e.g. a
/// channel send).
pub type DeadLetterSink = Arc<dyn Fn(&[DeadLetter]) + Send + Sync>;

/// Dead-letter counts of this process by reason (the same numbers the metric reports).
#[derive(Debug, Default)]
pub struct DeadLetterCounters {
    counts: [AtomicU64; 3],
}

impl DeadLetterCounters {
    /// Count for one reason since start.
    pub fn get(&self, reason: DeadLetterReason) -> u64 {
        self.counts[reason as usize].load(Ordering::Relaxed)
    }
    /// Sum over all reasons.
    pub fn total(&self) -> u64 {
        DeadLetterReason::ALL.iter().map(|r| self.get(*r)).sum()
    }
}

/// Hands one batch to the sink and updates counters and the metric, once per reason.
pub(crate) fn emit(batch: &[DeadLetter], counters: &DeadLetterCounters, sink: Option<&DeadLetterSink>) {
    if batch.is_empty() {
        return;
    }
    let mut by_reason = [0u64; 3];
    for d in batch {
        by_reason[d.reason as usize] += 1;
    }
    for r in DeadLetterReason::ALL {
        let n = by_reason[r as usize];
        if n > 0 {
            counters.counts[r as usize].fetch_add(n, Ordering::Relaxed);
            metrics::counter!("sluice_events_dead_lettered_total", "reason" => r.as_str()).increment(n);
        }
    }
    tracing::debug!(count = batch.len(), "clicks dead-lettered");
    if let Some(s) = sink {
        s(batch);
    }
}
