//! The operators of the graph, one per file (STYLE §3.2), each an extension trait on
//! timely streams with a fixed operator name.
//!
//! | file | operator | state |
//! |---|---|---|
//! | `dedup.rs` | `DedupByEventId` | event ids within the horizon |
//! | `enrich_clicks.rs` | `EnrichClicks` | per-worker enricher caches |
//! | `link_lookup.rs` | `ArrangeLinkMetaByCode`, `LookupLinkMeta` | link metadata by code (differential) |
//! | `rollup.rs` | `MaintainRollups` | the worker's rollup shard |
//! | `dead_letters.rs` | `SinkDeadLetters` | none |
//! | `flood_cap.rs` | `CapVisitorFloods` | per (code, visitor, minute) click counts within the lateness |
//! | `abuse/` | `TapFloodRecords`, `DetectVisitorFloods`, `DetectLinkAnomalies`, `SinkAnomalies` (+ the blocklist join) | per-key windows, baselines, open anomalies |
//!
//! Differential is used where a collection has retractions (link metadata: updates are
//! `−old, +new`); plain timely stateful operators where state is append-only and not
//! invertible (HLL rollups) or order-dependent (first-wins dedup).

pub mod abuse;
pub mod dead_letters;
pub mod dedup;
pub mod enrich_clicks;
pub mod flood_cap;
pub mod link_lookup;
pub mod rollup;

pub use abuse::{AbuseWiring, DetectLinkAnomalies, DetectVisitorFloods, SinkAnomalies, TapFloodRecords};
pub use dead_letters::SinkDeadLetters;
pub use dedup::{DedupByEventId, DedupParams, DedupState};
pub use enrich_clicks::{ClickEnricher, EnrichClicks};
pub use flood_cap::{CapVisitorFloods, FloodCapState};
pub use link_lookup::{LinkMetaArranged, LinkMetaTrace, LookupLinkMeta, arrange_link_meta};
pub use rollup::{MaintainRollups, RollupTarget};
