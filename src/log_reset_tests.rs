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
