use std::collections::BTreeMap;

use sluice_dataflows::checkpoint::{DataflowSnapshot, SNAPSHOT_VERSION};

use super::*;
use figment::providers::Format as _;

use crate::config::{DEFAULT_TOML, FlagOverrides};
use crate::job::checkpoint::CheckpointFile;

/// The embedded defaults with `data` as the data dir (no config file, no environment).
fn config(data: &Path) -> Config {
    let mut cfg: Config = figment::Figment::from(figment::providers::Toml::string(DEFAULT_TOML)).extract().expect("defaults");
    cfg.apply(&FlagOverrides { data_dir: Some(data.to_path_buf()), ..Default::default() });
    cfg
}

fn checkpoint(cut: u64, offset: u64, log_id: u64, partition: u32) -> CheckpointFile {
    let snapshot = DataflowSnapshot { cut_epoch: cut, offsets: BTreeMap::from([(partition, offset)]), ..Default::default() };
    CheckpointFile { snapshot_version: SNAPSHOT_VERSION, created_ms: 1, source: SourceIdentity::LogFile { partition, log_id }, snapshot }
}

/// The `.bin` files in the checkpoint dir, by name.
fn bins(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).expect("ls").map(|e| e.expect("entry").file_name().to_string_lossy().into_owned()).filter(|n| n.ends_with(".bin")).collect();
    names.sort();
    names
}

/// An empty click log with two checkpoints of it (a serve stopped before any click, after a
/// periodic checkpoint): the reset renames the older one, rewrites the newest and exits 0,
/// leaving one checkpoint; a second reset does the same on what the first left. (The older
/// file used to be pruned by the rewrite before the reset renamed it: "No such file".)
#[test]
fn an_empty_log_with_two_checkpoints_of_it_resets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("d");
    let cfg = config(&data);
    let partition = cfg.dataflow.partition();
    let log_id = ClickLog::open(&data).expect("create the log").log_id();
    let ckpts = checkpoint::dir_of(&data);
    for cut in [100, 200] {
        checkpoint::write(&ckpts, &checkpoint(cut, 0, log_id, partition)).expect("write");
    }
    let report = run(&cfg).unwrap_or_else(|e| panic!("{e:#}"));
    assert!(report.contains("is empty and continues at offset 0"), "{report}");
    assert!(report.contains(&format!("older checkpoint \"{}\" renamed to", ckpts.join(format!("ckpt-{:020}.bin", 100)).display())), "{report}");
    assert_eq!(bins(&ckpts), vec![format!("ckpt-{:020}.bin", 201)], "{report}");
    let report = run(&cfg).unwrap_or_else(|e| panic!("again: {e:#}"));
    assert_eq!(bins(&ckpts), vec![format!("ckpt-{:020}.bin", 202)], "{report}");
    let (path, f) = checkpoint::load_latest(&ckpts, &SourceIdentity::LogFile { partition, log_id }).expect("load").expect("found");
    assert_eq!((path, f.snapshot.cut_epoch), (ckpts.join(format!("ckpt-{:020}.bin", 202)), 200));
}

/// A stray copy of an older checkpoint under a name beyond u64 (`ckpt-999…9.bin`, sorting
/// after every real name as text) is not a checkpoint: the reset continues from the real
/// newest (offset 60), not from the copy (offset 45).
#[test]
fn a_stray_checkpoint_name_beyond_u64_is_not_the_newest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("d");
    let cfg = config(&data);
    let partition = cfg.dataflow.partition();
    let log_id = ClickLog::open(&data).expect("create the log").log_id();
    let ckpts = checkpoint::dir_of(&data);
    let (older, _) = checkpoint::write(&ckpts, &checkpoint(100, 45, log_id, partition)).expect("write");
    checkpoint::write(&ckpts, &checkpoint(200, 60, log_id, partition)).expect("write");
    std::fs::copy(&older, ckpts.join("ckpt-99999999999999999999.bin")).expect("stray copy");
    std::fs::remove_file(data.join(CLICK_LOG_FILE_NAME)).expect("the log is lost");
    let report = run(&cfg).unwrap_or_else(|e| panic!("{e:#}"));
    assert!(report.contains("is empty and continues at offset 60"), "{report}");
    assert!(report.contains(&format!("(rewritten from \"{}\")", ckpts.join(format!("ckpt-{:020}.bin", 200)).display())), "{report}");
    assert_eq!(bins(&ckpts), vec![format!("ckpt-{:020}.bin", 201), "ckpt-99999999999999999999.bin".to_owned()]);
}

/// After a reset the log continues at the newest checkpoint's end (55,090). A start with
/// the checkpoints moved away used to warn and count from zero on top of that offset, and
/// its next checkpoint then won over the restored ones: it is refused, naming the offset,
/// the checkpoint directory and both ways on; `--count-from-log-start` accepts the loss;
/// with the checkpoints back the start resumes from the one at 55,090.
#[tokio::test]
async fn a_reset_log_without_its_checkpoints_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("d");
    let mut cfg = config(&data);
    let partition = cfg.dataflow.partition();
    let log_id = ClickLog::open(&data).expect("create the log").log_id();
    let ckpts = checkpoint::dir_of(&data);
    checkpoint::write(&ckpts, &checkpoint(100, 55_090, log_id, partition)).expect("write");
    std::fs::remove_file(data.join(CLICK_LOG_FILE_NAME)).expect("the log is lost");
    let report = run(&cfg).unwrap_or_else(|e| panic!("{e:#}"));
    assert!(report.contains("is empty and continues at offset 55090"), "{report}");
    let log = ClickLog::open(&data).expect("the new log");
    assert_eq!((log.low(), log.head()), (55_090, 55_090));
    let moved = dir.path().join("checkpoints-elsewhere");
    std::fs::rename(&ckpts, &moved).expect("move the checkpoints away");

    let e = crate::job::DataflowJob::check_start(&cfg, log.clone()).await.expect_err("refused");
    assert_eq!(
        format!("{e:#}"),
        format!(
            "the click log in the data dir starts at offset 55090 (it was reset, or continued after damage), but no checkpoint in {} \
             holds the clicks of the 55090 log entries before it (offsets 0 to 55089; checkpoints moved away, deleted, or of another \
             input). Starting would count only the clicks from offset 55090 on, and its next checkpoint would then win over the older \
             ones if they are put back. Put back the checkpoints directory that holds them (after `sluice log reset`, the newest \
             checkpoint of this log ends at offset 55090), or, to accept losing the clicks of those 55090 log entries from the stats, \
             start with `sluice serve --count-from-log-start`",
            ckpts.display()
        )
    );
    assert!(!ckpts.exists(), "a refused start writes no checkpoint");

    cfg.dataflow.count_from_log_start = true;
    let start = crate::job::DataflowJob::check_start(&cfg, log.clone()).await.unwrap_or_else(|e| panic!("{e:#}"));
    assert!(start.restored().is_none());
    cfg.dataflow.count_from_log_start = false;

    std::fs::rename(&moved, &ckpts).expect("put the checkpoints back");
    let start = crate::job::DataflowJob::check_start(&cfg, log).await.unwrap_or_else(|e| panic!("{e:#}"));
    let f = start.restored().expect("restored");
    assert_eq!(f.snapshot.offsets.get(&partition).copied(), Some(55_090));
}

/// Attack of session 52: a second reset within the same second moved its file over the
/// first one's copy (names stamped to the second). Fifty moves in a row (several within one
/// millisecond) keep fifty files, each with what it held.
#[test]
fn moving_aside_never_replaces_an_earlier_copy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(CLICK_LOG_FILE_NAME);
    let mut moved = Vec::new();
    for i in 0..50 {
        std::fs::write(&path, format!("copy {i}")).expect("write");
        moved.push(sluice_connectors::click_log::move_aside(&path).expect("moved"));
        assert!(!path.exists());
    }
    for (i, p) in moved.iter().enumerate() {
        assert_eq!(std::fs::read_to_string(p).expect("read"), format!("copy {i}"), "{}", p.display());
    }
    let distinct: std::collections::BTreeSet<_> = moved.iter().collect();
    assert_eq!(distinct.len(), 50);
}
