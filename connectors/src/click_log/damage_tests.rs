//! `clicks.redb` truncated while the log has it open (`damage.rs`): real redb files, cut
//! with `set_len` from outside like `truncate -s`.

use super::recovery_tests::{event, events};
use super::*;

fn offsets_and_events(range: Range<u64>) -> Vec<(u64, ClickEvent)> {
    range.map(|i| (i, event(i))).collect()
}

/// Cuts the file at `path` to `len` bytes from outside the log (as `truncate -s` does).
fn truncate(path: &Path, len: u64) {
    let f = std::fs::OpenOptions::new().write(true).open(path).expect("open the file");
    f.set_len(len).expect("truncate");
}

/// A log of 3,000 events in 30 appends, written by this log handle.
fn written(dir: &Path) -> ClickLog {
    let log = ClickLog::open(dir).expect("open");
    for b in 0..30u64 {
        log.append(&events(b * 100..(b + 1) * 100)).expect("append");
    }
    log
}

/// The F2 repro at the level of the log: the file is cut to 70 % of its size while open.
/// The 2-s check notices, writes the file back from the open database, and every event —
/// those before the cut and those appended after it — is in the file across a restart.
#[test]
fn a_truncated_file_is_written_back_by_the_check_and_nothing_is_lost() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(CLICK_LOG_FILE_NAME);
    let log = written(dir.path());
    let len = std::fs::metadata(&path).expect("metadata").len();
    truncate(&path, len * 7 / 10);
    assert_eq!(log.check_file().expect("written back"), FileCheck::Rewritten { events: 3_000 });
    assert!(!dir.path().join("clicks.redb.restoring").exists(), "the temporary copy is gone");
    assert_eq!(log.check_file().expect("check"), FileCheck::InPlace);
    assert!(log.damaged().is_none());
    assert_eq!(log.append(&events(3_000..3_010)).expect("append after"), 3_000..3_010);
    drop(log);
    let log = ClickLog::open(dir.path()).expect("the file opens at the next start");
    assert_eq!((log.low(), log.head()), (0, 3_010));
    assert_eq!(log.read(0, 10_000).expect("read"), offsets_and_events(0..3_010));
}

/// Cut between two appends with no check in between: the next append writes the file back
/// before it writes anything (no hole of zeros), then appends.
#[test]
fn an_append_after_a_truncation_writes_the_file_back_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(CLICK_LOG_FILE_NAME);
    let log = written(dir.path());
    let len = std::fs::metadata(&path).expect("metadata").len();
    truncate(&path, len / 2);
    assert_eq!(log.append(&events(3_000..3_100)).expect("append"), 3_000..3_100);
    assert_eq!(log.check_file().expect("check"), FileCheck::InPlace);
    drop(log);
    let log = ClickLog::open(dir.path()).expect("the file opens at the next start");
    assert_eq!(log.read(0, 10_000).expect("read"), offsets_and_events(0..3_100));
}

/// Cut to 100,000 bytes in a log written by an earlier process: the pages this process never
/// read are gone with the cut, so the file cannot be written back. The damage is reported
/// (naming the file, the sizes and the way out) by every check from then on, and the file
/// is refused at the next open — never silent.
#[test]
fn a_truncated_file_of_an_earlier_run_is_reported_as_damaged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(CLICK_LOG_FILE_NAME);
    drop(written(dir.path()));
    let log = ClickLog::open(dir.path()).expect("reopen");
    let len = std::fs::metadata(&path).expect("metadata").len();
    assert!(len > 100_000, "{len}");
    truncate(&path, 100_000);
    let expected = format!(
        "click log \"{p}\" was damaged while in use (the file shrank from {len} to 100000 bytes, truncated outside sluice, and could \
         not be written back from the open file: could not copy it to \"{p}.restoring\": click log could not copy the log: I/O error: \
         failed to fill whole buffer); the file will not open again. Stop sluice (its graceful stop writes a checkpoint holding every \
         click counted so far), then run `sluice log reset --data-dir {d}` to continue from that checkpoint on a new, empty click log",
        p = path.display(),
        d = dir.path().display()
    );
    for _ in 0..2 {
        match log.check_file() {
            Err(e @ Error::ClickLogDamagedInUse { .. }) => assert_eq!(e.to_string(), expected),
            other => panic!("expected the damage reported, got {other:?}"),
        }
    }
    assert_eq!(log.damaged().map(|e| e.to_string()), Some(expected));
    drop(log);
    assert!(matches!(ClickLog::open(dir.path()), Err(Error::ClickLogDamaged { .. })));
}
