//! `EnrichClicks`: raw clicks → [`EnrichedRecord`]s (dimensions and bot flag).
//!
//! * **Input**: updates, deduplicated [`GatedClick`]s (pipeline: runs on the worker that
//!   deduplicated them, so the expensive enrichment is spread evenly by event id rather than
//!   skewed by popular codes).
//! * **Output**: updates, one [`EnrichedRecord`] per input.
//! * **State**: the worker's own [`ClickEnricher`] clone (its LRU caches); nothing else.
//!
//! Enrichment runs after dedup, so duplicates are never enriched; it is a pure function of
//! the event, so the order does not change results.

use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;

use crate::enrich::Enricher;
use crate::model::{DimStr, Dims};
use crate::records::{EnrichedRecord, GatedClick};
use sluice_schemas::ClickEvent;

/// Derives the rollup dimensions of a click. Implemented by [`Enricher`]; tests may supply
/// their own. Clones must be cheap: each worker owns one.
pub trait ClickEnricher: Clone + Send + 'static {
    /// Dimensions of one click. Must be a pure function of the event.
    fn dims(&mut self, ev: &ClickEvent) -> Dims;
}

impl ClickEnricher for Enricher {
    fn dims(&mut self, ev: &ClickEvent) -> Dims {
        self.enrich_dims(ev)
    }
}

/// Extension trait: enrich deduplicated clicks (module docs).
pub trait EnrichClicks<'scope> {
    /// Enriches every click with `enricher` (this worker's clone).
    fn enrich_clicks<E: ClickEnricher>(self, enricher: E) -> StreamVec<'scope, u64, EnrichedRecord>;
}

impl<'scope> EnrichClicks<'scope> for StreamVec<'scope, u64, GatedClick> {
    fn enrich_clicks<E: ClickEnricher>(self, mut enricher: E) -> StreamVec<'scope, u64, EnrichedRecord> {
        self.unary(Pipeline, "EnrichClicks", move |_cap, _info| {
            let mut buf: Vec<EnrichedRecord> = Vec::new();
            move |input, output| {
                input.for_each(|cap, data| {
                    buf.reserve(data.len());
                    for c in data.drain(..) {
                        let dims = enricher.dims(&c.event);
                        let ev = c.event;
                        buf.push(EnrichedRecord { code: DimStr::new(&ev.code), ts: ev.ts, visitor_id: ev.visitor_id, dims });
                    }
                    output.session(&cap).give_container(&mut buf);
                    buf.clear();
                });
            }
        })
    }
}
