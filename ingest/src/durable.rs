//! The synchronous-durability path: `POST /v1/events` answers only after its events are in
//! the log, so a client retrying on error gets at-least-once delivery.

use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use sluice_schemas::ClickEvent;

use crate::IngestStats;
use crate::telemetry::ClicksLogged;
use crate::writer::EventLog;
use crate::{Error, Result};

/// Appends events to the click log and waits for durability. Cheap to clone.
#[derive(Debug, Clone)]
pub struct DurableAppender<L: EventLog> {
    log: L,
    /// The channel writer's counters, whose append failure a successful append clears.
    stats: Option<Arc<IngestStats>>,
}

impl<L: EventLog> DurableAppender<L> {
    /// An appender over `log` (usually the same [`sluice_connectors::click_log::ClickLog`]
    /// the channel writer uses; appends from both interleave safely).
    pub fn new(log: L) -> Self {
        Self { log, stats: None }
    }

    /// Shares the channel writer's counters (`/readyz`'s `click_log_writer`) when both append
    /// to the same log: an append here that stores at least one event clears their append
    /// failure (the log takes writes again), so readiness comes back without a click.
    pub fn with_stats(mut self, stats: Arc<IngestStats>) -> Self {
        self.stats = Some(stats);
        self
    }

    /// Appends `events` in one atomic, fsync'd batch on the blocking pool and returns their
    /// offsets; an empty vector returns an empty range without I/O.
    ///
    /// Errors: [`Error::Log`] when the log refuses the batch (nothing of it is stored),
    /// [`Error::Task`] when the blocking task could not run (runtime shutting down).
    pub async fn append_durable(&self, events: Vec<ClickEvent>) -> Result<Range<u64>> {
        self.append_durable_marked(events, false).await
    }

    /// Like [`Self::append_durable`], but the events are marked as backfill
    /// ([`EventLog::append_backfill`]): they bypass the lateness limit, not dedup.
    ///
    /// Errors: as [`Self::append_durable`]; [`Error::Log`] also when the log cannot carry
    /// the mark (nothing is stored then).
    pub async fn append_durable_backfill(&self, events: Vec<ClickEvent>) -> Result<Range<u64>> {
        self.append_durable_marked(events, true).await
    }

    /// [`Self::append_durable`] (`backfill == false`) or [`Self::append_durable_backfill`].
    pub async fn append_durable_marked(&self, events: Vec<ClickEvent>, backfill: bool) -> Result<Range<u64>> {
        let n = events.len() as u64;
        let started = Instant::now();
        let log = self.log.clone();
        let range = tokio::task::spawn_blocking(move || if backfill { log.append_backfill(&events) } else { log.append(&events) })
            .await
            .map_err(|e| Error::Task(e.to_string()))??;
        if n > 0 {
            ClicksLogged { source: "api", count: n, first_offset: range.start, elapsed: started.elapsed() }.emit();
            if let Some(stats) = &self.stats {
                stats.append_succeeded(crate::telemetry::RecoveredBy::Api);
            }
        }
        Ok(range)
    }
}
