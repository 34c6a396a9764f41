//! `DeadLetterSink`: hands dead letters produced inside the graph to the binary's sink.
//!
//! * **Input**: updates, [`DeadLetter`]s (pipeline; each worker reports its own).
//! * **Output**: none.
//! * **State**: none. Counts go to `sluice_events_dead_lettered_total{reason}` and the
//!   pipeline's [`DeadLetterCounters`], once per batch.

use std::sync::Arc;

use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;

use crate::dead_letter::{DeadLetter, DeadLetterCounters, DeadLetterSink, emit};

/// Extension trait: deliver dead letters (module docs).
pub trait SinkDeadLetters {
    /// Sends every batch to `sink` (if any) and counts it in `counters`.
    fn sink_dead_letters(self, counters: Arc<DeadLetterCounters>, sink: Option<DeadLetterSink>);
}

impl SinkDeadLetters for StreamVec<'_, u64, DeadLetter> {
    fn sink_dead_letters(self, counters: Arc<DeadLetterCounters>, sink: Option<DeadLetterSink>) {
        self.sink(Pipeline, "SinkDeadLetters", move |(input, _frontier)| {
            input.for_each(|_cap, data| emit(data, &counters, sink.as_ref()));
        });
    }
}
