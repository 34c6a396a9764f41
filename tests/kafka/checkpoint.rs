//! Checkpoints in Kafka mode: a restart resumes from `<data-dir>/checkpoints` and re-reads
//! only the records after the checkpoint's offsets; a corrupt newest checkpoint falls back
//! to the previous one; `kill -9` between checkpoints still gives the exact ground truth.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use rand::{RngExt, SeedableRng};
use sluice::job::checkpoint::{self, SourceIdentity};
use sluice::loadgen::LinkTruth;
use sluice_connectors::kafka::OffsetCommitter;

use crate::support::*;

/// The tests' configuration plus a checkpoint interval.
fn config_with_checkpoints(dir: &Path, interval: &str) -> std::path::PathBuf {
    let path = write_config(dir);
    let mut text = std::fs::read_to_string(&path).expect("read config");
    text.push_str(&format!("\n[dataflow]\ncheckpoint-interval = \"{interval}\"\n"));
    std::fs::write(&path, text).expect("write config");
    path
}

/// Records in the topic (sum of the partitions' high watermarks).
async fn topic_size(target: &KafkaTarget) -> u64 {
    let kcfg = target.config();
    tokio::task::spawn_blocking(move || {
        let c = OffsetCommitter::new(&kcfg).expect("committer");
        let parts: Vec<i32> = (0..c.partition_count().expect("partitions")).collect();
        c.high_watermarks(&parts, Duration::from_secs(5)).expect("watermarks").values().map(|&h| h as u64).sum()
    })
    .await
    .expect("watermarks task")
}

/// The newest valid checkpoint of the target's topic: (cut epoch, records below its offsets).
fn newest_checkpoint(data: &Path, target: &KafkaTarget) -> (u64, u64) {
    let id = SourceIdentity::Kafka { topic: target.topic.clone() };
    let (_, f) = checkpoint::load_latest(&checkpoint::dir_of(data), &id).expect("list checkpoints").expect("a checkpoint exists");
    (f.snapshot.cut_epoch, f.snapshot.offsets.values().sum())
}

/// Polls `sluice_dataflow_events_total{outcome="received"}` (updated every second) until it
/// reaches `want`, then asserts it is exactly `want`.
async fn assert_received(p: &Proc, want: u64) {
    let t0 = Instant::now();
    loop {
        let got = p.metric("sluice_dataflow_events_total{outcome=\"received\"}").await as u64;
        if got >= want {
            assert_eq!(got, want, "records read by the restarted dataflow");
            return;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "only {got} of {want} records read after 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn round(p: &Proc, config: &Path, seed: u64, secs: u64) -> BTreeMap<String, LinkTruth> {
    let mut args = sluice::loadgen::LoadgenArgs::new(p.url());
    args.links = 5;
    args.rate = 150.0;
    args.duration = Duration::from_secs(secs);
    args.seed = seed;
    args.quiet = true;
    args.late_share = 0.0;
    args.duplicate_share = 0.0;
    args.server_config = Some(config.to_path_buf());
    let report = sluice::loadgen::run(&args).await.expect("loadgen");
    assert!(report.exact, "{:?}", report.notes);
    assert_all_redirects_succeeded(&report);
    let t = report.truth.totals();
    await_logged(p, t.clicks + t.bot_clicks, Duration::from_secs(10)).await;
    report.truth.links
}

/// Graceful stop writes a checkpoint covering every consumed record; the next process
/// restores it, reads exactly the records after its offsets and counts both rounds exactly.
/// Then the newest checkpoint is corrupted: the process after falls back to the previous
/// one, re-reads from its offsets, and is still exact (dedup state and offsets agree).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_resumes_from_the_checkpoint_and_rereads_only_what_follows() {
    let target = KafkaTarget::fresh(shared_brokers(), "ckpt");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config_with_checkpoints(dir.path(), "2s");
    let data = dir.path().join("data");

    let p = Proc::start(&data, &config, &target).await;
    let mut truth = round(&p, &config, 501, 2).await;
    await_truth(&p, &truth, Duration::from_secs(60)).await;
    p.terminate();
    let first = topic_size(&target).await;
    let (cut1, covered1) = newest_checkpoint(&data, &target);
    assert_eq!(covered1, first, "the shutdown checkpoint covers every record consumed");

    let t0 = Instant::now();
    let p = Proc::start(&data, &config, &target).await;
    assert_eq!(p.metric("sluice_checkpoint_restores_total").await, 1.0, "restored from the checkpoint");
    truth.extend(round(&p, &config, 502, 3).await);
    await_truth(&p, &truth, Duration::from_secs(60)).await;
    let exact = t0.elapsed();
    let second = topic_size(&target).await;
    assert!(second > first);
    assert_received(&p, second - covered1).await;
    eprintln!("checkpoint restart: {first} records before the checkpoint not re-read; {} read after it; exact {exact:?} after start", second - covered1);
    // Wait for a periodic checkpoint newer than the restored one, then stop (another one).
    let t1 = Instant::now();
    while newest_checkpoint(&data, &target).0 == cut1 {
        assert!(t1.elapsed() < Duration::from_secs(30), "no periodic checkpoint");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    p.terminate();
    let files: Vec<_> = std::fs::read_dir(checkpoint::dir_of(&data)).expect("dir").filter_map(|e| e.ok()).map(|e| e.path()).collect();
    assert_eq!(files.len(), checkpoint::KEEP, "the newest {} are kept: {files:?}", checkpoint::KEEP);

    // Corrupt the newest: the older one is used, and the replay from its offsets is exact.
    let mut sorted = files.clone();
    sorted.sort();
    let newest = sorted.last().expect("newest");
    let mut bytes = std::fs::read(newest).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x5a;
    std::fs::write(newest, &bytes).expect("corrupt");
    let (_, covered_old) = newest_checkpoint(&data, &target);
    assert!(covered_old <= second);
    let p = Proc::start(&data, &config, &target).await;
    assert_eq!(p.metric("sluice_checkpoints_skipped_total").await, 1.0, "the corrupt file was skipped");
    assert_eq!(p.metric("sluice_checkpoint_restores_total").await, 1.0, "the previous checkpoint was restored");
    await_truth(&p, &truth, Duration::from_secs(60)).await;
    assert_received(&p, second - covered_old).await;
    p.terminate();
}

/// `kill -9` at random moments between 1-second checkpoints, three times; the fourth
/// process restores the newest checkpoint, replays only what follows it and counts exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_between_checkpoints_keeps_exact_clicks() {
    let target = KafkaTarget::fresh(shared_brokers(), "ckpt-kill9");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config_with_checkpoints(dir.path(), "1s");
    let data = dir.path().join("data");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let mut truth: BTreeMap<String, LinkTruth> = BTreeMap::new();
    for r in 0..3u64 {
        let p = Proc::start(&data, &config, &target).await;
        truth.extend(round(&p, &config, 600 + r, 3).await);
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..1_500))).await;
        p.kill9();
    }
    let (_, covered) = newest_checkpoint(&data, &target);
    assert!(covered > 0, "a checkpoint was written before the kills");
    let t0 = Instant::now();
    let p = Proc::start(&data, &config, &target).await;
    assert_eq!(p.metric("sluice_checkpoint_restores_total").await, 1.0);
    await_truth(&p, &truth, Duration::from_secs(90)).await;
    let exact = t0.elapsed();
    // Clicks left in the spill by the last kill reach the topic after the restart: count the
    // topic once the views are exact (every click delivered and consumed).
    let total = topic_size(&target).await;
    assert!(covered <= total, "checkpoint covers {covered} of {total}");
    assert_received(&p, total - covered).await;
    eprintln!("kill -9 with checkpoints: {total} records, {} re-read after the checkpoint, exact {exact:?} after start", total - covered);
    p.terminate();
}

/// The broker loses the click topic between two runs (its data deleted: a new cluster, a
/// topic deleted and created again): the next start creates the topic, and the restored
/// checkpoint's offsets — past the end of the new, empty topic, or inside it once the spill
/// refills it — must not skip a record of it. Both rounds are counted exactly: the first
/// from the checkpoint's state, the second from the new topic read from its first offsets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_click_topic_created_again_is_read_from_its_first_offsets() {
    let broker_dir = tempfile::tempdir().expect("tempdir");
    let mut tansu = Tansu::start(broker_dir.path());
    let target = KafkaTarget::fresh(tansu.brokers(), "recreated");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config_with_checkpoints(dir.path(), "2s");
    without_abuse(&config);
    let data = dir.path().join("data");

    let p = Proc::start(&data, &config, &target).await;
    let mut truth = round(&p, &config, 601, 2).await;
    await_truth(&p, &truth, Duration::from_secs(60)).await;
    p.terminate();
    let (_, covered) = newest_checkpoint(&data, &target);
    assert!(covered > 0, "the shutdown checkpoint holds offsets");

    // The broker comes back without its data.
    tokio::task::block_in_place(|| tansu.stop());
    for e in std::fs::read_dir(broker_dir.path()).expect("broker dir").filter_map(Result::ok) {
        if e.file_name().to_string_lossy().starts_with("tansu.db") {
            std::fs::remove_file(e.path()).expect("remove broker data");
        }
    }
    tokio::task::block_in_place(|| tansu.restart());

    let p = Proc::start(&data, &config, &target).await;
    assert_eq!(p.metric("sluice_checkpoint_restores_total").await, 1.0, "restored from the checkpoint");
    truth.extend(round(&p, &config, 602, 2).await);
    await_truth(&p, &truth, Duration::from_secs(60)).await;
    p.terminate();
}
