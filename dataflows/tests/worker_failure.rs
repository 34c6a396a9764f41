//! A worker that panics is reported by [`PipelineHandle::failure`] (attack of session 49: in
//! a two-process cluster whose peer was killed, the survivor's workers panicked with timely's
//! "MergeQueue poisoned." while the binary kept answering ready with frozen stats).

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sluice_dataflows::clock::ManualClock;
use sluice_dataflows::config::PipelineConfig;
use sluice_dataflows::pipeline::{self, PipelineInputs, PipelineOutputs};
use sluice_dataflows::source::{ClickSource, SourceFactory, SourceRecord, SourceStatus};
use support::*;

/// A source of one partition that is idle until `broken` is set, then panics.
struct BreakingSource(Arc<AtomicBool>);

impl ClickSource for BreakingSource {
    fn partitions(&self) -> Vec<u32> {
        vec![0]
    }

    fn poll(&mut self, _out: &mut Vec<SourceRecord>, _max: usize) -> SourceStatus {
        assert!(!self.0.load(Ordering::Acquire), "the source broke");
        SourceStatus::Idle
    }
}

#[test]
fn a_panicking_worker_is_reported_as_the_pipelines_failure() {
    let broken = Arc::new(AtomicBool::new(false));
    let b = Arc::clone(&broken);
    let factory: SourceFactory = Arc::new(move |_, _| Box::new(BreakingSource(Arc::clone(&b))) as Box<dyn ClickSource>);
    let inputs = PipelineInputs { source: factory, enricher: enricher(), clock: Arc::new(ManualClock::new(ms("2024-05-01T00:00:00Z"))), link_meta: None };
    let handle = pipeline::start(&PipelineConfig { workers: 1, ..Default::default() }, inputs, PipelineOutputs::default()).expect("pipeline starts");
    let failure = handle.failure_handle();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(handle.failure(), None, "a running pipeline has no failure");
    broken.store(true, Ordering::Release);
    let t0 = Instant::now();
    while failure().is_none() {
        assert!(t0.elapsed() < Duration::from_secs(20), "the worker's panic was not reported");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(handle.failure().as_deref(), Some("dataflow worker 0 panicked: the source broke"));
    let e = handle.join().expect_err("a panicked worker fails the join");
    assert!(e.to_string().contains("the source broke"), "{e}");
    assert_eq!(failure().as_deref(), Some("dataflow worker 0 panicked: the source broke"), "the failure outlives the handle");
}
