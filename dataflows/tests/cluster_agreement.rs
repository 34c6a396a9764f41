//! The settings check of a timely cluster (module `pipeline::agreement`) as
//! [`PipelineHandle::agreed`] reports it: the binary's `/readyz` waits for it, so a process
//! whose cluster cannot run (one process started with other settings) is never ready, not
//! even for the moment between its start and the check's failure (session 57). Two
//! "processes" of one cluster run here as two pipelines of this test process on loopback.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_dataflows::clock::ManualClock;
use sluice_dataflows::config::{ClusterConfig, PipelineConfig};
use sluice_dataflows::pipeline::{self, PipelineHandle, PipelineInputs, PipelineOutputs};
use sluice_dataflows::source::MemoryFeed;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// Starts both processes of a two-process cluster (each `start` blocks until its peer
/// connects), process 1 with `lateness_1` as its allowed lateness; returns their handles.
fn cluster(lateness_1: Duration) -> [PipelineHandle; 2] {
    let addresses = vec![format!("127.0.0.1:{}", free_port()), format!("127.0.0.1:{}", free_port())];
    let threads: Vec<_> = (0..2)
        .map(|p| {
            let addresses = addresses.clone();
            std::thread::spawn(move || {
                let mut config =
                    PipelineConfig { workers: 1, cluster: Some(ClusterConfig { process_id: p, addresses, agreed: Vec::new() }), ..Default::default() };
                if p == 1 {
                    config.semantics.allowed_lateness = lateness_1;
                }
                let feed = MemoryFeed::new([u32::try_from(p).expect("small")]);
                let inputs = PipelineInputs {
                    source: feed.factory(),
                    enricher: support::enricher(),
                    clock: Arc::new(ManualClock::new(1_767_225_600_000)),
                    link_meta: None,
                };
                pipeline::start(&config, inputs, PipelineOutputs::default()).expect("pipeline starts")
            })
        })
        .collect();
    let mut handles = threads.into_iter().map(|t| t.join().expect("start thread"));
    [handles.next().expect("process 0"), handles.next().expect("process 1")]
}

fn wait_until(what: &str, pred: impl Fn() -> bool) {
    let t0 = Instant::now();
    while !pred() {
        assert!(t0.elapsed() < Duration::from_secs(30), "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_single_process_has_nothing_to_agree_on() {
    let feed = MemoryFeed::new([0]);
    let inputs =
        PipelineInputs { source: feed.factory(), enricher: support::enricher(), clock: Arc::new(ManualClock::new(1_767_225_600_000)), link_meta: None };
    let h = pipeline::start(&PipelineConfig { workers: 2, ..Default::default() }, inputs, PipelineOutputs::default()).expect("pipeline starts");
    assert!(h.agreed(), "no cluster: agreed from the start");
    feed.finish();
    h.join().expect("workers finish");
}

/// Processes with equal settings agree; with different ones neither ever does, before and
/// after each has recorded the difference as its failure.
#[test]
fn a_process_agrees_only_once_every_process_has_the_same_settings() {
    let same = cluster(Duration::from_secs(48 * 3600));
    wait_until("both processes agree", || same.iter().all(PipelineHandle::agreed));
    assert_eq!(same.iter().map(PipelineHandle::failure).collect::<Vec<_>>(), vec![None, None]);
    same.iter().for_each(PipelineHandle::shutdown);
    for h in same {
        h.join().expect("workers finish");
    }

    let differ = cluster(Duration::from_secs(3600));
    let agreed_before_failing = differ.iter().map(|h| h.failure().is_none() && h.agreed()).collect::<Vec<_>>();
    wait_until("both processes failed", || differ.iter().all(|h| h.failure().is_some()));
    assert_eq!(agreed_before_failing, vec![false, false]);
    assert_eq!(differ.iter().map(PipelineHandle::agreed).collect::<Vec<_>>(), vec![false, false]);
    assert_eq!(
        differ[0].failure().as_deref(),
        Some(
            "the processes of the cluster disagree on dataflow.allowed-lateness: process 0 has \"2days\", process 1 has \"1h\"; start every process with \
             the same dataflow.allowed-lateness"
        )
    );
    differ.iter().for_each(PipelineHandle::shutdown);
}
