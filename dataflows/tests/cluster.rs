//! Timely multi-process mode: two processes on loopback (this test binary re-executed with
//! `SLUICE_CLUSTER_CHILD=<process id>`) produce exactly the views of one process.

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono_tz::Tz;
use sluice_dataflows::clock::ManualClock;
use sluice_dataflows::config::{ClusterConfig, PipelineConfig};
use sluice_dataflows::model::Dimension;
use sluice_dataflows::pipeline::{self, PipelineInputs, PipelineOutputs};
use sluice_dataflows::source::MemoryFeed;
use sluice_dataflows::views::{Bucket, StatsQuery, Views};
use support::*;

const TEST_NAME: &str = "two_processes_on_loopback_equal_one_process";

fn spec() -> StreamSpec {
    let t0 = ms("2024-05-01T00:00:00Z");
    StreamSpec { seed: 99, events: 8_000, codes: 20, partitions: 4, start_ms: t0, span_ms: 2 * DAY, now_ms: t0 + 2 * DAY + HOUR, visitors: 2_000 }
}

/// Runs the whole stream through a pipeline with `config` and returns one line per local code.
fn run(config: PipelineConfig) -> BTreeMap<String, String> {
    let spec = spec();
    let feed = MemoryFeed::new(0..spec.partitions);
    feed.push_records(generate(&spec));
    feed.finish();
    let inputs = PipelineInputs { source: feed.factory(), enricher: enricher(), clock: Arc::new(ManualClock::new(spec.now_ms)), link_meta: None };
    let handle = pipeline::start(&config, inputs, PipelineOutputs::default()).expect("pipeline starts");
    let views = handle.views().clone();
    let counters = handle.stats_handle();
    handle.join().expect("workers finish");
    let mut snap = snapshot(&views, &spec);
    let stats = counters();
    snap.insert("#counters".into(), format!("{} {} {}", stats.accepted, stats.duplicates, stats.dead_lettered));
    snap
}

fn snapshot(views: &Views, spec: &StreamSpec) -> BTreeMap<String, String> {
    let from = (spec.start_ms - 4 * DAY).div_euclid(DAY) * DAY;
    let to = from + 10 * DAY;
    let mut out = BTreeMap::new();
    for code in views.codes() {
        let mut lines = Vec::new();
        for (bucket, tz, dims) in [
            (Bucket::Day, Tz::UTC, vec![]),
            (Bucket::Hour, chrono_tz::Asia::Kolkata, vec![]),
            (Bucket::Day, Tz::UTC, vec![Dimension::Country, Dimension::Device]),
            (Bucket::Day, Tz::UTC, vec![Dimension::Browser]),
        ] {
            let mut q = StatsQuery::new(&code, from, to, bucket);
            q.tz = tz;
            q.dimensions = dims;
            q.include_bots = true;
            let mut r = views.query(&q).expect("query");
            r.as_of.epoch = 0;
            lines.push(format!("{r:?}"));
        }
        out.insert(code, lines.join(" | "));
    }
    out
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

fn child(process_id: usize) {
    let hostfile = std::env::var("SLUICE_CLUSTER_HOSTFILE").expect("hostfile env");
    let out = std::env::var("SLUICE_CLUSTER_OUT").expect("out env");
    let cluster = ClusterConfig::from_hostfile(Path::new(&hostfile), 2, process_id).expect("hostfile");
    let config = PipelineConfig { workers: 1, cluster: Some(cluster), ..Default::default() };
    let snap = run(config);
    let mut f = std::fs::File::create(out).expect("create output");
    for (code, line) in snap {
        writeln!(f, "{code}\t{line}").expect("write output");
    }
}

#[test]
fn two_processes_on_loopback_equal_one_process() {
    if let Ok(id) = std::env::var("SLUICE_CLUSTER_CHILD") {
        child(id.parse().expect("process id"));
        return;
    }
    let dir = std::env::temp_dir().join(format!("sluice-cluster-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let hostfile = dir.join("hosts.txt");
    std::fs::write(&hostfile, format!("127.0.0.1:{}\n127.0.0.1:{}\n", free_port(), free_port())).expect("hostfile");
    let exe = std::env::current_exe().expect("test binary");
    let mut children = Vec::new();
    for p in 0..2 {
        let child = Command::new(&exe)
            .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
            .env("SLUICE_CLUSTER_CHILD", p.to_string())
            .env("SLUICE_CLUSTER_HOSTFILE", &hostfile)
            .env("SLUICE_CLUSTER_OUT", dir.join(format!("out{p}.txt")))
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn process");
        children.push(child);
    }
    let single = run(PipelineConfig { workers: 1, ..Default::default() });
    let deadline = Instant::now() + Duration::from_secs(300);
    for mut c in children {
        loop {
            if let Some(status) = c.try_wait().expect("wait") {
                assert!(status.success(), "cluster process failed: {status}");
                break;
            }
            if Instant::now() > deadline {
                c.kill().ok();
                panic!("cluster process timed out");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let mut merged = BTreeMap::new();
    let mut per_process = Vec::new();
    let mut counters = [0u64; 3];
    for p in 0..2 {
        let text = std::fs::read_to_string(dir.join(format!("out{p}.txt"))).expect("child output");
        let mut n = 0;
        for line in text.lines() {
            let (code, rest) = line.split_once('\t').expect("code\\tresult");
            if code == "#counters" {
                for (c, v) in counters.iter_mut().zip(rest.split(' ')) {
                    *c += v.parse::<u64>().expect("counter");
                }
                continue;
            }
            assert!(merged.insert(code.to_string(), rest.to_string()).is_none(), "code {code} on both processes");
            n += 1;
        }
        per_process.push(n);
    }
    let mut single = single;
    let want: Vec<u64> = single.remove("#counters").expect("counters").split(' ').map(|v| v.parse().unwrap()).collect();
    assert_eq!(counters.to_vec(), want, "accepted, duplicates, dead letters summed over processes");
    assert!(per_process.iter().all(|&n| n > 0), "both processes own codes: {per_process:?}");
    assert_eq!(merged.len(), single.len());
    for (code, want) in &single {
        assert_eq!(merged.get(code), Some(want), "code {code}");
    }
    std::fs::remove_dir_all(&dir).ok();
}
