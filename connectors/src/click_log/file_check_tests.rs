//! `clicks.redb` deleted or replaced while the log has it open (`file_check.rs`).

use super::*;

use super::recovery_tests::{event, events};

fn entries(range: Range<u64>, backfill: Range<u64>) -> Vec<LogEntry> {
    range.map(|i| LogEntry { offset: i, backfill: backfill.contains(&i), arrival_ms: None, event: event(i) }).collect()
}

#[test]
fn a_file_in_place_passes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = ClickLog::open(dir.path()).expect("open");
    log.append(&events(0..2)).expect("append");
    assert_eq!(log.check_file().expect("check"), FileCheck::InPlace);
}

/// A deleted file is written back to its path with every event, mark, offset and the
/// metadata, the log switches to it, and what is appended after is in it across a restart.
#[test]
fn a_deleted_file_is_restored_from_the_open_file_and_nothing_is_lost() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(CLICK_LOG_FILE_NAME);
    let log = ClickLog::open(dir.path()).expect("open");
    log.append(&events(0..5)).expect("append");
    log.append_backfill(&events(5..7)).expect("append backfill");
    log.append(&events(7..10)).expect("append");
    assert_eq!(log.truncate_before(2).expect("truncate"), 2);
    log.set_link_store_id(42).expect("link store id");
    std::fs::remove_file(&path).expect("delete the log file");
    // Written to the deleted file: restored with the rest.
    assert_eq!(log.append(&events(10..12)).expect("append to the deleted file"), 10..12);
    assert_eq!(log.check_file().expect("restore"), FileCheck::Restored { events: 12 });
    assert!(path.exists());
    assert!(!dir.path().join("clicks.redb.restoring").exists(), "the temporary copy is gone");
    assert_eq!(log.check_file().expect("check"), FileCheck::InPlace);
    assert_eq!(log.append(&events(12..13)).expect("append after the restore"), 12..13);
    assert_eq!(log.read_entries(0, 100).expect("read"), entries(2..13, 5..7));
    drop(log);
    let log = ClickLog::open(dir.path()).expect("reopen after a restart");
    assert_eq!((log.low(), log.head()), (2, 13));
    assert_eq!(log.link_store_id().expect("link store id"), Some(42));
    assert_eq!(log.read_entries(0, 100).expect("read"), entries(2..13, 5..7));
}

/// Another file at the path is left alone; the log saves its open file, with every event,
/// to a side file next to it, writes there from then on, and reports both paths. Moving the
/// side file to the path while stopped keeps every click.
#[test]
fn a_replaced_file_is_left_alone_and_the_open_file_is_saved_to_a_side_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(CLICK_LOG_FILE_NAME);
    let log = ClickLog::open(dir.path()).expect("open");
    log.append(&events(0..3)).expect("append");
    std::fs::remove_file(&path).expect("delete");
    std::fs::write(&path, b"someone else's file").expect("write another file");
    // Written to the unlinked file before the check: saved with the rest.
    assert_eq!(log.append(&events(3..4)).expect("append"), 3..4);
    let side = match log.check_file() {
        Err(Error::ClickLogDiverted { path: p, side }) => {
            assert_eq!(p, path.display().to_string());
            PathBuf::from(side)
        }
        other => panic!("expected the log diverted to a side file, got {other:?}"),
    };
    let name = side.file_name().expect("name").to_string_lossy().into_owned();
    assert!(name.starts_with("clicks.redb.recovered-") && side.parent() == Some(dir.path()), "{}", side.display());
    let e = log.check_file().expect_err("still diverted");
    assert_eq!(
        e.to_string(),
        format!(
            "click log \"{p}\" was replaced by another file while in use; sluice saved the log it had open, with every click, to \
             \"{s}\" and writes new clicks there, and leaves the file at \"{p}\" alone. To keep every click: stop sluice, \
             move \"{s}\" to \"{p}\" and start it again",
            p = path.display(),
            s = side.display()
        )
    );
    assert_eq!(std::fs::read(&path).expect("read"), b"someone else's file");
    assert_eq!(log.append(&events(4..6)).expect("append to the side file"), 4..6);
    assert_eq!(log.read(0, 10).expect("read").len(), 6);
    drop(log);
    std::fs::rename(&side, &path).expect("the documented way back");
    let log = ClickLog::open(dir.path()).expect("reopen");
    assert_eq!((log.low(), log.head()), (0, 6));
    assert_eq!(log.read_entries(0, 100).expect("read"), entries(0..6, 0..0));
}

/// The file's directory removed too (`rm -rf` of the data dir): the write-back fails until
/// the directory exists again, and meanwhile the log keeps its open file — appends go on
/// into it, nothing is created at the path — and says so; once the directory is back, the
/// next check writes every event back with its offset, log id and metadata.
#[test]
fn a_removed_log_dir_keeps_the_open_file_and_the_next_check_after_mkdir_writes_every_event_back() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("d");
    let path = dir.join(CLICK_LOG_FILE_NAME);
    let log = ClickLog::open(&dir).expect("open");
    let log_id = log.log_id();
    log.set_link_store_id(7).expect("link store id");
    assert_eq!(log.append(&events(0..5)).expect("append"), 0..5);
    std::fs::remove_dir_all(&dir).expect("rm -rf the data dir");
    assert_eq!(log.append(&events(5..10)).expect("append to the open, deleted file"), 5..10);
    let expected = format!(
        "click log \"{p}\" and its directory \"{d}\" were removed while in use; sluice keeps every click, new ones included, in the \
         file it has open (deleted: only this process can still read it) and writes it back to \"{p}\" within seconds once the \
         directory exists again (`mkdir -p {d}`). If sluice stops before, the clicks in that file are lost",
        p = path.display(),
        d = dir.display()
    );
    for _ in 0..2 {
        match log.check_file() {
            Err(e @ Error::ClickLogDirRemoved { .. }) => assert_eq!(e.to_string(), expected),
            other => panic!("expected the removed directory, got {other:?}"),
        }
        assert!(!dir.exists(), "nothing is created while the directory is gone");
    }
    assert_eq!(log.read(0, 100).expect("read the open file").len(), 10);
    std::fs::create_dir(&dir).expect("mkdir");
    assert_eq!(log.append(&events(10..13)).expect("append before the next check"), 10..13);
    assert!(!path.exists(), "an append never creates a new file at the path");
    assert_eq!(log.check_file().expect("written back"), FileCheck::Restored { events: 13 });
    assert_eq!(log.check_file().expect("check"), FileCheck::InPlace);
    assert_eq!(log.read_entries(0, 100).expect("read"), entries(0..13, 0..0));
    drop(log);
    let log = ClickLog::open(&dir).expect("reopen after a restart");
    assert_eq!((log.low(), log.head(), log.log_id()), (0, 13, log_id));
    assert_eq!(log.link_store_id().expect("link store id"), Some(7));
    assert_eq!(log.read_entries(0, 100).expect("read"), entries(0..13, 0..0));
}

/// `side_files` lists the saved side files of a data dir, and only those.
#[test]
fn side_files_lists_only_the_recovered_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert!(side_files(dir.path()).is_empty());
    for name in ["clicks.redb", "clicks.redb.recovered-20261202T060000.000Z", "clicks.redb.recovered-x.restoring", "clicks.redb.damaged-1"] {
        std::fs::write(dir.path().join(name), b"x").expect("write");
    }
    assert_eq!(side_files(dir.path()), vec![dir.path().join("clicks.redb.recovered-20261202T060000.000Z")]);
    assert!(side_files(&dir.path().join("missing")).is_empty());
}
