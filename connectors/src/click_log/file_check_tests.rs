//! `clicks.redb` deleted or replaced while the log has it open (`file_check.rs`).

use super::*;

use super::recovery_tests::{event, events};

fn entries(range: Range<u64>, backfill: Range<u64>) -> Vec<LogEntry> {
    range.map(|i| LogEntry { offset: i, backfill: backfill.contains(&i), event: event(i) }).collect()
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

/// Another file at the path is left alone; the log reports it and keeps appending to the
/// file it opened.
#[test]
fn a_replaced_file_is_reported_and_left_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(CLICK_LOG_FILE_NAME);
    let log = ClickLog::open(dir.path()).expect("open");
    log.append(&events(0..3)).expect("append");
    std::fs::remove_file(&path).expect("delete");
    std::fs::write(&path, b"someone else's file").expect("write another file");
    match log.check_file() {
        Err(e @ Error::ClickLogReplaced { .. }) => assert_eq!(
            e.to_string(),
            format!(
                "click log \"{}\" was replaced by another file while in use; sluice keeps writing to the file it opened, \
                 which is lost at the next restart: stop sluice, keep the file you want at that path and start it again",
                path.display()
            )
        ),
        other => panic!("expected the replaced file, got {other:?}"),
    }
    assert_eq!(std::fs::read(&path).expect("read"), b"someone else's file");
    assert_eq!(log.append(&events(3..4)).expect("append"), 3..4);
    assert_eq!(log.read(0, 10).expect("read").len(), 4);
}
