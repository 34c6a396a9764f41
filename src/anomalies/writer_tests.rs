//! The anomaly outputs (sink → writer → store, `/readyz`'s `anomaly_store`, the stop) against
//! a real `anomalies.redb`. A full disk is simulated with `chattr +i` (appends and reopens
//! fail with EPERM, also for root); those tests skip where the attribute cannot be set.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use sluice_connectors::anomaly_store::{ANOMALY_STORE_FILE_NAME, AnomalyStore};
use sluice_schemas::anomaly::anomaly_id;
use sluice_schemas::{Anomaly, AnomalyKind, AnomalyStatus, Evidence, Severity};

use super::*;
use crate::config::{Config, FlagOverrides};
use crate::test_fs::{Mutable, set_immutable, wait_until};

fn anomaly(key: &str, revision: u32) -> Anomaly {
    let window_start = 1_772_445_600_000;
    Anomaly {
        anomaly_id: anomaly_id(AnomalyKind::VisitorFlood, key, window_start),
        revision,
        status: if revision == 0 { AnomalyStatus::Open } else { AnomalyStatus::Updated },
        kind: AnomalyKind::VisitorFlood,
        key: key.to_string(),
        severity: Severity::Info,
        code: Some("f1".into()),
        org: None,
        window_start,
        window_end: window_start + 60_000,
        observed: 30.0 + f64::from(revision),
        expected: 30.0,
        score: 1.0,
        summary: format!("visitor_flood on {key}"),
        evidence: Evidence { window_ms: 60_000, clicks: 30, ..Evidence::default() },
        detected_at: window_start + 1,
    }
}

fn config(dir: &Path) -> Config {
    Config::load(None, &FlagOverrides { data_dir: Some(dir.to_path_buf()), ..FlagOverrides::default() }).expect("config")
}

fn fast() -> WriterConfig {
    WriterConfig {
        retry_initial: Duration::from_millis(10),
        retry_max: Duration::from_millis(100),
        max_held: 100,
        file_check: Duration::from_millis(20),
        stop_retry: Duration::from_millis(300),
    }
}

fn stored(store: &AnomalyStore) -> Vec<(u64, Anomaly)> {
    store.events_after(0, 1000).expect("read").into_iter().map(|e| (e.event_id, e.anomaly)).collect()
}

/// F1: appends fail (immutable file) → the events wait in memory, `anomaly_store` is failed
/// with the file, cause and what to do; once the file is writable again the writer's own
/// retry stores them — no further anomaly needed — in the order the sink received them,
/// once each, and readiness is up again. Nothing is reported unstored at the stop.
#[tokio::test]
async fn failed_appends_are_held_and_stored_in_order_once_the_store_works_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(ANOMALY_STORE_FILE_NAME);
    let outputs = AnomalyOutputs::start_with(&config(dir.path()), fast()).await.expect("start");
    let _mutable = Mutable(&path);
    if !set_immutable(&path, true) || !set_immutable(&path, false) {
        eprintln!("skipped: cannot set the immutable attribute here (needs root and a file system with chattr +i)");
        return;
    }
    let (sink, store, health) = (outputs.sink().expect("sink"), Arc::clone(outputs.store()), outputs.health());
    assert_eq!(health.name(), "anomaly_store");
    assert!(!health.required(), "optional, like export_jobs and redis_views");
    let mut received = Vec::new();
    let mut send = |batch: Vec<Anomaly>| {
        sink(&batch);
        received.extend(batch);
    };
    send(vec![anomaly("v:1", 0)]);
    wait_until("the first event is stored", || store.head() == 1).await;
    assert_eq!(health.status(), (true, json!({"status": "up", "events": 1})));

    assert!(set_immutable(&path, true), "chattr +i");
    send(vec![anomaly("v:2", 0), anomaly("v:1", 1)]);
    send(vec![anomaly("v:3", 0)]);
    let state = Arc::clone(outputs.writer_state());
    wait_until("readiness fails with the events held", || !health.status().0 && state.held() == 3).await;
    // Past the first attempts: the message no longer changes while the file is immutable.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let error = format!(
        "could not store anomaly events in \"{0}\" (anomaly store \"{0}\" is closed after an I/O error (anomaly store could not open: \
         I/O error: Operation not permitted (os error 1)); it is reopened by the next operation once the storage works again); \
         they wait in memory and are stored once the store works again (free disk space, or fix the file's permissions; \
         a stop meanwhile makes the next start derive them again)",
        path.display()
    );
    assert_eq!(health.status(), (false, json!({"status": "failed", "error": error, "held": 3, "dropped": 0})));
    assert_eq!(store.head(), 1, "nothing stored while the file is immutable");

    assert!(set_immutable(&path, false), "chattr -i");
    // No anomaly from here on until the store is back.
    wait_until("the held events are stored by the retry", || store.head() == 4).await;
    wait_until("readiness is back", || health.status().0).await;
    assert_eq!(health.status(), (true, json!({"status": "up", "events": 4})));
    assert_eq!(state.held(), 0);
    let expected: Vec<(u64, Anomaly)> = (1..).zip(received.iter().cloned()).collect();
    assert_eq!(stored(&store), expected, "every event the sink received, in order, once");

    // A replay of stored events adds nothing; a new one gets the next id.
    sink(&[anomaly("v:1", 0), anomaly("v:2", 0), anomaly("v:4", 0)]);
    wait_until("the new event is stored", || store.head() == 5).await;
    let summary = outputs.shutdown(Duration::from_secs(5)).await.expect("writer summary");
    assert_eq!(summary, WriterSummary { stored: 5, unstored: 0 });
    let mut expected = expected;
    expected.push((5, anomaly("v:4", 0)));
    assert_eq!(stored(&store), expected);
}

/// Events beyond the bound are dropped and counted; at the stop, what is still held plus
/// what was dropped is reported unstored and the dataflow checkpoints are removed (so the
/// next start replays the click log and derives them again), other files left alone.
#[tokio::test]
async fn unstored_events_at_the_stop_remove_the_checkpoints() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(ANOMALY_STORE_FILE_NAME);
    let checkpoints = crate::job::checkpoint::dir_of(dir.path());
    std::fs::create_dir_all(&checkpoints).expect("checkpoints dir");
    for name in ["ckpt-00000000000000000001.bin", "ckpt-00000000000000000002.bin", "notes.txt"] {
        std::fs::write(checkpoints.join(name), b"x").expect("write");
    }
    let outputs = AnomalyOutputs::start_with(&config(dir.path()), WriterConfig { max_held: 2, ..fast() }).await.expect("start");
    let _mutable = Mutable(&path);
    if !set_immutable(&path, true) {
        eprintln!("skipped: cannot set the immutable attribute here (needs root and a file system with chattr +i)");
        return;
    }
    let sink = outputs.sink().expect("sink");
    sink(&[anomaly("v:1", 0), anomaly("v:2", 0), anomaly("v:3", 0)]);
    let state = Arc::clone(outputs.writer_state());
    wait_until("two held, one dropped", || state.held() == 2 && state.dropped() == 1).await;
    let health = outputs.health();
    assert_eq!((health.status().1["held"].clone(), health.status().1["dropped"].clone()), (json!(2), json!(1)));
    let summary = outputs.shutdown(Duration::from_secs(5)).await.expect("writer summary");
    assert_eq!(summary, WriterSummary { stored: 0, unstored: 3 });
    let mut left: Vec<String> = std::fs::read_dir(&checkpoints).expect("list").map(|e| e.expect("entry").file_name().to_string_lossy().into_owned()).collect();
    left.sort();
    assert_eq!(left, vec!["notes.txt".to_string()]);
}

/// F7: `anomalies.redb` deleted while serving is noticed by the writer's file check and
/// written back from the open file, with the history intact and the event ids going on;
/// readiness stays up. A file replaced by another one fails readiness with a message naming
/// it, and is left alone.
#[tokio::test]
async fn a_deleted_store_file_is_written_back_and_a_replaced_one_fails_readiness() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(ANOMALY_STORE_FILE_NAME);
    let outputs = AnomalyOutputs::start_with(&config(dir.path()), fast()).await.expect("start");
    let (sink, store, health) = (outputs.sink().expect("sink"), Arc::clone(outputs.store()), outputs.health());
    let events: Vec<Anomaly> = (0..6).map(|i| anomaly(&format!("v:{i}"), 0)).collect();
    sink(&events[..4]);
    wait_until("four events stored", || store.head() == 4).await;
    std::fs::remove_file(&path).expect("delete");
    wait_until("the deleted file is written back", || path.exists()).await;
    sink(&events[4..5]);
    wait_until("the next event is stored", || store.head() == 5).await;
    assert_eq!(health.status(), (true, json!({"status": "up", "events": 5})));
    let expected: Vec<(u64, Anomaly)> = (1..).zip(events[..5].iter().cloned()).collect();
    assert_eq!(stored(&store), expected);
    {
        // What is at the path holds everything, read by another handle.
        let copy = tempfile::tempdir().expect("tempdir");
        std::fs::copy(&path, copy.path().join(ANOMALY_STORE_FILE_NAME)).expect("copy");
        assert_eq!(stored(&AnomalyStore::open(copy.path()).expect("open the copy")), expected);
    }

    std::fs::remove_file(&path).expect("delete");
    std::fs::write(&path, b"not an anomaly store").expect("another file");
    wait_until("the replaced file is noticed", || !health.status().0).await;
    let error = format!(
        "anomaly store \"{}\" was replaced by another file while in use; sluice keeps writing anomaly events to the file it opened, \
         which is lost at the next restart: stop sluice, keep the file you want at that path and start it again",
        path.display()
    );
    assert_eq!(health.status(), (false, json!({"status": "failed", "error": error, "held": 0, "dropped": 0})));
    sink(&events[5..6]);
    wait_until("appends go on to the open file", || store.head() == 6).await;
    assert!(!health.status().0, "a successful append does not hide the replaced file");
    assert_eq!(outputs.shutdown(Duration::from_secs(5)).await.expect("summary"), WriterSummary { stored: 6, unstored: 0 });
    assert_eq!(std::fs::read(&path).expect("read"), b"not an anomaly store", "the other file is left alone");
}

/// A start with `anomalies.redb` missing while the dataflow has checkpoints warns that the
/// anomaly history and event ids restart from zero; a first start (no checkpoints) does not.
/// Finding: a file named like a checkpoint that is not one (garbage) counted as one, and the
/// warning said the history was lost; it is now skipped with a warning naming it and why.
#[test]
fn a_missing_store_next_to_checkpoints_is_warned_about() {
    use crate::job::checkpoint::{self, CheckpointFile, SourceIdentity};
    let captured = sluice_connectors::test_fs::CapturedLogs::default();
    let subscriber = tracing_subscriber::fmt().with_writer(captured.clone()).with_ansi(false).without_time().with_target(false).finish();
    let dir = tempfile::tempdir().expect("tempdir");
    let checkpoints = checkpoint::dir_of(dir.path());
    let garbage = checkpoints.join("ckpt-00000000000000000001.bin");
    let snapshot = sluice_dataflows::checkpoint::DataflowSnapshot { cut_epoch: 2, ..Default::default() };
    let valid = CheckpointFile {
        snapshot_version: sluice_dataflows::checkpoint::SNAPSHOT_VERSION,
        created_ms: 1,
        source: SourceIdentity::Log { partition: 0 },
        snapshot,
    };
    tracing::subscriber::with_default(subscriber, || {
        warn_if_history_lost(dir.path());
        std::fs::create_dir_all(&checkpoints).expect("checkpoints dir");
        std::fs::write(&garbage, b"x").expect("write");
        warn_if_history_lost(dir.path());
        checkpoint::write(&checkpoints, &valid).expect("a checkpoint");
        std::fs::remove_file(&garbage).expect("remove the garbage");
        warn_if_history_lost(dir.path());
        std::fs::write(dir.path().join(ANOMALY_STORE_FILE_NAME), b"").expect("a store file");
        warn_if_history_lost(dir.path());
    });
    let logs = captured.text();
    let expected = format!(
        " WARN skipping a file that is not a valid checkpoint path={} why=not a checkpoint file (bad magic or shorter than the header)\n \
         WARN the anomaly store is missing while the dataflow has checkpoints: a new, empty anomaly store is created; the anomaly history \
         and the event ids (the stream's Last-Event-ID) restart from zero, and the dataflow, restored from its checkpoint, does not derive \
         the earlier anomalies again (put the old anomalies.redb back before starting to keep them) path={} checkpoints={}\n",
        garbage.display(),
        dir.path().join(ANOMALY_STORE_FILE_NAME).display(),
        checkpoints.display()
    );
    assert_eq!(logs, expected, "the garbage file skipped, named, and not counted; one history warning, for the valid checkpoint");
}
