//! Materialized views: the rollups the serving layer queries.
//!
//! [`Views`] is a cheap, `Send + Sync` handle over the shards of this process's workers
//! ([`shard`]). Each shard is written by one worker, one completed epoch (or several) at a
//! time under a write lock, so a query never observes part of an epoch; every answer
//! reports the frontier it reflects ([`AsOf`]).
//!
//! | file | concept |
//! |---|---|
//! | `rows.rs` | row keys, rows, per-view maps, blocks |
//! | `shard.rs` | one worker's rollups: apply, evict, change tracking |
//! | `cover.rs` | covering a range with stored buckets |
//! | `tz.rs` | local hour/day buckets in an IANA zone |
//! | `query.rs` | `/v1/links/{code}/stats` queries |
//! | `summary.rs` | `/v1/stats/summary` queries |

pub(crate) mod cover;
pub mod query;
pub(crate) mod rows;
pub(crate) mod shard;
pub mod summary;
pub mod tz;

use std::sync::Arc;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use crate::hash::{owner, route_str};
use crate::{Error, Result};
pub use query::{DimensionTotal, OrderBy, StatsQuery, StatsResult, StatsRow, Totals, order_and_limit};
pub use shard::ShardSize;
use shard::ShardState;
pub use summary::{LinkTotal, SummaryQuery, SummaryResult};
pub use tz::Bucket;

/// The frontier an answer reflects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AsOf {
    /// Every processing epoch below this is applied (epochs are ms of processing time).
    pub epoch: u64,
    /// Global watermark `W` (ms since epoch UTC, `i64::MIN` before any data): buckets ending
    /// at or before it are final unless a late event (within the allowed lateness) arrives.
    pub watermark_ms: i64,
}

struct Inner {
    peers: usize,
    first_local: usize,
    shards: Vec<Arc<RwLock<ShardState>>>,
}

/// Handle to this process's materialized rollups (clone freely; `Send + Sync`).
#[derive(Clone)]
pub struct Views {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Views {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Views")
            .field("peers", &self.inner.peers)
            .field("first_local", &self.inner.first_local)
            .field("local_shards", &self.inner.shards.len())
            .finish()
    }
}

impl Views {
    pub(crate) fn new(peers: usize, first_local: usize, local: usize, retention_ms: [i64; 4], track: bool) -> Views {
        let shards = (0..local).map(|_| Arc::new(RwLock::new(ShardState::new(retention_ms, track)))).collect();
        Views { inner: Arc::new(Inner { peers, first_local, shards }) }
    }

    /// Views for a single worker in a single process (tests, doctests, tools that run the
    /// rollup operator directly).
    pub fn single(semantics: &crate::config::SemanticsConfig) -> Views {
        Views::new(1, 0, 1, semantics.retention_ms(), false)
    }

    pub(crate) fn shard(&self, local: usize) -> Arc<RwLock<ShardState>> {
        Arc::clone(&self.inner.shards[local])
    }

    pub(crate) fn local_shards(&self) -> &[Arc<RwLock<ShardState>>] {
        &self.inner.shards
    }

    /// Global index of the worker that owns `code` (`route_str(code) % peers`).
    pub fn owner_of(&self, code: &str) -> usize {
        owner(route_str(code), self.inner.peers)
    }

    /// Whether these views hold only part of the codes: the dataflow is one process of a
    /// cluster whose other processes' workers own the rest ([`Self::owner_of`]).
    pub fn partial(&self) -> bool {
        self.inner.shards.len() < self.inner.peers
    }

    /// The local shard owning `code`, or [`Error::NotLocal`] when another process owns it.
    pub(crate) fn shard_for(&self, code: &str) -> Result<&Arc<RwLock<ShardState>>> {
        let w = self.owner_of(code);
        let local = w.checked_sub(self.inner.first_local).filter(|&l| l < self.inner.shards.len());
        local.map(|l| &self.inner.shards[l]).ok_or_else(|| Error::NotLocal { code: code.to_string(), worker: w })
    }

    /// Asks for every retained day row, every row of an unsealed quarter or minute, and the
    /// minute rows starting at or after `minute_from_ms` (ms since epoch UTC) to be emitted
    /// again, at their full value, in the change stream's next batch: for a view sink whose
    /// store came back without its data (a Redis restarted empty keeps its all-time values
    /// by adding each day's change, so it needs every day again). Returns the blocks
    /// marked; 0 when the views track no changes (no sink).
    pub fn resend_to_sinks(&self, minute_from_ms: i64) -> usize {
        self.inner.shards.iter().map(|s| s.write().mark_for_resend(minute_from_ms)).sum()
    }

    /// Asks for every retained row of every granularity (minute, quarter, hour and day,
    /// sealed or not) to be emitted again, at its full value, in the change stream's next
    /// batch: for sinks last written from another input (the binary restores a checkpoint
    /// while a newer checkpoint of another input exists), which hold that input's values for
    /// any row, ClickHouse's sealed quarters and hours included. Returns the blocks marked;
    /// 0 when the views track no changes (no sink).
    pub fn resend_all_to_sinks(&self) -> usize {
        self.inner.shards.iter().map(|s| s.write().mark_all_for_resend()).sum()
    }

    /// The frontier all local shards have reached (minimum epoch and watermark).
    pub fn as_of(&self) -> AsOf {
        let mut a = AsOf { epoch: u64::MAX, watermark_ms: i64::MAX };
        for s in &self.inner.shards {
            let s = s.read();
            a.epoch = a.epoch.min(s.applied_epoch);
            a.watermark_ms = a.watermark_ms.min(s.watermark_ms);
        }
        a
    }

    /// First retained bucket start (ms UTC) per granularity (minute, quarter, hour, day),
    /// the latest over the local shards: rows before it were evicted by retention, so a
    /// range starting earlier cannot be answered from these views. `i64::MIN` while nothing
    /// was evicted.
    pub fn retained_from(&self) -> [i64; 4] {
        let mut r = [i64::MIN; 4];
        for s in &self.inner.shards {
            let s = s.read();
            for (out, v) in r.iter_mut().zip(s.retained_from) {
                *out = (*out).max(v);
            }
        }
        r
    }

    /// Codes with rollups on this process's shards, sorted.
    pub fn codes(&self) -> Vec<String> {
        let mut out: Vec<String> =
            self.inner.shards.iter().flat_map(|s| s.read().code_rollups.iter().map(|c| c.name.to_string()).collect::<Vec<_>>()).collect();
        out.sort();
        out
    }

    /// Rows currently held by the local shards.
    pub fn rows(&self) -> usize {
        self.inner.shards.iter().map(|s| s.read().rows()).sum()
    }

    /// Walks every local block to measure memory (O(rows): benchmarks and diagnostics).
    pub fn size(&self) -> ShardSize {
        let mut t = ShardSize::default();
        for s in &self.inner.shards {
            let z = s.read().size();
            t.codes += z.codes;
            t.blocks += z.blocks;
            t.rows += z.rows;
            t.bytes += z.bytes;
        }
        t
    }

    /// Answers a per-link stats query (see [`query`]).
    pub fn query(&self, q: &StatsQuery) -> Result<StatsResult> {
        query::run(self, q)
    }

    /// Answers a cross-link summary query (see [`summary`]).
    pub fn summary(&self, q: &SummaryQuery) -> Result<SummaryResult> {
        summary::run(self, q)
    }

    /// [`Self::query`] plus the range's bot clicks (total view), counted in the same read of
    /// the link's shard, so both are of one frontier (`result.as_of`). Errors as `query`.
    pub fn query_with_bot_clicks(&self, q: &StatsQuery) -> Result<(StatsResult, u64)> {
        let mut bots = 0;
        let r = query::run_counting_bots(self, q, &mut bots)?;
        Ok((r, bots))
    }

    /// [`Self::summary`] plus the bot clicks of the links it covers (org/tag filters apply),
    /// each shard's part counted in the same read as its part of the result. Errors as
    /// `summary`.
    pub fn summary_with_bot_clicks(&self, q: &SummaryQuery) -> Result<(SummaryResult, u64)> {
        let mut bots = 0;
        let r = summary::run_counting_bots(self, q, &mut bots)?;
        Ok((r, bots))
    }
}

#[cfg(test)]
mod partial_tests {
    use super::*;

    #[test]
    fn views_of_one_process_of_several_are_partial() {
        let retention = crate::config::SemanticsConfig::default().retention_ms();
        assert!(!Views::new(4, 0, 4, retention, false).partial(), "every worker local");
        assert!(Views::new(4, 2, 2, retention, false).partial(), "process 1 of 2, two workers each");
        assert!(!Views::single(&crate::config::SemanticsConfig::default()).partial());
    }
}
