//! The anomaly store after an I/O error and with its file deleted or replaced (`recovery.rs`),
//! on real files.

use sluice_schemas::{AnomalyKind, Severity};

use super::tests::anomaly;
use super::webhooks::WebhookRecord;
use super::*;

/// Sets or clears the immutable attribute of `path` (`chattr`): even root cannot write or
/// open it for writing while set (a failing disk). `false` when it cannot be changed here.
pub(crate) fn set_immutable(path: &Path, on: bool) -> bool {
    std::process::Command::new("chattr").arg(if on { "+i" } else { "-i" }).arg(path).stderr(std::process::Stdio::null()).status().is_ok_and(|s| s.success())
}

/// Clears the immutable attribute when the test ends, also on a panic.
struct Mutable<'a>(&'a Path);

impl Drop for Mutable<'_> {
    fn drop(&mut self) {
        set_immutable(self.0, false);
    }
}

fn all_events(store: &AnomalyStore) -> Vec<(u64, Anomaly)> {
    store.events_after(0, 1000).expect("read").into_iter().map(|e| (e.event_id, e.anomaly)).collect()
}

/// A webhook `id` for every kind and severity (its URL is never called by the store).
pub(super) fn webhook(id: &str) -> WebhookRecord {
    WebhookRecord {
        id: id.into(),
        url: "https://example.org/hook".into(),
        kinds: Vec::new(),
        min_severity: Severity::Info,
        secret: "s".into(),
        created_at_ms: 1,
        cursor: 0,
    }
}

/// An immutable file (appends and reopens fail with EPERM, also for root) closes the store
/// with a message naming it; once writable again the next append reopens it and stores the
/// events after the ones before, once, with no restart.
#[test]
fn the_store_reopens_after_an_io_error_and_stores_the_retried_events_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(ANOMALY_STORE_FILE_NAME);
    let store = AnomalyStore::open(dir.path()).expect("open");
    let _mutable = Mutable(&path);
    if !set_immutable(&path, true) || !set_immutable(&path, false) {
        eprintln!("skipped: cannot set the immutable attribute here (needs root and a file system with chattr +i)");
        return;
    }
    let a0 = anomaly(AnomalyKind::ClickBurst, "link:a", 60_000, 0, Severity::Warning);
    let b0 = anomaly(AnomalyKind::VisitorFlood, "visitor:1", 60_000, 0, Severity::Info);
    let a1 = anomaly(AnomalyKind::ClickBurst, "link:a", 60_000, 1, Severity::Critical);
    assert_eq!(store.append(std::slice::from_ref(&a0)).expect("append"), vec![1]);
    assert_eq!(store.failure(), None);
    assert!(set_immutable(&path, true), "chattr +i");
    let err = store.append(&[b0.clone(), a1.clone()]).expect_err("an immutable file takes no commit");
    assert!(matches!(err, Error::AnomalyStore { .. }), "{err:?}");
    assert_eq!(
        store.failure(),
        Some(format!(
            "anomaly store \"{}\" is closed after an I/O error (could not append anomalies: I/O error: Operation not permitted (os error 1)); \
             it is reopened by the next operation once the storage works again",
            path.display()
        ))
    );
    // The next operation tries to reopen, which fails too while the file is immutable.
    let err = store.append(&[b0.clone(), a1.clone()]).expect_err("still immutable");
    assert!(matches!(err, Error::AnomalyStoreClosed { .. }), "{err:?}");
    assert!(err.retryable());
    assert!(matches!(store.events_after(0, 10), Err(Error::AnomalyStoreClosed { .. })), "reads wait for the reopen too");
    assert!(set_immutable(&path, false), "chattr -i");
    std::thread::sleep(REOPEN_BACKOFF_INITIAL * 4);
    assert_eq!(store.append(&[b0.clone(), a1.clone()]).expect("append after the reopen"), vec![2, 3]);
    assert_eq!(store.failure(), None);
    assert_eq!(store.head(), 3);
    assert_eq!(store.append(&[a0.clone(), b0.clone(), a1.clone()]).expect("a replay"), Vec::<u64>::new());
    let expected = vec![(1, a0), (2, b0), (3, a1)];
    assert_eq!(all_events(&store), expected);
    drop(store);
    let store = AnomalyStore::open(dir.path()).expect("reopen after a restart");
    assert_eq!((store.head(), all_events(&store)), (3, expected));
}

/// A probe commits without adding an event, and reopens a closed store.
#[test]
fn a_probe_reopens_a_closed_store_without_adding_an_event() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(ANOMALY_STORE_FILE_NAME);
    let store = AnomalyStore::open(dir.path()).expect("open");
    let _mutable = Mutable(&path);
    if !set_immutable(&path, true) {
        eprintln!("skipped: cannot set the immutable attribute here");
        return;
    }
    assert!(store.probe_write().is_err());
    assert!(store.failure().is_some());
    assert!(set_immutable(&path, false), "chattr -i");
    std::thread::sleep(REOPEN_BACKOFF_INITIAL * 4);
    store.probe_write().expect("probe after the reopen");
    assert_eq!((store.failure(), store.head()), (None, 0));
    assert_eq!(all_events(&store), vec![]);
}

/// A store closed by an I/O error whose file is deleted meanwhile is not reopened as a new,
/// empty store: it stays closed with a message saying what is lost and what to do (no
/// "restart" that would look like it keeps anything), and no file appears at the path.
#[test]
fn a_closed_store_whose_file_was_deleted_does_not_reopen_empty() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(ANOMALY_STORE_FILE_NAME);
    let store = AnomalyStore::open(dir.path()).expect("open");
    let _mutable = Mutable(&path);
    store.append(&[anomaly(AnomalyKind::ClickBurst, "link:a", 0, 0, Severity::Info)]).expect("append");
    if !set_immutable(&path, true) {
        eprintln!("skipped: cannot set the immutable attribute here");
        return;
    }
    assert!(store.append(&[anomaly(AnomalyKind::ClickBurst, "link:b", 0, 0, Severity::Info)]).is_err());
    assert!(set_immutable(&path, false), "chattr -i");
    std::fs::remove_file(&path).expect("delete");
    std::thread::sleep(REOPEN_BACKOFF_INITIAL * 4);
    let err = store.append(&[anomaly(AnomalyKind::ClickBurst, "link:b", 0, 0, Severity::Info)]).expect_err("no file to reopen");
    let lost = format!(
        "anomaly store \"{}\" was deleted while it was closed after an I/O error, so sluice has no open file to write it back from: \
         the anomaly events and webhook subscriptions it held are gone unless a backup of the file is put back. New anomaly events wait \
         in memory meanwhile. To go on, stop sluice (a graceful stop makes the next start derive the waiting events again), put the \
         backup at that path if there is one (without one, the start creates an empty store) and start it again",
        path.display()
    );
    assert_eq!(err.to_string(), lost);
    assert_eq!(store.failure(), Some(lost.clone()), "readiness says the same");
    assert!(store.is_lost());
    assert!(!path.exists(), "no empty store is created in its place");
    assert_eq!(store.check_file().expect_err("still lost").to_string(), lost);
}

/// The file removed together with its directory (`rm -rf` of the data dir): the message says
/// what happens (every event kept in the open file, written back once the directory exists
/// again) instead of advising a restart, which would lose them; events go on into the open
/// file, and once the directory is back the next check writes the whole store back.
#[test]
fn a_store_whose_directory_was_removed_is_written_back_once_it_exists_again() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    let path = dir.join(ANOMALY_STORE_FILE_NAME);
    let store = AnomalyStore::open(&dir).expect("open");
    let events: Vec<Anomaly> = (0..2).map(|i| anomaly(AnomalyKind::ClickBurst, &format!("link:d{i}"), i * 60_000, 0, Severity::Warning)).collect();
    assert_eq!(store.append(&events[..1]).expect("append"), vec![1]);
    std::fs::remove_dir_all(&dir).expect("rm -rf the data dir");
    assert_eq!(
        store.check_file().expect_err("directory removed").to_string(),
        format!(
            "anomaly store \"{0}\" and its directory \"{1}\" were removed while in use; sluice keeps every anomaly event and webhook \
             subscription, new ones included, in the file it has open (deleted: only this process can still read it) and writes it back \
             to \"{0}\" within seconds once the directory exists again (`mkdir -p {1}`). If sluice stops before, what that file holds is lost",
            path.display(),
            dir.display()
        )
    );
    assert_eq!(store.append(&events[1..]).expect("append to the open file"), vec![2]);
    std::fs::create_dir(&dir).expect("mkdir");
    assert_eq!(store.check_file().expect("written back"), FileCheck::Restored { events: 2 });
    drop(store);
    let store = AnomalyStore::open(&dir).expect("reopen after a restart");
    let expected: Vec<(u64, Anomaly)> = (1..=2).zip(events).collect();
    assert_eq!(all_events(&store), expected);
}

/// A deleted file is written back to its path with every event, subscription, cursor and
/// action (also those written to the deleted file), the store switches to it, and what is
/// appended after is in it across a restart, with the event ids going on.
#[test]
fn a_deleted_file_is_restored_from_the_open_file_and_nothing_is_lost() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(ANOMALY_STORE_FILE_NAME);
    let store = AnomalyStore::open(dir.path()).expect("open");
    let events: Vec<Anomaly> = (0..5).map(|i| anomaly(AnomalyKind::ClickBurst, &format!("link:c{i}"), i * 60_000, 0, Severity::Warning)).collect();
    assert_eq!(store.append(&events[..3]).expect("append"), vec![1, 2, 3]);
    let hook = store.create_webhook(webhook("wh_1"), 100).expect("webhook").expect("under the cap");
    store.set_cursor("auto-actions", 2).expect("cursor");
    let action =
        actions::AnomalyAction { action: "disable".into(), outcome: "applied".into(), code: "c1".into(), actor: "auto-action".into(), at_ms: 5, event_id: 2 };
    assert!(store.record_action(events[1].anomaly_id.as_bytes(), &action).expect("action"));
    assert_eq!(store.check_file().expect("check"), FileCheck::InPlace);
    std::fs::remove_file(&path).expect("delete the store file");
    // Written to the deleted file: restored with the rest.
    assert_eq!(store.append(&events[3..4]).expect("append to the deleted file"), vec![4]);
    assert_eq!(store.check_file().expect("restore"), FileCheck::Restored { events: 4 });
    assert!(path.exists());
    assert!(!dir.path().join("anomalies.redb.restoring").exists(), "the temporary copy is gone");
    assert_eq!(store.check_file().expect("check"), FileCheck::InPlace);
    assert_eq!(store.append(&events[3..5]).expect("append after the restore"), vec![5], "the event ids go on; dedup holds");
    let expected: Vec<(u64, Anomaly)> = (1..=5).zip(events.iter().cloned()).collect();
    assert_eq!(all_events(&store), expected);
    drop(store);
    let store = AnomalyStore::open(dir.path()).expect("reopen after a restart");
    assert_eq!((store.head(), all_events(&store)), (5, expected));
    assert_eq!(store.webhook("wh_1").expect("read"), Some(hook));
    assert_eq!(store.cursor("auto-actions").expect("cursor"), Some(2));
    assert_eq!(store.actions(events[1].anomaly_id.as_bytes()).expect("actions"), vec![action]);
    assert_eq!(store.get(events[4].anomaly_id.as_bytes()).expect("get").map(|l| l.event_id), Some(5));
}

/// Another file at the path is left alone; the store reports it and keeps using its file.
#[test]
fn a_replaced_file_is_reported_and_left_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(ANOMALY_STORE_FILE_NAME);
    let store = AnomalyStore::open(dir.path()).expect("open");
    store.append(&[anomaly(AnomalyKind::ClickBurst, "link:a", 0, 0, Severity::Info)]).expect("append");
    std::fs::remove_file(&path).expect("delete");
    std::fs::write(&path, b"someone else's file").expect("another file");
    assert_eq!(
        store.check_file().expect_err("replaced").to_string(),
        format!(
            "anomaly store \"{}\" was replaced by another file while in use; sluice keeps writing anomaly events to the file it opened, \
             which is lost at the next restart: stop sluice, keep the file you want at that path and start it again",
            path.display()
        )
    );
    assert_eq!(std::fs::read(&path).expect("read"), b"someone else's file");
    assert_eq!(store.append(&[anomaly(AnomalyKind::ClickBurst, "link:b", 0, 0, Severity::Info)]).expect("append"), vec![2]);
}

/// A real full disk (a 4 MiB tmpfs; root only): every retry of the failed append reopens
/// the store, which redb finds not closed cleanly, and drops the commit the error tore. Each
/// message of that (the I/O error, the failed close, redb's recovery and fallback, the
/// reopen) is logged at its level once, the repeats at debug level; the append once there
/// is room ends the episode with one line, and the next full disk is a new episode, logged
/// again.
#[test]
fn a_full_disk_logs_each_reopen_message_once_per_episode() {
    use crate::test_fs::{SmallFileSystem, fill, logged_about};
    let Some(fs) = SmallFileSystem::temporary(4 << 20) else { return };
    let mnt = fs.path();
    let path = mnt.join(ANOMALY_STORE_FILE_NAME).display().to_string();
    logged_about(&path);
    let store = AnomalyStore::open(mnt).expect("open on tmpfs");
    store.recovery.lock().expect("lock").initial_backoff = std::time::Duration::ZERO;
    let batch =
        |n: u32| -> Vec<Anomaly> { (0..50).map(|i| anomaly(AnomalyKind::ClickBurst, &format!("link:{n}-{i}"), 60_000, 0, Severity::Warning)).collect() };
    assert_eq!(store.append(&batch(0)).expect("append").len(), 50);
    let mut failures = Vec::new();
    for episode in 1..=2 {
        fill(mnt);
        failures.push((0..6).filter(|_| store.append(&batch(episode)).is_err()).count());
        std::fs::remove_file(mnt.join("filler")).expect("free space");
        assert_eq!(store.append(&batch(episode)).expect("an append once there is room").len(), 50);
    }
    assert_eq!(failures, [6, 6], "every append fails while the disk is full");
    assert_eq!(store.head(), 150, "each batch stored once");
    let lines = logged_about(&path);
    let text = lines.join("\n");
    const NOT_CLOSED: &str = "anomaly store was not closed cleanly (its process was killed or crashed): recovering it from its last commit";
    const FELL_BACK: &str =
        "anomaly store failed its integrity check at open: its newest commit is damaged; redb is repairing it by falling back to the commit before";
    let ours = [
        "anomaly store I/O error",
        "anomaly store: closing the file",
        NOT_CLOSED,
        FELL_BACK,
        "could not reopen the anomaly store",
        "anomaly store reopened",
        "anomaly store: writes commit",
    ];
    let loud: Vec<String> = lines.iter().filter(|l| !l.starts_with("DEBUG") && ours.iter().any(|m| l.contains(m))).cloned().collect();
    // redb's own wording comes from redb (a redb upgrade may change it).
    let no_space = redb::Error::Io(std::io::Error::from_raw_os_error(28));
    let previous_io = redb::DatabaseError::Storage(redb::StorageError::PreviousIo);
    let episode = |events: u64| {
        [
            format!(
                "ERROR anomaly store I/O error: the file is closed and reopened by the next operation path={path} op=\"append anomalies\" error={no_space}"
            ),
            format!(" WARN anomaly store: closing the file after an I/O error failed path={path} error={previous_io}"),
            format!(" WARN {NOT_CLOSED} path={path}"),
            format!(" WARN {FELL_BACK} path={path}"),
            format!(" INFO anomaly store reopened after an I/O error path={path} events={events}"),
            format!(" INFO anomaly store: writes commit again after I/O errors path={path} io_errors=6 reopens=6"),
        ]
    };
    assert_eq!(loud, [episode(50), episode(100)].concat(), "{text}");
    for message in [NOT_CLOSED, FELL_BACK] {
        let repeats = lines.iter().filter(|l| l.starts_with("DEBUG") && l.contains(message)).count();
        assert_eq!(repeats, 10, "{message}: at every reopen; the repeats are at debug level: {text}");
    }
}
