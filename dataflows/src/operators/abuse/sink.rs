//! `SinkAnomalies`: hands the detectors' events to the binary's [`AnomalySink`].
//!
//! * **Input**: updates, [`Anomaly`] events (pipeline; each worker delivers its own).
//! * **Output**: none. It publishes its input frontier (every epoch below it has been
//!   delivered) for [`crate::pipeline::PipelineHandle::sync`].
//! * **State**: none. Counts go to `sluice_anomalies_total{kind, severity, status}` and
//!   [`AnomalyCounters`], once per batch.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sluice_schemas::Anomaly;
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;

use crate::anomaly::{AnomalyCounters, AnomalySink, emit};

/// Extension trait: deliver anomaly events (module docs).
pub trait SinkAnomalies {
    /// Sends every batch to `sink` (if any), counts it, and stores the input frontier in
    /// `progress` (`u64::MAX` once the input is closed).
    fn sink_anomalies(self, counters: Arc<AnomalyCounters>, sink: Option<AnomalySink>, progress: Arc<AtomicU64>);
}

impl SinkAnomalies for StreamVec<'_, u64, Anomaly> {
    fn sink_anomalies(self, counters: Arc<AnomalyCounters>, sink: Option<AnomalySink>, progress: Arc<AtomicU64>) {
        self.sink(Pipeline, "SinkAnomalies", move |(input, frontier)| {
            input.for_each(|_cap, data| emit(data, &counters, sink.as_ref()));
            let f = frontier.frontier().iter().copied().min().unwrap_or(u64::MAX);
            progress.store(f, Ordering::Release);
        });
    }
}
