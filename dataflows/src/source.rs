//! Click sources: how records enter the dataflow.
//!
//! The binary hands the pipeline a [`SourceFactory`]; every timely worker calls it once with
//! its global index and the number of peers and polls the returned [`ClickSource`] from its
//! own thread. A Kafka source assigns each worker its own partitions; the embedded log is
//! read by worker 0 alone. Records carry `(partition, offset)` so the watermark is tracked per
//! partition and the change stream can report the offsets it covers.
//!
//! [`MemoryFeed`] is an in-memory source for tests and benchmarks: records are pushed into
//! per-partition queues and partition `p` is read by worker `p % peers`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sluice_schemas::ClickEvent;

/// One record read from a source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRecord {
    /// Partition (Kafka partition; 0 for the embedded log).
    pub partition: u32,
    /// Offset within the partition (dense or not; increasing).
    pub offset: u64,
    /// The click.
    pub event: ClickEvent,
    /// Backfill (`sluice import`): bypasses the lateness limit, not dedup.
    pub backfill: bool,
    /// When the record arrived (ms since the epoch, UTC), as its source recorded it: the
    /// embedded click log's append time (kept only for events stamped after it), a Kafka
    /// record's timestamp; `None` when unknown. The gate caps the record's watermark
    /// contribution and decides `future` against it rather than the clock of the read, so a
    /// replay decides as the first read did ([`crate::watermark`], "Reference time").
    #[serde(default)]
    pub arrival_ms: Option<i64>,
}

/// What a poll found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceStatus {
    /// Records were returned, or more may be available right away.
    Active,
    /// Caught up: nothing available now; poll again later.
    Idle,
    /// The source will never return another record (a finite replay is done).
    Finished,
}

/// A source of click records polled by one worker. Polls never block.
pub trait ClickSource {
    /// Partitions this source reads. Declare every partition up front: the global watermark
    /// knows them from epoch 0, so an empty partition holds it back until it delivers or is
    /// idle. A partition that first appears later is admitted against its own watermark, but
    /// the dedup stage re-checks its records against the global watermark and dead-letters
    /// those behind it by more than the allowed lateness. May be empty.
    fn partitions(&self) -> Vec<u32>;

    /// Appends up to `max` records to `out` (records of one partition in offset order).
    fn poll(&mut self, out: &mut Vec<SourceRecord>, max: usize) -> SourceStatus;

    /// A lower bound (ms UTC) on the event time of records this source already knows are
    /// coming but cannot return yet (clicks accepted upstream, not yet readable), for every
    /// partition it reads; `None` (the default) when there are none or it cannot tell. While
    /// a bound is known the gate keeps the source's partitions from turning idle, so the
    /// idle watermark never passes a promised record ([`crate::watermark::SourceGate::hold`]).
    fn pending_floor(&self) -> Option<i64> {
        None
    }
}

/// Builds a worker's source from `(global worker index, total workers)`.
pub type SourceFactory = Arc<dyn Fn(usize, usize) -> Box<dyn ClickSource> + Send + Sync>;

/// Owner of a partition among `peers` workers, as used by [`MemoryFeed`].
pub fn partition_owner(partition: u32, peers: usize) -> usize {
    partition as usize % peers.max(1)
}

#[derive(Default)]
struct FeedState {
    queues: BTreeMap<u32, VecDeque<SourceRecord>>,
    next_offset: BTreeMap<u32, u64>,
    finished: bool,
    pushed: u64,
}

/// In-memory, shareable source (tests, benchmarks, replays). Cheap to clone.
#[derive(Clone)]
pub struct MemoryFeed {
    partitions: Vec<u32>,
    state: Arc<Mutex<FeedState>>,
    /// The workers polling this feed (woken by every push).
    wake: crate::wake::WakeSlot,
}

impl std::fmt::Debug for MemoryFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryFeed").field("partitions", &self.partitions).finish_non_exhaustive()
    }
}

impl MemoryFeed {
    /// A feed with the given partitions (all declared up front).
    pub fn new(partitions: impl IntoIterator<Item = u32>) -> MemoryFeed {
        let partitions: Vec<u32> = partitions.into_iter().collect();
        let mut st = FeedState::default();
        for &p in &partitions {
            st.queues.insert(p, VecDeque::new());
            st.next_offset.insert(p, 0);
        }
        MemoryFeed { partitions, state: Arc::new(Mutex::new(st)), wake: crate::wake::WakeSlot::new() }
    }

    /// Appends an event to `partition` with the next offset; returns the offset.
    ///
    /// # Panics
    /// If `partition` was not declared in [`MemoryFeed::new`] (a test bug).
    pub fn push(&self, partition: u32, event: ClickEvent, backfill: bool) -> u64 {
        let mut st = self.state.lock();
        let off = st.next_offset.get_mut(&partition).expect("partition declared in MemoryFeed::new");
        let offset = *off;
        *off += 1;
        st.pushed += 1;
        st.queues.get_mut(&partition).expect("partition declared in MemoryFeed::new").push_back(SourceRecord {
            partition,
            offset,
            event,
            backfill,
            arrival_ms: None,
        });
        drop(st);
        self.wake.wake();
        offset
    }

    /// Appends ready-made records (their partitions must be declared; offsets are kept).
    pub fn push_records(&self, records: impl IntoIterator<Item = SourceRecord>) {
        let mut st = self.state.lock();
        for r in records {
            let next = st.next_offset.entry(r.partition).or_insert(0);
            *next = (*next).max(r.offset + 1);
            st.pushed += 1;
            st.queues.entry(r.partition).or_default().push_back(r);
        }
        drop(st);
        self.wake.wake();
    }

    /// Marks the feed finished: sources report [`SourceStatus::Finished`] once drained.
    pub fn finish(&self) {
        self.state.lock().finished = true;
        self.wake.wake();
    }

    /// Records not yet polled.
    pub fn pending(&self) -> usize {
        self.state.lock().queues.values().map(VecDeque::len).sum()
    }

    /// Records pushed since creation.
    pub fn pushed(&self) -> u64 {
        self.state.lock().pushed
    }

    /// A [`SourceFactory`] handing worker `w` of `peers` the partitions `p` with
    /// `p % peers == w`.
    pub fn factory(&self) -> SourceFactory {
        let feed = self.clone();
        Arc::new(move |index, peers| {
            let mine = feed.partitions.iter().copied().filter(|&p| partition_owner(p, peers) == index).collect();
            // The factory runs on the worker's thread: pushes wake it from now on.
            feed.wake.register();
            Box::new(MemorySource { feed: feed.clone(), partitions: mine, cursor: 0 }) as Box<dyn ClickSource>
        })
    }
}

struct MemorySource {
    feed: MemoryFeed,
    partitions: Vec<u32>,
    cursor: usize,
}

impl ClickSource for MemorySource {
    fn partitions(&self) -> Vec<u32> {
        self.partitions.clone()
    }

    fn poll(&mut self, out: &mut Vec<SourceRecord>, max: usize) -> SourceStatus {
        let mut st = self.feed.state.lock();
        let n = self.partitions.len();
        let mut taken = 0;
        // Round-robin over partitions so one busy partition does not starve the others.
        for i in 0..n {
            let p = self.partitions[(self.cursor + i) % n];
            if let Some(q) = st.queues.get_mut(&p) {
                let k = q.len().min(max - taken);
                out.extend(q.drain(..k));
                taken += k;
            }
            if taken == max {
                break;
            }
        }
        if n > 0 {
            self.cursor = (self.cursor + 1) % n;
        }
        let left: usize = self.partitions.iter().filter_map(|p| st.queues.get(p)).map(VecDeque::len).sum();
        if taken > 0 || left > 0 {
            SourceStatus::Active
        } else if st.finished {
            SourceStatus::Finished
        } else {
            SourceStatus::Idle
        }
    }
}

/// A finite, pre-built list of records handed out in order (benchmark replays: no lock, no
/// copy). Reports [`SourceStatus::Finished`] when empty.
#[derive(Debug)]
pub struct VecSource {
    partitions: Vec<u32>,
    records: std::vec::IntoIter<SourceRecord>,
}

impl VecSource {
    /// A source replaying `records` (already in the order to deliver).
    pub fn new(partitions: Vec<u32>, records: Vec<SourceRecord>) -> VecSource {
        VecSource { partitions, records: records.into_iter() }
    }
}

impl ClickSource for VecSource {
    fn partitions(&self) -> Vec<u32> {
        self.partitions.clone()
    }
    fn poll(&mut self, out: &mut Vec<SourceRecord>, max: usize) -> SourceStatus {
        out.extend(self.records.by_ref().take(max));
        if self.records.len() == 0 { SourceStatus::Finished } else { SourceStatus::Active }
    }
}
