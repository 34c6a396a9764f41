//! Arrival times: recorded for the events stamped after their append time only, in the same
//! transaction as the events, read back per offset, kept across a reopen and the copies of
//! the file, truncated with the events; a log without the table reads as no arrival known.

use redb::{ReadableDatabase, ReadableTableMetadata};
use sluice_schemas::ClickEvent;

use super::recovery_tests::event;
use super::*;

/// 2026-01-01T00:00:00Z, the append time the tests set.
const T: i64 = 1_767_225_600_000;

/// Event `i` stamped at `ts`.
fn at(i: u64, ts: i64) -> ClickEvent {
    ClickEvent { ts, ..event(i) }
}

/// `(offset, backfill, arrival_ms)` of every stored entry.
fn arrivals(log: &ClickLog) -> Vec<(u64, bool, Option<i64>)> {
    log.read_entries(0, 1000).expect("read entries").into_iter().map(|e| (e.offset, e.backfill, e.arrival_ms)).collect()
}

/// Rows of the `arrival` table as stored.
fn stored(log: &ClickLog) -> Vec<(u64, i64)> {
    let txn = log.test_db().begin_read().expect("txn");
    let table = txn.open_table(ARRIVAL).expect("arrival table");
    table.iter().expect("iter").map(|r| r.expect("entry")).map(|(k, v)| (k.value(), v.value())).collect()
}

#[test]
fn only_events_stamped_after_their_append_get_an_arrival_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = ClickLog::open(dir.path()).expect("open");
    log.set_test_now_ms(T);
    // Behind, at and after the append time: only the last two are ahead of it.
    assert_eq!(log.append(&[at(0, T - 1), at(1, T), at(2, T + 1), at(3, T + 299_000)]).expect("append"), 0..4);
    // An append of events at or before its time writes no arrival row.
    log.set_test_now_ms(T + 60_000);
    assert_eq!(log.append(&[at(4, T + 59_999), at(5, T + 60_000)]).expect("append"), 4..6);
    assert_eq!(stored(&log), vec![(2, T), (3, T)]);
    // Backfill appends record it too, at their own append time.
    log.set_test_now_ms(T + 120_000);
    assert_eq!(log.append_backfill(&[at(6, T + 1_000), at(7, T + 121_000)]).expect("backfill"), 6..8);
    assert_eq!(
        arrivals(&log),
        vec![
            (0, false, None),
            (1, false, None),
            (2, false, Some(T)),
            (3, false, Some(T)),
            (4, false, None),
            (5, false, None),
            (6, true, None),
            (7, true, Some(T + 120_000)),
        ]
    );
    assert_eq!(log.arrival_times(0..100).expect("arrivals"), vec![(2, T), (3, T), (7, T + 120_000)]);
    assert_eq!(log.arrival_times(3..7).expect("window"), vec![(3, T)]);
    assert_eq!(log.arrival_times(5..5).expect("empty range"), Vec::<(u64, i64)>::new());
    let window: Vec<Option<i64>> = log.read_entries(3, 2).expect("window").into_iter().map(|e| e.arrival_ms).collect();
    assert_eq!(window, vec![Some(T), None]);
    assert_eq!(arrival_at(&[(2, T), (7, T + 5)], 7), Some(T + 5));
    assert_eq!(arrival_at(&[(2, T), (7, T + 5)], 3), None);
}

#[test]
fn arrival_times_survive_reopen_and_are_truncated_with_their_events() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let log = ClickLog::open(dir.path()).expect("open");
        log.set_test_now_ms(T);
        log.append(&[at(0, T + 10), at(1, T - 10), at(2, T + 20)]).expect("append");
        log.set_test_now_ms(T + 1_000);
        log.append(&[at(3, T + 2_000)]).expect("append");
    }
    let log = ClickLog::open(dir.path()).expect("reopen");
    assert_eq!(arrivals(&log), vec![(0, false, Some(T)), (1, false, None), (2, false, Some(T)), (3, false, Some(T + 1_000))]);
    assert_eq!(log.truncate_before(2).expect("truncate"), 2);
    assert_eq!(stored(&log), vec![(2, T), (3, T + 1_000)]);
    assert_eq!(log.truncate_before(4).expect("truncate"), 2);
    assert_eq!(stored(&log), vec![]);
}

/// A deleted file is written back from the open file with its arrival times.
#[test]
fn the_restored_copy_of_a_deleted_file_keeps_the_arrival_times() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(CLICK_LOG_FILE_NAME);
    let log = ClickLog::open(dir.path()).expect("open");
    log.set_test_now_ms(T);
    log.append(&[at(0, T - 5), at(1, T + 5)]).expect("append");
    std::fs::remove_file(&path).expect("delete the log file");
    log.set_test_now_ms(T + 7);
    log.append_backfill(&[at(2, T + 9)]).expect("append to the deleted file");
    assert_eq!(log.check_file().expect("restore"), FileCheck::Restored { events: 3 });
    let want = vec![(0, false, None), (1, false, Some(T)), (2, true, Some(T + 7))];
    assert_eq!(arrivals(&log), want);
    drop(log);
    let log = ClickLog::open(dir.path()).expect("reopen after a restart");
    assert_eq!(arrivals(&log), want);
}

/// A file cut short is written back from the open file with its arrival times (`damage.rs`).
#[test]
fn the_rewritten_copy_of_a_truncated_file_keeps_the_arrival_times() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(CLICK_LOG_FILE_NAME);
    let log = ClickLog::open(dir.path()).expect("open");
    log.set_test_now_ms(T);
    log.append(&[at(0, T + 1), at(1, T)]).expect("append");
    let len = std::fs::metadata(&path).expect("stat").len();
    std::fs::OpenOptions::new().write(true).open(&path).expect("open file").set_len(len / 2).expect("cut");
    assert_eq!(log.check_file().expect("rewrite"), FileCheck::Rewritten { events: 2 });
    drop(log);
    let log = ClickLog::open(dir.path()).expect("reopen");
    assert_eq!(arrivals(&log), vec![(0, false, Some(T)), (1, false, None)]);
}

/// A log written before arrival times were recorded (no `arrival` table) reads as no
/// arrival known, gets the table on open, and records arrival times from then on.
#[test]
fn a_log_without_the_arrival_table_reads_as_no_arrival_known() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let log = ClickLog::open(dir.path()).expect("open");
        log.set_test_now_ms(T);
        log.append(&[at(0, T + 1)]).expect("append");
        let txn = log.test_db().begin_write().expect("txn");
        assert!(txn.delete_table(ARRIVAL).expect("delete the table"));
        txn.commit().expect("commit");
        // Read while the table is missing: no arrival known.
        assert_eq!(arrivals(&log), vec![(0, false, None)]);
        assert_eq!(log.arrival_times(0..10).expect("arrivals"), vec![]);
    }
    // Also as a build that never wrote the table left it: the format is unchanged.
    let log = ClickLog::open(dir.path()).expect("reopen");
    {
        let txn = log.test_db().begin_read().expect("txn");
        assert_eq!(meta_get(&txn.open_table(META).expect("meta"), META_FORMAT).expect("get"), Some(CLICK_LOG_FORMAT));
        assert_eq!(txn.open_table(ARRIVAL).expect("created on open").len().expect("len"), 0);
    }
    log.set_test_now_ms(T + 3);
    log.append(&[at(1, T + 4)]).expect("append");
    assert_eq!(arrivals(&log), vec![(0, false, None), (1, false, Some(T + 3))]);
}
