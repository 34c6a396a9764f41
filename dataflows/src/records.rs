//! Records flowing between the stages of the graph.
//!
//! ```text
//! SourceRecord ──gate──▶ GatedClick ──dedup──▶ GatedClick ──enrich──▶ EnrichedRecord
//!                                       ──link metadata lookup──▶ LinkedRecord ──▶ rollups
//! ```
//! All of them are *updates* (each record is one new click), never snapshots.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sluice_schemas::{ClickEvent, LinkMeta};

use crate::model::{DimStr, Dims};

/// A click accepted by the source gate (valid, not from the future, not too late).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct GatedClick {
    /// Source partition it was read from.
    pub partition: u32,
    /// Offset within the partition.
    pub offset: u64,
    /// Backfill records bypass the lateness limit (not dedup).
    pub backfill: bool,
    /// The raw event.
    pub event: ClickEvent,
}

/// A deduplicated, enriched click: everything the rollups need, nothing more.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrichedRecord {
    /// Short code.
    pub code: DimStr,
    /// Event time, ms since epoch UTC.
    pub ts: i64,
    /// Visitor id of the raw event.
    pub visitor_id: u64,
    /// Dimension values and bot flag.
    pub dims: Dims,
}

/// An enriched click joined with the link's metadata as of the click's processing epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkedRecord {
    /// The click.
    pub rec: EnrichedRecord,
    /// The version of the link's metadata valid at the click's event time, among those fed
    /// by its epoch ([`crate::operators::LookupLinkMeta`]); `None` when the link store has
    /// not announced the code (yet).
    pub meta: Option<Arc<LinkMeta>>,
}
