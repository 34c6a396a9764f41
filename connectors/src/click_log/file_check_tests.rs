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
