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
/// read are gone with the cut (redb reads them past the new end: "failed to fill whole
/// buffer", and latches that error), so the file cannot be written back. Instead of dropping
/// every click from then on, the log moves the damaged file aside and goes on in a new file
/// that continues at the head with the same log id: appends after the damage are kept, across
/// a restart. The damage is reported (naming both files, the sizes, the lost offsets and the
/// way on) by every check until the process stops — never silent.
#[test]
fn a_truncated_file_of_an_earlier_run_goes_on_in_a_new_file_and_keeps_new_clicks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(CLICK_LOG_FILE_NAME);
    drop(written(dir.path()));
    let log = ClickLog::open(dir.path()).expect("reopen");
    let log_id = log.log_id();
    log.set_link_store_id(77).expect("link store id");
    let len = std::fs::metadata(&path).expect("metadata").len();
    assert!(len > 100_000, "{len}");
    truncate(&path, 100_000);
    let first = log.check_file().expect_err("damaged");
    let aside: Vec<String> = std::fs::read_dir(dir.path())
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("clicks.redb.damaged-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    let damaged = dir.path().join(&aside[0]);
    assert_eq!(std::fs::metadata(&damaged).expect("the damaged file is kept").len(), 100_000);
    assert!(!dir.path().join("clicks.redb.restoring").exists(), "the temporary file is gone");
    let expected = format!(
        "click log \"{p}\" was damaged while in use (the file shrank from {len} to 100000 bytes, truncated outside sluice, and could \
         not be written back from the open file: could not copy it to \"{p}.restoring\": click log could not copy the log: I/O error: \
         failed to fill whole buffer); sluice moved it aside to \"{d}\" and goes on in a new click log at \"{p}\" that continues at \
         offset 3000, so new clicks are kept and counted. The clicks the damaged file stored (offsets 0..3000) are no longer in the \
         log; the running stats keep those they counted. Stop sluice gracefully (its stop writes a checkpoint holding every click \
         counted so far, which the next start continues from) and start it again",
        p = path.display(),
        d = damaged.display()
    );
    assert!(matches!(first, Error::ClickLogContinued { .. }), "{first:?}");
    assert_eq!(first.to_string(), expected);
    assert_eq!((log.low(), log.head()), (3_000, 3_000));
    assert_eq!(log.append(&events(3_000..3_010)).expect("appends go on after the damage"), 3_000..3_010);
    assert_eq!(log.read(0, 100).expect("read"), offsets_and_events(3_000..3_010));
    assert_eq!(log.check_file().expect_err("reported until the stop").to_string(), expected);
    assert_eq!(log.damaged().map(|e| e.to_string()), Some(expected));
    drop(log);
    let log = ClickLog::open(dir.path()).expect("the new file opens at the next start");
    assert_eq!((log.low(), log.head(), log.log_id()), (3_000, 3_010, log_id));
    assert_eq!(log.link_store_id().expect("link store id"), Some(77));
    assert_eq!(log.read(0, 10_000).expect("read"), offsets_and_events(3_000..3_010));
}

/// A second cut in the same run, of the file the log continued in after the first: it is
/// noticed and handled like the first (written back, or continued in yet another file), not
/// left for the next start to refuse; the first damage is still reported, and the clicks
/// appended after the second cut are in the log the next start opens.
#[test]
fn a_second_cut_after_a_continuation_is_noticed_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(CLICK_LOG_FILE_NAME);
    drop(written(dir.path()));
    let log = ClickLog::open(dir.path()).expect("reopen");
    let len = std::fs::metadata(&path).expect("metadata").len();
    truncate(&path, 100_000);
    let first = log.check_file().expect_err("damaged").to_string();
    assert_eq!(log.append(&events(3_000..3_010)).expect("append"), 3_000..3_010);
    assert!(len > 100_000);
    truncate(&path, 0);
    assert_eq!(log.append(&events(3_010..3_020)).expect("appends go on after the second cut"), 3_010..3_020);
    let second = log.check_file().expect_err("still reported");
    assert!(matches!(second, Error::ClickLogContinued { .. }), "{second:?}");
    let aside = std::fs::read_dir(dir.path())
        .expect("ls")
        .filter(|e| e.as_ref().expect("entry").file_name().to_string_lossy().starts_with("clicks.redb.damaged-"))
        .count();
    match aside {
        // Written back from the open file: the first damage is what is reported.
        1 => assert_eq!(second.to_string(), first),
        // Continued again: the message names the earlier damaged file and both lost ranges.
        2 => assert!(second.to_string().contains("earlier in this run the file it continued from was damaged too"), "{second}"),
        n => panic!("{n} damaged files moved aside"),
    }
    drop(log);
    let log = ClickLog::open(dir.path()).expect("the file after the second cut opens at the next start");
    assert_eq!(log.head(), 3_020);
    let kept = log.read(0, 10_000).expect("read");
    let want = if aside == 1 { offsets_and_events(3_000..3_020) } else { offsets_and_events(3_010..3_020) };
    assert_eq!(kept, want);
}

/// The race of a cut right after a burst: the length used to be sampled after each commit,
/// so a `truncate -s` landing between a commit's last write and that sample was taken for
/// the committed length, no check noticed it, and the next start refused the file. The
/// length redb left the file at is now known from its storage backend (`len_guard.rs`):
/// the check notices the cut however late the sample, and writes the file back.
#[test]
fn a_cut_sampled_as_the_committed_length_is_still_noticed_and_written_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(CLICK_LOG_FILE_NAME);
    let log = written(dir.path());
    let len = std::fs::metadata(&path).expect("metadata").len();
    truncate(&path, len / 2);
    // The sample after the commit lands after the cut.
    log.inner.watch.note_commit();
    assert_eq!(log.check_file().expect("written back"), FileCheck::Rewritten { events: 3_000 });
    assert_eq!(log.check_file().expect("check"), FileCheck::InPlace);
    assert_eq!(log.append(&events(3_000..3_010)).expect("append after"), 3_000..3_010);
    drop(log);
    let log = ClickLog::open(dir.path()).expect("the file opens at the next start");
    assert_eq!(log.read(0, 10_000).expect("read"), offsets_and_events(0..3_010));
}

/// A cut that lands while a commit is written and that the commit's own writes cover again
/// (the file grows back past the cut, with a hole of zeros): the backend found the file
/// short before a write, so the check notices it although the file is long again.
#[test]
fn a_cut_covered_again_by_a_commit_is_noticed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(CLICK_LOG_FILE_NAME);
    let log = written(dir.path());
    let len = std::fs::metadata(&path).expect("metadata").len();
    truncate(&path, len / 2);
    {
        // A commit that started before the cut: no pre-append check between them.
        let db = log.test_db();
        let txn = db.begin_write().expect("begin");
        txn.open_table(META).expect("meta").insert(META_HEAD, 3_000u64).expect("insert");
        txn.commit().expect("commit");
    }
    std::fs::OpenOptions::new().write(true).open(&path).expect("open").set_len(len).expect("grow back");
    log.inner.watch.note_commit();
    assert!(matches!(log.check_file(), Ok(FileCheck::Rewritten { .. }) | Err(Error::ClickLogContinued { .. })), "noticed");
    drop(log);
    let log = ClickLog::open(dir.path()).expect("the file opens at the next start");
    assert_eq!(log.head(), 3_000);
}
