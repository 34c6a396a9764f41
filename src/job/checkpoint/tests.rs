use std::collections::BTreeMap;
use std::path::PathBuf;

use sluice_dataflows::checkpoint::{DataflowSnapshot, DataflowSnapshotV1, SNAPSHOT_VERSION};

use super::files::{check_intact, checkpoint_files, is_intact, put_via_temp_file, source_of};
use super::format::{CheckpointFileV1, frame};
use super::*;

fn file(cut: u64, source: SourceIdentity) -> CheckpointFile {
    let mut snapshot = DataflowSnapshot { cut_epoch: cut, ..Default::default() };
    snapshot.offsets.insert(0, cut * 10);
    snapshot.offsets.insert(3, 7);
    snapshot.dedup.ids = vec![(1, 1_000), (u128::MAX, 2_000)];
    snapshot.dedup.newest = 2_000;
    CheckpointFile { snapshot_version: SNAPSHOT_VERSION, created_ms: 1, source, snapshot }
}

fn kafka() -> SourceIdentity {
    SourceIdentity::Kafka { topic: "clicks".into() }
}

#[test]
fn encode_decode_round_trips_and_detects_damage() {
    let f = file(5, kafka());
    let bytes = encode(&f).expect("encode");
    assert_eq!(&bytes[..8], MAGIC);
    let back = decode(&bytes).expect("decode");
    assert_eq!(back.snapshot.offsets, f.snapshot.offsets);
    assert_eq!(back.snapshot.dedup, f.snapshot.dedup);
    assert_eq!(back.source, f.source);

    let mut flipped = bytes.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x40;
    assert!(format!("{:#}", decode(&flipped).unwrap_err()).contains("checksum"));
    let partial = &bytes[..bytes.len() - 3];
    assert!(format!("{:#}", decode(partial).unwrap_err()).contains("partial write"));
    assert!(format!("{:#}", decode(&bytes[..10]).unwrap_err()).contains("magic"));
    let mut v2 = bytes.clone();
    v2[8] = 2;
    assert!(format!("{:#}", decode(&v2).unwrap_err()).contains("version 2"));
}

#[test]
fn newest_valid_checkpoint_wins_corrupt_ones_are_skipped_and_two_are_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().join("checkpoints");
    assert!(load_latest(&d, &kafka()).expect("missing dir is empty").is_none());
    for cut in [100, 200, 300] {
        write(&d, &file(cut, kafka())).expect("write");
    }
    let names: Vec<String> = checkpoint_files(&d).expect("list").iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(names, vec![format!("ckpt-{:020}.bin", 200), format!("ckpt-{:020}.bin", 300)], "the newest two are kept");
    let (_, f) = load_latest(&d, &kafka()).expect("load").expect("found");
    assert_eq!(f.snapshot.cut_epoch, 300);

    // Corrupt the newest: the previous one is used.
    let newest = d.join(format!("ckpt-{:020}.bin", 300));
    let mut bytes = std::fs::read(&newest).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&newest, &bytes).expect("corrupt");
    let (path, f) = load_latest(&d, &kafka()).expect("load").expect("found");
    assert_eq!(f.snapshot.cut_epoch, 200, "fell back from {}", path.display());

    // A partial newer file (a crash before the rename leaves only a .tmp; a torn file is cut).
    std::fs::write(d.join(format!("ckpt-{:020}.bin", 400)), &bytes[..40]).expect("partial");
    std::fs::write(d.join(format!("ckpt-{:020}.bin.tmp", 500)), b"junk").expect("tmp");
    assert_eq!(load_latest(&d, &kafka()).expect("load").expect("found").1.snapshot.cut_epoch, 200);

    // Another input's checkpoint is not used.
    assert!(load_latest(&d, &SourceIdentity::Kafka { topic: "other".into() }).expect("load").is_none());
    assert!(load_latest(&d, &SourceIdentity::Log { partition: 0 }).expect("load").is_none());
}

/// Switching inputs on one data dir (embedded log → Kafka → back) keeps each input's newest
/// checkpoints: pruning counts only the files of the input being written.
#[test]
fn pruning_keeps_the_newest_checkpoints_of_each_input() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().join("checkpoints");
    let log = SourceIdentity::LogFile { partition: 0, log_id: 0xfeed };
    for cut in [100, 200, 300] {
        write(&d, &file(cut, log.clone())).expect("write log");
    }
    for cut in [400, 500, 600] {
        write(&d, &file(cut, kafka())).expect("write kafka");
    }
    // Unidentifiable files are left alone too.
    std::fs::write(d.join(format!("ckpt-{:020}.bin", 50)), b"not a checkpoint").expect("junk");
    let cuts: Vec<String> = checkpoint_files(&d).expect("list").iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    let name = |c: u64| format!("ckpt-{c:020}.bin");
    assert_eq!(cuts, vec![name(50), name(200), name(300), name(500), name(600)]);
    assert_eq!(load_latest(&d, &log).expect("load").expect("log checkpoint").1.snapshot.cut_epoch, 300);
    assert_eq!(load_latest(&d, &kafka()).expect("load").expect("kafka checkpoint").1.snapshot.cut_epoch, 600);
    // Back on the log: its own oldest goes, Kafka's stay.
    write(&d, &file(700, log.clone())).expect("write log");
    let cuts: Vec<String> = checkpoint_files(&d).expect("list").iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(cuts, vec![name(50), name(300), name(500), name(600), name(700)]);
    assert_eq!(source_of(&d.join(name(500))), Some(kafka()));
    assert_eq!(source_of(&d.join(name(50))), None);
}

/// A start notes the newest checkpoint of another input written after the one it restores
/// (the sinks were last written from that input), in both directions; none when its own is
/// the newest, or when it restores nothing.
#[test]
fn a_start_notes_a_newer_checkpoint_of_another_input() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().join("checkpoints");
    let log = SourceIdentity::LogFile { partition: 0, log_id: 0xfeed };
    let name = |c: u64| d.join(format!("ckpt-{c:020}.bin"));
    write(&d, &file(100, log.clone())).expect("write log");
    let start = load_for_start(&d, &log, Some(0)).expect("load");
    assert_eq!((start.restored.map(|r| r.0), start.switch), (Some(name(100)), None), "only its own");
    assert!(load_for_start(&d, &kafka(), None).expect("load").switch.is_none(), "nothing restored, nothing to note");
    for cut in [200, 300] {
        write(&d, &file(cut, kafka())).expect("write kafka");
    }
    let start = load_for_start(&d, &log, Some(0)).expect("load");
    assert_eq!(start.restored.map(|r| r.0), Some(name(100)));
    assert_eq!(start.switch, Some(InputSwitch { newer: name(300), input: kafka() }), "the newest of the other input");
    assert!(load_for_start(&d, &kafka(), None).expect("load").switch.is_none());
    // Back on the log and to Kafka again: Kafka's restore notes the log's newer checkpoint.
    write(&d, &file(400, log.clone())).expect("write log");
    assert!(load_for_start(&d, &log, Some(0)).expect("load").switch.is_none());
    let start = load_for_start(&d, &kafka(), None).expect("load");
    assert_eq!(start.restored.map(|r| r.0), Some(name(300)));
    assert_eq!(start.switch, Some(InputSwitch { newer: name(400), input: log }));
}

/// A damaged checkpoint does not count among the [`KEEP`] kept ones: after the newest file
/// is corrupted, the next round keeps the intact one before it too, so a start still has a
/// fallback if the new file is damaged in turn; once two intact files are newer, the
/// damaged one and everything older go.
#[test]
fn a_damaged_checkpoint_does_not_count_among_the_kept_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().join("checkpoints");
    let name = |c: u64| format!("ckpt-{c:020}.bin");
    let names = || -> Vec<String> { checkpoint_files(&d).expect("list").iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect() };
    for cut in [100, 200, 300] {
        write(&d, &file(cut, kafka())).expect("write");
    }
    assert_eq!(names(), vec![name(200), name(300)]);
    let newest = d.join(name(300));
    let mut bytes = std::fs::read(&newest).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&newest, &bytes).expect("corrupt");
    assert!(!is_intact(&newest) && is_intact(&d.join(name(200))));

    write(&d, &file(400, kafka())).expect("write");
    assert_eq!(names(), vec![name(200), name(300), name(400)], "200 stays: 300 is damaged");
    // The new file damaged too (cut short): 200 is still there to start from.
    let f400 = d.join(name(400));
    let whole = std::fs::read(&f400).expect("read");
    std::fs::write(&f400, &whole[..whole.len() - 5]).expect("truncate");
    assert!(!is_intact(&f400));
    assert_eq!(load_latest(&d, &kafka()).expect("load").expect("found").1.snapshot.cut_epoch, 200);

    write(&d, &file(500, kafka())).expect("write");
    assert_eq!(names(), vec![name(200), name(300), name(400), name(500)], "only 500 and 200 are intact");
    write(&d, &file(600, kafka())).expect("write");
    assert_eq!(names(), vec![name(500), name(600)], "two intact newer files: the damaged and older ones go");
    // A file of an unknown snapshot version does not count either (this build cannot restore it).
    let mut f = file(700, kafka());
    f.snapshot_version = SNAPSHOT_VERSION + 1;
    std::fs::write(d.join(name(700)), encode(&f).expect("encode")).expect("future version");
    assert!(!is_intact(&d.join(name(700))) && is_intact(&d.join(name(600))));
}

#[test]
fn kafka_offsets_convert_partitions_and_offsets() {
    let f = file(2, kafka());
    assert_eq!(kafka_offsets(&f.snapshot), BTreeMap::from([(0, 20), (3, 7)]));
}

/// A checkpoint written before the flood-cap counts were part of the snapshot (snapshot
/// version 1) still restores: everything it holds, and no flood-cap counts.
#[test]
fn a_snapshot_version_1_file_reads_with_empty_flood_cap_counts() {
    let mut snapshot = DataflowSnapshotV1 { cut_epoch: 42, ..Default::default() };
    snapshot.offsets.insert(0, 420);
    snapshot.dedup.ids = vec![(9, 1_000)];
    snapshot.dedup.newest = 1_000;
    let v1 = CheckpointFileV1 { snapshot_version: 1, created_ms: 3, source: SourceIdentity::Log { partition: 0 }, snapshot };
    let bytes = frame(&bincode::serialize(&v1).expect("serialize"));
    let f = decode(&bytes).expect("a version-1 checkpoint decodes");
    assert_eq!(f.snapshot_version, SNAPSHOT_VERSION);
    assert_eq!((f.created_ms, f.source), (3, SourceIdentity::Log { partition: 0 }));
    assert_eq!((f.snapshot.cut_epoch, f.snapshot.offsets.clone()), (42, BTreeMap::from([(0, 420)])));
    assert_eq!(f.snapshot.dedup.ids, vec![(9, 1_000)]);
    assert!(f.snapshot.flood_cap.entries.is_empty());
    // A current file keeps its flood-cap counts.
    let mut cur = file(5, kafka());
    cur.snapshot.flood_cap.entries.push(sluice_dataflows::checkpoint::FloodCapEntry {
        minute_ms: 60_000,
        keep_until_ms: 120_000,
        code: "ab".into(),
        visitor_id: 7,
        count: 31,
    });
    assert_eq!(decode(&encode(&cur).expect("encode")).expect("decode").snapshot.flood_cap, cur.snapshot.flood_cap);
}

/// A checkpoint of the click log records the log's id: the same log resumes, an id-less
/// checkpoint of an older build is taken as the current log's, another partition's is
/// skipped, and the same partition of another log file (a replaced `clicks.redb`) refuses
/// to load with a message naming both ids.
#[test]
fn a_checkpoint_of_another_click_log_file_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().join("checkpoints");
    let current = SourceIdentity::LogFile { partition: 0, log_id: 0xabc };
    write(&d, &file(1, SourceIdentity::Log { partition: 0 })).expect("write id-less");
    assert_eq!(load_latest(&d, &current).expect("load").expect("id-less is this log's").1.snapshot.cut_epoch, 1);
    write(&d, &file(2, current.clone())).expect("write");
    assert_eq!(load_latest(&d, &current).expect("load").expect("same log").1.snapshot.cut_epoch, 2);
    assert!(load_latest(&d, &SourceIdentity::LogFile { partition: 1, log_id: 0xabc }).expect("load").is_none(), "another partition");
    let err = format!("{:#}", load_latest(&d, &SourceIdentity::LogFile { partition: 0, log_id: 0xdef }).expect_err("another log"));
    assert!(err.contains("another click log") && err.contains("0000000000000abc") && err.contains("0000000000000def"), "{err}");
    assert!(err.contains("clicks.redb"), "{err}");
}

/// The refusal of another log's checkpoint names the side files sluice saved while serving
/// only when they exist, by name; without any it says so.
#[test]
fn the_refusal_names_only_side_files_that_exist() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().join("checkpoints");
    write(&d, &file(2, SourceIdentity::LogFile { partition: 0, log_id: 0xabc })).expect("write");
    let other = SourceIdentity::LogFile { partition: 0, log_id: 0xdef };
    let err = format!("{:#}", load_latest_for_log(&d, &other, Some(8)).expect_err("another log"));
    assert!(err.ends_with("(e.g. from a backup; sluice saved no copy of a click log in the data dir)"), "{err}");
    assert!(!err.contains("recovered-"), "{err}");
    let side = dir.path().join("clicks.redb.recovered-20261202T060000.000Z");
    std::fs::write(&side, b"x").expect("side file");
    let err = format!("{:#}", load_latest_for_log(&d, &other, Some(8)).expect_err("another log"));
    assert!(err.ends_with(&format!("(sluice saved the log it had open while serving, when another file took its path, to \"{}\")", side.display())), "{err}");
}

/// A data dir without `clicks.redb` whose newest checkpoint is of a click log is refused
/// (before a start creates anything), naming `sluice log reset`; without a checkpoint, or
/// with one of another partition, nothing is refused.
#[test]
fn a_missing_click_log_with_a_checkpoint_of_one_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().join("checkpoints");
    refuse_without_log(&d, 0).expect("no checkpoints");
    write(&d, &file(2, SourceIdentity::LogFile { partition: 1, log_id: 0xabc })).expect("write");
    refuse_without_log(&d, 0).expect("another partition's");
    write(&d, &file(3, SourceIdentity::LogFile { partition: 0, log_id: 0xabc })).expect("write");
    let err = format!("{:#}", refuse_without_log(&d, 0).expect_err("refused"));
    let data = dir.path().display();
    assert_eq!(
        err,
        format!(
            "the newest checkpoint \"{}\" was taken of a click log (log id 0000000000000abc, read up to offset 30) that is not in the data \
             dir: there is no {data}/clicks.redb (moved away or deleted). To continue from that checkpoint on a new, empty log, keeping \
             every click it counted, stop every sluice process using the data dir and run `sluice log reset --data-dir {data}`; or put \
             the click log the checkpoint was taken of back at {data}/clicks.redb (e.g. from a backup; sluice saved no copy of a click \
             log in the data dir)",
            d.join(format!("ckpt-{:020}.bin", 3)).display()
        )
    );
}

/// The clock was ahead and is stepped back: checkpoints written after that have smaller cut
/// epochs, but their names still sort after the earlier ones, so they are the ones kept and
/// restored (named by their cut, each would sort as the oldest and be pruned at once).
#[test]
fn names_sort_in_write_order_after_the_clock_was_stepped_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().join("checkpoints");
    let mut written = Vec::new();
    for cut in [1_000, 2_000, 500, 600] {
        written.push(write(&d, &file(cut, kafka())).expect("write").0);
    }
    let names: Vec<String> = list_intact(&d).expect("list").iter().map(|p| p.file_name().expect("name").to_string_lossy().into_owned()).collect();
    assert_eq!(names, vec![format!("ckpt-{:020}.bin", 2_001), format!("ckpt-{:020}.bin", 2_002)], "the last two written are kept");
    assert_eq!(written[2..], list_intact(&d).expect("list")[..]);
    let (path, f) = load_latest(&d, &kafka()).expect("load").expect("found");
    assert_eq!((path, f.snapshot.cut_epoch), (written[3].clone(), 600), "the last written is restored");
    // The clock catches up: names follow the cut again once it is above every name.
    write(&d, &file(5_000, kafka())).expect("write");
    assert_eq!(load_latest(&d, &kafka()).expect("load").expect("found").0, d.join(format!("ckpt-{:020}.bin", 5_000)));
}

#[test]
fn next_name_is_the_cut_or_one_above_the_highest_name() {
    let p = |n: &str| PathBuf::from(format!("/c/{n}"));
    assert_eq!(next_name(&[], 7), format!("ckpt-{:020}.bin", 7));
    assert_eq!(next_name(&[p(&format!("ckpt-{:020}.bin", 3))], 7), format!("ckpt-{:020}.bin", 7));
    assert_eq!(next_name(&[p(&format!("ckpt-{:020}.bin", 7))], 7), format!("ckpt-{:020}.bin", 8));
    assert_eq!(next_name(&[p(&format!("ckpt-{:020}.bin", 9)), p(&format!("ckpt-{:020}.bin", 4))], 7), format!("ckpt-{:020}.bin", 10));
    // Names that are not 20-digit u64 numbers do not count; the largest u64 saturates.
    let beyond = p("ckpt-99999999999999999999.bin");
    assert_eq!(next_name(&[p("ckpt-x.bin"), p("ckpt-.bin"), p("ckpt-7000.bin"), beyond], 7), format!("ckpt-{:020}.bin", 7));
    assert_eq!(next_name(&[p(&format!("ckpt-{}.bin", u64::MAX))], 7), format!("ckpt-{}.bin", u64::MAX));
}

/// Files named like checkpoints but not `ckpt-<20 digits, a u64>.bin` are no checkpoints:
/// never listed, loaded or pruned (a copy named beyond u64 sorted after every real name as
/// text, was restored as the newest and, by `log reset`, kept instead of the real newest).
#[test]
fn only_twenty_digit_names_are_checkpoints() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().join("checkpoints");
    write(&d, &file(100, kafka())).expect("write");
    let stale = encode(&file(50, kafka())).expect("encode");
    for name in ["ckpt-99999999999999999999.bin", "ckpt-foo.bin", "ckpt-100.bin", "ckpt-+0000000000000000100.bin"] {
        std::fs::write(d.join(name), &stale).expect("stray copy");
    }
    assert_eq!(list_intact(&d).expect("list"), vec![d.join(format!("ckpt-{:020}.bin", 100))]);
    assert_eq!(load_latest(&d, &kafka()).expect("load").expect("found").1.snapshot.cut_epoch, 100);
    for cut in [200, 300, 400] {
        write(&d, &file(cut, kafka())).expect("write");
    }
    assert_eq!(load_latest(&d, &kafka()).expect("load").expect("found").1.snapshot.cut_epoch, 400);
    assert!(d.join("ckpt-99999999999999999999.bin").exists() && d.join("ckpt-foo.bin").exists(), "stray files are left alone");
}

/// A write that fails (here the rename, onto a directory; on a full disk the write) removes
/// its temporary file, and a stale one left by an earlier process is removed by the next
/// write; other files are left alone.
#[test]
fn failed_writes_leave_no_temporary_file_and_stale_ones_are_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().join("checkpoints");
    std::fs::create_dir_all(d.join("occupied")).expect("mkdir");
    std::fs::write(d.join("occupied/x"), b"x").expect("write");
    let tmp = d.join("occupied.tmp");
    let err = put_via_temp_file(&tmp, &d.join("occupied"), b"bytes").expect_err("rename onto a non-empty directory");
    assert!(format!("{err:#}").contains("could not rename the checkpoint into place"), "{err:#}");
    assert!(!tmp.exists(), "the failed write's temporary file is gone");

    let stale = [d.join(format!("ckpt-{:020}.bin.tmp", 9)), d.join(format!("ckpt-{:020}.bin.tmp", 1))];
    for s in &stale {
        std::fs::write(s, b"partial").expect("stale tmp");
    }
    std::fs::write(d.join("notes.tmp"), b"not ours").expect("other");
    write(&d, &file(5, kafka())).expect("write");
    for s in &stale {
        assert!(!s.exists(), "{} removed", s.display());
    }
    assert!(d.join("notes.tmp").exists(), "files that are not checkpoint temp files stay");
    assert_eq!(load_latest(&d, &kafka()).expect("load").expect("found").1.snapshot.cut_epoch, 5);
}

/// Finding: a garbage file named like a checkpoint counted as one (the start then warned that
/// the anomaly history was lost). [`list_intact`] keeps only what a start could restore and
/// names every other file with what is wrong with it; a FIFO is not opened (that would wait
/// for a writer).
#[test]
fn list_intact_skips_files_that_are_not_checkpoints_saying_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().join("checkpoints");
    assert_eq!(list_intact(&d).expect("a missing dir is empty"), Vec::<PathBuf>::new());
    write(&d, &file(100, kafka())).expect("write");
    let name = |c: u64| d.join(format!("ckpt-{c:020}.bin"));
    let whole = encode(&file(300, kafka())).expect("encode");
    let mut flipped = whole.clone();
    *flipped.last_mut().expect("bytes") ^= 0x01;
    let mut v9 = whole.clone();
    v9[8] = 9;
    let mut future = file(700, kafka());
    future.snapshot_version = SNAPSHOT_VERSION + 1;
    std::fs::write(name(200), b"garbage, not a checkpoint").expect("write");
    std::fs::write(name(300), &whole[..whole.len() - 3]).expect("write");
    std::fs::write(name(400), &flipped).expect("write");
    std::fs::write(name(500), &v9).expect("write");
    std::fs::create_dir(name(600)).expect("mkdir");
    std::fs::write(name(700), encode(&future).expect("encode")).expect("write");
    let fifo = std::process::Command::new("mkfifo").arg(name(800)).status().expect("run mkfifo");
    assert!(fifo.success(), "mkfifo");
    let payload = whole.len() - super::format::HEADER;
    let cases = [
        (200, "not a checkpoint file (bad magic or shorter than the header)".to_owned()),
        (300, format!("payload is {} bytes, the header says {payload} (partial write)", payload - 3)),
        (400, "checksum mismatch (corrupt file)".to_owned()),
        (500, format!("unknown checkpoint file version 9 (this build reads {FILE_VERSION})")),
        (600, "not a checkpoint file (not a regular file)".to_owned()),
        (700, format!("unknown snapshot version {} (this build reads {SNAPSHOT_VERSION})", SNAPSHOT_VERSION + 1)),
        (800, "not a checkpoint file (not a regular file)".to_owned()),
    ];
    for (cut, why) in &cases {
        assert_eq!(check_intact(&name(*cut)), Err(why.clone()), "{cut}");
    }
    let captured = sluice_connectors::test_fs::CapturedLogs::default();
    let subscriber = tracing_subscriber::fmt().with_writer(captured.clone()).with_ansi(false).without_time().with_target(false).finish();
    let listed = tracing::subscriber::with_default(subscriber, || list_intact(&d).expect("list"));
    assert_eq!(listed, vec![name(100)], "only the checkpoint a start could restore");
    let expected: String =
        cases.iter().map(|(cut, why)| format!(" WARN skipping a file that is not a valid checkpoint path={} why={why}\n", name(*cut).display())).collect();
    assert_eq!(captured.text(), expected);
}

/// Finding: a FIFO named like the newest checkpoint hung the start and `sluice log reset`
/// (reading it waited for a writer), one named like the oldest hung the stop's pruning, and a
/// directory named `ckpt-<u64::MAX>.bin` made every later write fail (the next name was its
/// own). Each is now looked at before it is opened, and only intact checkpoints (so never a
/// directory or FIFO) name the next checkpoint.
#[test]
fn fifos_and_directories_named_like_checkpoints_neither_hang_nor_block_writes() {
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().join("checkpoints");
        let log = SourceIdentity::Log { partition: 0 };
        write(&d, &file(100, log.clone())).expect("write");
        let name = |c: u64| d.join(format!("ckpt-{c:020}.bin"));
        for fifo in [name(1), name(99_999_999_999_999_999)] {
            assert!(std::process::Command::new("mkfifo").arg(&fifo).status().expect("run mkfifo").success(), "mkfifo");
            assert_eq!(source_of(&fifo), None);
        }
        std::fs::create_dir(name(u64::MAX)).expect("mkdir");
        assert_eq!(load_latest(&d, &log).expect("load").map(|(p, f)| (p, f.snapshot.cut_epoch)), Some((name(100), 100)));
        let (newest, others) = newest_of_partition(&d, 0).expect("newest").expect("found");
        assert_eq!((newest.0, others), (name(100), Vec::<PathBuf>::new()));
        // The next write is named after the regular files only, and prunes without opening the FIFOs.
        let (written, _) = write(&d, &file(200, log.clone())).expect("a directory named ckpt-<u64::MAX>.bin does not block the write");
        assert_eq!(written, name(200));
        assert_eq!(load_latest(&d, &log).expect("load").map(|(p, _)| p), Some(name(200)));
        done.send(()).expect("send");
    });
    assert_eq!(finished.recv_timeout(std::time::Duration::from_secs(30)), Ok(()), "hung on a FIFO (or failed: see the thread's panic above)");
}

/// Finding: a regular garbage file named `ckpt-<big number>.bin` made every later
/// checkpoint's name continue from its number (from `u64::MAX - 1` on, each write replaced the
/// previous checkpoint under the one name left), and it was never pruned. Only intact
/// checkpoints name the next one now; the garbage is skipped with its warning, never written
/// over nor deleted; names still increase after a step back of the clock.
#[test]
fn only_intact_checkpoints_name_the_next_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().join("checkpoints");
    let name = |c: u64| d.join(format!("ckpt-{c:020}.bin"));
    write(&d, &file(100, kafka())).expect("write");
    std::fs::write(name(u64::MAX - 1), b"garbage, not a checkpoint").expect("garbage");
    std::fs::write(name(5_000), b"more garbage").expect("garbage");
    let captured = sluice_connectors::test_fs::CapturedLogs::default();
    let subscriber = tracing_subscriber::fmt().with_writer(captured.clone()).with_ansi(false).without_time().with_target(false).finish();
    let written: Vec<PathBuf> =
        tracing::subscriber::with_default(subscriber, || [200, 300, 400].into_iter().map(|cut| write(&d, &file(cut, kafka())).expect("write").0).collect());
    assert_eq!(written, vec![name(200), name(300), name(400)], "named by their cuts, not after the garbage");
    assert!(!captured.text().contains("skipping"), "a write reads headers only and warns about nothing: {}", captured.text());
    // Listing the checkpoints (as a start does) names the garbage.
    let listing = sluice_connectors::test_fs::CapturedLogs::default();
    let subscriber = tracing_subscriber::fmt().with_writer(listing.clone()).with_ansi(false).without_time().with_target(false).finish();
    tracing::subscriber::with_default(subscriber, || list_intact(&d).expect("list"));
    assert!(
        listing
            .text()
            .contains(&format!(" WARN skipping a file that is not a valid checkpoint path={} why=not a checkpoint file", name(u64::MAX - 1).display())),
        "{}",
        listing.text()
    );
    assert_eq!(list_intact(&d).expect("list"), vec![name(300), name(400)], "the newest two intact ones kept");
    assert_eq!(std::fs::read(name(u64::MAX - 1)).expect("left alone"), b"garbage, not a checkpoint");
    assert_eq!(std::fs::read(name(5_000)).expect("left alone"), b"more garbage");
    assert_eq!(load_latest(&d, &kafka()).expect("load").expect("found").1.snapshot.cut_epoch, 400);

    // The clock steps back: names still follow the newest intact checkpoint, stepping over a
    // garbage file holding the next number (never written over).
    std::fs::write(name(401), b"garbage at the next name").expect("garbage");
    let (stepped_back, _) = write(&d, &file(150, kafka())).expect("write");
    assert_eq!(stepped_back, name(402));
    assert_eq!(std::fs::read(name(401)).expect("left alone"), b"garbage at the next name");
    assert_eq!(load_latest(&d, &kafka()).expect("load").expect("found").1.snapshot.cut_epoch, 150, "the last written is restored");
    // The clock catches up with the garbage's number: the name steps over it.
    let (past, _) = write(&d, &file(5_000, kafka())).expect("write");
    assert_eq!(past, name(5_001));
    assert_eq!(list_intact(&d).expect("list"), vec![name(402), name(5_001)]);
}

/// Finding: `ckpt-99999999999999999999.bin` (a number beyond u64) was skipped silently,
/// though the README says a file named like a checkpoint that is not one is skipped with a
/// warning naming it. The listings of a start (restore, anomaly check, `log reset`) now warn
/// once each; the periodic writes stay quiet; the file is still skipped and left alone.
#[test]
fn a_checkpoint_name_beyond_u64_is_skipped_with_a_warning_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().join("checkpoints");
    write(&d, &file(100, kafka())).expect("write");
    let beyond = d.join("ckpt-99999999999999999999.bin");
    std::fs::write(&beyond, encode(&file(200, kafka())).expect("encode")).expect("write");
    let warning = format!(
        " WARN skipping a file that is not a valid checkpoint path={} why=the number in its name is larger than 18446744073709551615 (u64), so no \
         checkpoint is named so\n",
        beyond.display()
    );
    let captured = |f: &dyn Fn()| {
        let logs = sluice_connectors::test_fs::CapturedLogs::default();
        let subscriber = tracing_subscriber::fmt().with_writer(logs.clone()).with_ansi(false).without_time().with_target(false).finish();
        tracing::subscriber::with_default(subscriber, f);
        logs.text()
    };
    let name = |c: u64| d.join(format!("ckpt-{c:020}.bin"));
    assert_eq!(captured(&|| assert_eq!(list_intact(&d).expect("list"), vec![name(100)])), warning);
    assert_eq!(captured(&|| assert_eq!(load_latest(&d, &kafka()).expect("load").expect("found").0, name(100))), warning);
    assert_eq!(captured(&|| assert_eq!(write(&d, &file(300, kafka())).expect("write").0, name(300))), "", "a write warns about nothing");
    assert_eq!(checkpoint_files(&d).expect("list"), vec![name(100), name(300)]);
    assert!(beyond.exists(), "left alone");
}
