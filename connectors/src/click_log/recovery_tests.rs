//! The click log recovers from I/O errors (`recovery.rs`): real redb files, with the I/O
//! errors injected under redb by a storage backend wrapping its own file backend.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use redb::StorageBackend;
use redb::backends::FileBackend;
use sluice_schemas::ClickEvent;
use uuid::Uuid;

use super::len_guard::forward_range_locks;
use super::recovery::{REOPEN_BACKOFF_MAX, reopen_delay};
use super::*;
use crate::test_fs::{SmallFileSystem, fill, logged_about};

/// ENOSPC on Linux.
const NO_SPACE: i32 = 28;

/// Faults the backend injects.
#[derive(Debug, Default)]
struct Faults {
    /// Every write and sync fails with ENOSPC (a full disk).
    full: AtomicBool,
    /// The first sync after a write of the header (offset 0) fails once: the last step of a
    /// commit fails after its header reached the file.
    fail_header_sync: AtomicBool,
    header_written: AtomicBool,
    /// How often the file was opened.
    opens: AtomicU32,
}

#[derive(Debug)]
struct FaultyBackend {
    file: FileBackend,
    faults: Arc<Faults>,
}

fn no_space() -> std::io::Error {
    std::io::Error::from_raw_os_error(NO_SPACE)
}

impl StorageBackend for FaultyBackend {
    fn len(&self) -> std::result::Result<u64, std::io::Error> {
        self.file.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> std::result::Result<(), std::io::Error> {
        self.file.read(offset, out)
    }
    fn set_len(&self, len: u64) -> std::result::Result<(), std::io::Error> {
        self.file.set_len(len)
    }
    fn sync_data(&self) -> std::result::Result<(), std::io::Error> {
        if self.faults.full.load(Ordering::SeqCst) {
            return Err(no_space());
        }
        if self.faults.header_written.swap(false, Ordering::SeqCst) && self.faults.fail_header_sync.swap(false, Ordering::SeqCst) {
            self.file.sync_data()?;
            return Err(std::io::Error::other("injected fsync failure"));
        }
        self.file.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> std::result::Result<(), std::io::Error> {
        if self.faults.full.load(Ordering::SeqCst) {
            return Err(no_space());
        }
        if offset == 0 {
            self.faults.header_written.store(true, Ordering::SeqCst);
        }
        self.file.write(offset, data)
    }
    fn close(&self) -> std::result::Result<(), std::io::Error> {
        self.file.close()
    }
    forward_range_locks!(file);
}

/// A log in `dir` whose file goes through a [`FaultyBackend`] driven by the returned faults,
/// reopened without backoff delay unless `backoff` is given.
fn faulty_log(dir: &Path, backoff: Duration) -> (ClickLog, Arc<Faults>) {
    let faults = Arc::new(Faults::default());
    let f = Arc::clone(&faults);
    let opener: Opener = Box::new(move |path, _, _| {
        f.opens.fetch_add(1, Ordering::SeqCst);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| Error::click_log("open", redb::DatabaseError::Storage(redb::StorageError::Io(e))))?;
        let backend = FaultyBackend { file: FileBackend::new(file).map_err(|e| Error::click_log("open", e))?, faults: Arc::clone(&f) };
        Database::builder().set_check_integrity_on_open(true).create_with_backend(backend).map_err(|e| Error::click_log("open", e))
    });
    let log = ClickLog::open_with(dir, opener).expect("open");
    log.inner.write.lock().expect("lock").recovery.initial_backoff = backoff;
    (log, faults)
}

/// Event `i` of a synthetic stream (also used by `file_check_tests`).
pub(super) fn event(i: u64) -> ClickEvent {
    ClickEvent {
        event_id: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 | u128::from(i)),
        code: format!("c{}", i % 5),
        ts: 1_700_000_000_000 + i as i64,
        ip_trunc: None,
        visitor_id: i,
        user_agent: "agent".into(),
        referrer: None,
        accept_language: None,
        edge_region: None,
    }
}

pub(super) fn events(range: Range<u64>) -> Vec<ClickEvent> {
    range.map(event).collect()
}

fn offsets_and_events(range: Range<u64>) -> Vec<(u64, ClickEvent)> {
    range.map(|i| (i, event(i))).collect()
}

fn assert_io_error(result: Result<Range<u64>>, os_error: Option<i32>) {
    match result {
        Err(Error::ClickLog { op: "append events", source }) => match *source {
            redb::Error::Io(e) => assert_eq!(e.raw_os_error(), os_error, "{e}"),
            other => panic!("expected an I/O error, got {other:?}"),
        },
        other => panic!("expected an I/O error, got {other:?}"),
    }
}

/// A full disk fails the append with ENOSPC and closes the file; reopening fails while the
/// disk is full, then (space freed) the next operation reopens the file and appends resume at
/// the same offsets, every acknowledged event there once, across a restart too.
#[test]
fn a_full_disk_closes_the_log_and_appends_resume_once_there_is_room() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(CLICK_LOG_FILE_NAME).display().to_string();
    let (log, faults) = faulty_log(dir.path(), Duration::ZERO);
    assert_eq!(log.append(&events(0..5)).expect("append"), 0..5);
    faults.full.store(true, Ordering::SeqCst);
    assert_io_error(log.append(&events(5..10)), Some(NO_SPACE));
    assert_eq!(log.head(), 5);
    // Still full: the reopen fails (it writes the header) and the append is refused.
    match log.append(&events(5..10)) {
        Err(Error::ClickLogClosed { path: p, cause, retry_in_ms: 0 }) => {
            assert_eq!(p, path);
            assert_eq!(cause, "click log could not open: I/O error: No space left on device (os error 28)");
        }
        other => panic!("expected the closed log, got {other:?}"),
    }
    assert_eq!(faults.opens.load(Ordering::SeqCst), 2, "the first open and one reopen");
    faults.full.store(false, Ordering::SeqCst);
    // A reader reopens it as well as an append would.
    assert_eq!(log.read(0, 100).expect("read"), offsets_and_events(0..5));
    assert_eq!(faults.opens.load(Ordering::SeqCst), 3);
    assert_eq!(log.append(&events(5..10)).expect("append after space was freed"), 5..10);
    assert_eq!(log.append(&events(10..12)).expect("append"), 10..12);
    assert_eq!(log.read(0, 100).expect("read"), offsets_and_events(0..12));
    assert_eq!(faults.opens.load(Ordering::SeqCst), 3, "no reopen once it works");
    drop(log);
    let log = ClickLog::open(dir.path()).expect("reopen after a restart");
    assert_eq!((log.low(), log.head()), (0, 12));
    assert_eq!(log.read(0, 100).expect("read"), offsets_and_events(0..12));
}

/// A commit whose final fsync fails after its header reached the file is reported as failed
/// but is in the file: the reopen keeps it, the retried append gets its offsets without a
/// second copy, and the next append follows it.
#[test]
fn a_commit_that_failed_after_reaching_the_file_is_not_stored_twice_when_retried() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, faults) = faulty_log(dir.path(), Duration::ZERO);
    assert_eq!(log.append(&events(0..3)).expect("append"), 0..3);
    faults.fail_header_sync.store(true, Ordering::SeqCst);
    assert_io_error(log.append(&events(3..6)), None);
    assert_eq!(log.head(), 3, "not acknowledged");
    assert_eq!(log.append(&events(3..6)).expect("the retry"), 3..6);
    assert_eq!(log.head(), 6);
    assert_eq!(log.append(&events(6..8)).expect("append"), 6..8);
    assert_eq!(log.read(0, 100).expect("read"), offsets_and_events(0..8));
    drop(log);
    let log = ClickLog::open(dir.path()).expect("reopen after a restart");
    assert_eq!(log.read(0, 100).expect("read"), offsets_and_events(0..8));
}

/// When the next append after such a commit is another batch (the failed one was given up),
/// the stored events stay where they are and the new batch follows them.
#[test]
fn events_of_a_failed_commit_that_reached_the_file_stay_when_another_batch_comes_next() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, faults) = faulty_log(dir.path(), Duration::ZERO);
    faults.fail_header_sync.store(true, Ordering::SeqCst);
    assert_io_error(log.append(&events(0..2)), None);
    assert_eq!(log.append(&events(2..5)).expect("another batch"), 2..5);
    assert_eq!(log.read(0, 100).expect("read"), offsets_and_events(0..5));
}

/// After a failed reopen the next attempts wait for the backoff: operations meanwhile are
/// refused without opening the file.
#[test]
fn reopen_attempts_back_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, faults) = faulty_log(dir.path(), Duration::from_secs(4));
    faults.full.store(true, Ordering::SeqCst);
    assert_io_error(log.append(&events(0..1)), Some(NO_SPACE));
    match log.append(&events(0..1)) {
        Err(Error::ClickLogClosed { retry_in_ms: 4000, .. }) => {}
        other => panic!("expected the closed log with a 4 s backoff, got {other:?}"),
    }
    faults.full.store(false, Ordering::SeqCst);
    match log.read(0, 1) {
        Err(Error::ClickLogClosed { retry_in_ms, .. }) => assert!((1..4000).contains(&retry_in_ms), "{retry_in_ms}"),
        other => panic!("expected the closed log inside its backoff, got {other:?}"),
    }
    assert_eq!(faults.opens.load(Ordering::SeqCst), 2, "no open inside the backoff");
}

#[test]
fn the_reopen_delay_doubles_up_to_its_cap() {
    let ms = Duration::from_millis;
    let delays: Vec<Duration> = (1..=9).map(|n| reopen_delay(ms(50), n)).collect();
    assert_eq!(delays, [ms(50), ms(100), ms(200), ms(400), ms(800), ms(1600), ms(3200), REOPEN_BACKOFF_MAX, REOPEN_BACKOFF_MAX]);
    assert_eq!(reopen_delay(ms(50), u32::MAX), REOPEN_BACKOFF_MAX);
    assert_eq!(reopen_delay(Duration::ZERO, 3), Duration::ZERO);
}

/// The write probe fails while the disk is full (the commit, then the reopen), succeeds once
/// there is room (reopening the file and committing), and leaves the events and offsets as
/// they were.
#[test]
fn the_write_probe_fails_while_the_disk_is_full_and_reopens_the_log_once_there_is_room() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(CLICK_LOG_FILE_NAME).display().to_string();
    let (log, faults) = faulty_log(dir.path(), Duration::ZERO);
    assert_eq!(log.append(&events(0..3)).expect("append"), 0..3);
    log.probe_write().expect("the probe of a healthy log");
    faults.full.store(true, Ordering::SeqCst);
    match log.probe_write() {
        Err(Error::ClickLog { op: "probe writes", source }) => match *source {
            redb::Error::Io(e) => assert_eq!(e.raw_os_error(), Some(NO_SPACE), "{e}"),
            other => panic!("expected an I/O error, got {other:?}"),
        },
        other => panic!("expected the probe's I/O error, got {other:?}"),
    }
    match log.probe_write() {
        Err(e @ Error::ClickLogClosed { .. }) => assert_eq!(
            e.to_string(),
            format!(
                "click log \"{path}\" is closed after an I/O error (click log could not open: I/O error: No space left on device (os error 28)); \
                 it is reopened by the next operation once the storage works again"
            )
        ),
        other => panic!("expected the closed log, got {other:?}"),
    }
    assert_eq!(faults.opens.load(Ordering::SeqCst), 2, "the first open and one reopen");
    faults.full.store(false, Ordering::SeqCst);
    log.probe_write().expect("the probe once there is room");
    assert_eq!(faults.opens.load(Ordering::SeqCst), 3, "the probe reopened the file");
    assert_eq!(log.head(), 3);
    assert_eq!(log.append(&events(3..5)).expect("append"), 3..5);
    drop(log);
    let log = ClickLog::open(dir.path()).expect("reopen after a restart");
    assert_eq!((log.low(), log.head()), (0, 5));
    assert_eq!(log.read(0, 100).expect("read"), offsets_and_events(0..5));
}

/// An I/O error while the file and its directory are gone (`rm -rf` of the data dir, then
/// a full disk): the reopen goes through the log's own descriptor of the deleted file —
/// never a new, empty file at the path — appends resume in it at their offsets, and the
/// check after `mkdir` writes every event back to the path.
#[test]
fn an_io_error_after_the_log_dir_was_removed_reopens_the_same_file_not_a_new_one() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("d");
    let (log, faults) = faulty_log(&dir, Duration::ZERO);
    let log_id = log.log_id();
    assert_eq!(log.append(&events(0..5)).expect("append"), 0..5);
    std::fs::remove_dir_all(&dir).expect("rm -rf the data dir");
    faults.full.store(true, Ordering::SeqCst);
    assert_io_error(log.append(&events(5..8)), Some(NO_SPACE));
    faults.full.store(false, Ordering::SeqCst);
    assert_eq!(log.append(&events(5..8)).expect("append after the reopen"), 5..8);
    assert_eq!(faults.opens.load(Ordering::SeqCst), 2, "the first open and one reopen, of the deleted file");
    assert!(!dir.exists(), "no new file (nor directory) at the path");
    assert_eq!(log.read(0, 100).expect("read"), offsets_and_events(0..8));
    std::fs::create_dir(&dir).expect("mkdir");
    assert_eq!(log.check_file().expect("written back"), FileCheck::Restored { events: 8 });
    assert_eq!(log.read(0, 100).expect("read"), offsets_and_events(0..8));
    drop(log);
    let log = ClickLog::open(&dir).expect("reopen after a restart");
    assert_eq!((log.low(), log.head(), log.log_id()), (0, 8, log_id));
    assert_eq!(log.read(0, 100).expect("read"), offsets_and_events(0..8));
}

/// A real full disk (a 4 MiB tmpfs; root only): every retry of the failed append reopens
/// the file, which redb finds not closed cleanly, and drops the commit the error tore. Each
/// message of that (the I/O error, the failed close, redb's recovery and fallback, the
/// reopen) is logged at its level once, the repeats at debug level; the commit once there is room ends the episode with one
/// line, and the next full disk is a new episode, logged again.
#[test]
fn a_full_disk_logs_each_recovery_message_once_per_episode() {
    let Some(fs) = SmallFileSystem::temporary(4 << 20) else { return };
    let mnt = fs.path();
    let path = mnt.join(CLICK_LOG_FILE_NAME).display().to_string();
    logged_about(&path);
    let log = ClickLog::open(mnt).expect("open on tmpfs");
    log.inner.write.lock().expect("lock").recovery.initial_backoff = Duration::ZERO;
    assert_eq!(log.append(&events(0..100)).expect("append"), 0..100);
    let mut failures = Vec::new();
    for episode in 0..2u64 {
        fill(mnt);
        let batch = 100 + episode * 100..200 + episode * 100;
        failures.push((0..6).filter(|_| log.append(&events(batch.clone())).is_err()).count());
        std::fs::remove_file(mnt.join("filler")).expect("free space");
        assert_eq!(log.append(&events(batch.clone())).expect("an append once there is room"), batch);
    }
    assert_eq!(log.read(0, 1000).expect("read"), offsets_and_events(0..300));
    assert_eq!(failures, [6, 6], "every append fails while the disk is full");
    let lines = logged_about(&path);
    let text = lines.join("\n");
    const FELL_BACK: &str =
        "click log failed its integrity check at open: its newest commit is damaged; redb is repairing it by falling back to the commit before";
    const NOT_CLOSED: &str = "click log was not closed cleanly (its process was killed or crashed): recovering it from its last commit";
    let ours = [
        "click log I/O error",
        "click log: closing the file",
        NOT_CLOSED,
        FELL_BACK,
        "could not reopen the click log",
        "click log reopened",
        "click log: commits succeed",
    ];
    let loud: Vec<String> = lines.iter().filter(|l| !l.starts_with("DEBUG") && ours.iter().any(|m| l.contains(m))).cloned().collect();
    // redb's own wording comes from redb (a redb upgrade may change it).
    let no_space = redb::Error::Io(std::io::Error::from_raw_os_error(28));
    let previous_io = redb::DatabaseError::Storage(redb::StorageError::PreviousIo);
    let io_error = format!("ERROR click log I/O error: the file is closed and reopened at the next append path={path} op=\"append events\" error={no_space}");
    let close_failed = format!(" WARN click log: closing the file after an I/O error failed path={path} error={previous_io}");
    let not_closed = format!(" WARN {NOT_CLOSED} path={path}");
    let fell_back = format!(" WARN {FELL_BACK} path={path}");
    let expected = [
        // The first episode: reopening fails too, until there is room.
        io_error.clone(),
        close_failed.clone(),
        not_closed.clone(),
        fell_back.clone(),
        format!(" WARN could not reopen the click log path={path} error=\"click log could not open: {no_space}\" retry_in_ms=0 attempt=1"),
        format!(" INFO click log reopened after an I/O error path={path} head=100"),
        format!(" INFO click log: commits succeed again after I/O errors path={path} io_errors=1 reopens=1"),
        // The second: every reopen works (the file has room inside), every commit fails.
        io_error,
        close_failed,
        not_closed,
        fell_back,
        format!(" INFO click log reopened after an I/O error path={path} head=200"),
        format!(" INFO click log: commits succeed again after I/O errors path={path} io_errors=6 reopens=6"),
    ];
    assert_eq!(loud, expected, "{text}");
    for message in [NOT_CLOSED, FELL_BACK] {
        let repeats = lines.iter().filter(|l| l.starts_with("DEBUG") && l.contains(message)).count();
        assert_eq!(repeats, 10, "{message}: at every reopen; the repeats are at debug level: {text}");
    }
}
