//! sluice-dataflows: the incrementally maintained click-analytics graph.
//!
//! Pure compute on timely + differential dataflow: sources and sinks are handed in by the
//! binary ([`source`], [`changes`], [`dead_letter`]), results are read through [`views`].
//! See the crate README for the module map, the semantics and the consumers.
#![deny(missing_docs)]

pub mod anomaly;
pub mod changes;
pub mod checkpoint;
mod chunked;
pub mod clock;
pub mod config;
pub mod dead_letter;
pub mod enrich;
pub mod error;
pub mod hash;
pub mod model;
pub mod operators;
pub mod pipeline;
pub mod records;
pub mod reference;
pub mod sketch;
pub mod source;
pub mod views;
pub mod wake;
pub mod watermark;

pub use error::{Error, ErrorKind, Result};

#[doc(hidden)]
pub mod bench_support {
    //! Entry points for development benchmarks (not a stable API).
    /// Applies records to the first local shard of `views`.
    pub fn apply(views: &crate::views::Views, recs: &[crate::records::LinkedRecord]) {
        views.shard(0).write().apply_batches(std::iter::once(recs));
    }
}
