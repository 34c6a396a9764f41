//! The change stream: rollup rows that changed, with absolute values, for sinks (Redis,
//! ClickHouse) that apply them idempotently.
//!
//! Each local worker deposits its changed rows whenever it has applied a completed epoch and
//! at least `change_interval` has passed; the [`ChangeCollector`] emits one [`ChangeBatch`]
//! per advance of the *process-local* frontier (the minimum over local workers), in order.
//! A batch carries:
//! * `rows`: every row changed since the previous batch, with its absolute `clicks`, HLL
//!   uniques estimate and serialized sketch ([`crate::sketch::VisitorSketch::to_bytes`]).
//!   A total-view row is always the whole total of its (code, granularity, bucket, is_bot),
//!   whatever link metadata its clicks were counted under ([`ChangedRow::meta`]).
//!   A row may reflect epochs at or after `epoch_upper` (a faster worker deposited early):
//!   values are absolute, so applying them early is harmless.
//! * `offsets`: for every partition this process's sources read, the next offset to read
//!   once every record before it is reflected in `rows` of this or an earlier batch. A
//!   source may commit these offsets after the sink durably applied the batch.
//!
//! In multi-process mode a process's records update rows owned by other processes; before
//! committing offsets a process must also know that the other processes' sinks have applied
//! their batches up to the same epoch (issue 5 coordinates this; see the crate README).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sluice_schemas::LinkMeta;

use crate::model::{Granularity, View};

/// One changed rollup row, with absolute values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangedRow {
    /// Short code.
    pub code: Arc<str>,
    /// Granularity of the bucket.
    pub granularity: Granularity,
    /// Bucket start, ms since epoch UTC.
    pub bucket_start_ms: i64,
    /// View the row belongs to.
    pub view: View,
    /// Bot clicks are kept in rows of their own.
    pub is_bot: bool,
    /// Dimension values in [`View::dimensions`] order (empty for the total view).
    pub dims: Vec<Arc<str>>,
    /// For the total view: link metadata (`None` before the link store announced the link).
    /// Always `None` for other views. In a checkpoint ([`crate::checkpoint`]) a total row
    /// holds the clicks counted under exactly this value (a link whose tags changed has one
    /// row per value). In the change stream a total row is the **whole** total of its
    /// (code, granularity, bucket, is_bot) over every metadata value, and `meta` is only the
    /// value of its latest changed part: sinks key totals without it.
    pub meta: Option<Arc<LinkMeta>>,
    /// Absolute click count of the row.
    pub clicks: u64,
    /// Unique-visitor estimate of the row (exact below the sketch's exact limit), capped at
    /// `clicks` ([`crate::sketch::cap_uniques`]).
    pub uniques: u64,
    /// The row's visitor sketch ([`crate::sketch::VisitorSketch::to_bytes`] format).
    pub sketch: Vec<u8>,
}

/// Next offset to read for one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceOffset {
    /// Partition.
    pub partition: u32,
    /// Next offset to read (one past the last record covered).
    pub next_offset: u64,
}

/// A batch of the change stream (module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeBatch {
    /// Every processing epoch below this is fully reflected (local shards).
    pub epoch_upper: u64,
    /// Global watermark `W` (minimum over local shards), ms since epoch UTC.
    pub watermark_ms: i64,
    /// Changed rows, absolute values.
    pub rows: Vec<ChangedRow>,
    /// Commit points of this process's source partitions (all partitions seen so far).
    pub offsets: Vec<SourceOffset>,
}

/// Receives change batches in order (called from a worker thread under the collector's lock:
/// keep it cheap, e.g. a channel send).
pub type ChangeSink = Arc<dyn Fn(ChangeBatch) + Send + Sync>;

struct CollectorState {
    frontier: Vec<u64>,
    watermark: Vec<i64>,
    rows: Vec<ChangedRow>,
    offsets_log: Vec<VecDeque<(u64, u32, u64)>>,
    committed: BTreeMap<u32, u64>,
    emitted_upper: u64,
}

/// Joins the local workers' deposits into ordered [`ChangeBatch`]es (module docs).
pub(crate) struct ChangeCollector {
    state: Mutex<CollectorState>,
    sink: ChangeSink,
}

impl ChangeCollector {
    pub(crate) fn new(local_workers: usize, sink: ChangeSink) -> ChangeCollector {
        ChangeCollector {
            state: Mutex::new(CollectorState {
                frontier: vec![0; local_workers],
                watermark: vec![i64::MIN; local_workers],
                rows: Vec::new(),
                offsets_log: vec![VecDeque::new(); local_workers],
                committed: BTreeMap::new(),
                emitted_upper: 0,
            }),
            sink,
        }
    }

    /// Records that local worker `w` sent records up to `next_offset - 1` of `partition` at
    /// processing epoch `epoch`.
    pub(crate) fn record_offsets(&self, w: usize, epoch: u64, offsets: &[(u32, u64)]) {
        let mut st = self.state.lock();
        for &(p, o) in offsets {
            st.offsets_log[w].push_back((epoch, p, o));
        }
    }

    /// Local worker `w` has applied every epoch below `upper`; `rows` changed meanwhile.
    pub(crate) fn deposit(&self, w: usize, upper: u64, watermark_ms: i64, rows: Vec<ChangedRow>) {
        let mut st = self.state.lock();
        st.frontier[w] = st.frontier[w].max(upper);
        st.watermark[w] = st.watermark[w].max(watermark_ms);
        st.rows.extend(rows);
        let min = st.frontier.iter().copied().min().unwrap_or(0);
        if min <= st.emitted_upper {
            return;
        }
        st.emitted_upper = min;
        let CollectorState { offsets_log, committed, .. } = &mut *st;
        for log in offsets_log.iter_mut() {
            while let Some(&(e, p, o)) = log.front() {
                if e >= min {
                    break;
                }
                let c = committed.entry(p).or_insert(0);
                *c = (*c).max(o);
                log.pop_front();
            }
        }
        let batch = ChangeBatch {
            epoch_upper: min,
            watermark_ms: st.watermark.iter().copied().min().unwrap_or(i64::MIN),
            rows: std::mem::take(&mut st.rows),
            offsets: st.committed.iter().map(|(&partition, &next_offset)| SourceOffset { partition, next_offset }).collect(),
        };
        (self.sink)(batch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_follow_the_slowest_local_worker_and_commit_offsets_below_it() {
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = Arc::clone(&got);
        let c = ChangeCollector::new(2, Arc::new(move |b: ChangeBatch| g.lock().push(b)));
        c.record_offsets(0, 5, &[(0, 10)]);
        c.record_offsets(1, 7, &[(1, 3)]);
        c.deposit(0, 9, 100, Vec::new());
        assert!(got.lock().is_empty(), "worker 1 has not applied anything yet");
        c.deposit(1, 6, 90, Vec::new());
        {
            let b = got.lock();
            assert_eq!(b.len(), 1);
            assert_eq!(b[0].epoch_upper, 6);
            assert_eq!(b[0].watermark_ms, 90);
            assert_eq!(b[0].offsets, vec![SourceOffset { partition: 0, next_offset: 10 }]);
        }
        c.deposit(1, 12, 95, Vec::new());
        let b = got.lock();
        assert_eq!(b[1].epoch_upper, 9);
        assert_eq!(b[1].offsets.len(), 2);
    }
}
