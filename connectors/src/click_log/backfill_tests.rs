//! Backfill marks: written with the batch, read back per offset, truncated with the events,
//! and absent (all live) in logs written before the `backfill` table existed.

use sluice_schemas::ClickEvent;
use uuid::Uuid;

use super::*;

fn event(i: u64) -> ClickEvent {
    ClickEvent {
        event_id: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 | u128::from(i)),
        code: format!("b{}", i % 5),
        ts: 1_600_000_000_000 + i as i64 * 1000,
        ip_trunc: Some("192.0.2.0".into()),
        visitor_id: i,
        user_agent: "Mozilla/5.0".into(),
        referrer: None,
        accept_language: None,
        edge_region: None,
    }
}

fn events(r: Range<u64>) -> Vec<ClickEvent> {
    r.map(event).collect()
}

fn marks(log: &ClickLog) -> Vec<(u64, bool)> {
    log.read_entries(0, 1000).expect("read entries").into_iter().map(|e| (e.offset, e.backfill)).collect()
}

#[test]
fn marks_follow_the_batch_they_were_appended_with() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = ClickLog::open(dir.path()).expect("open");
    assert_eq!(log.append(&events(0..2)).expect("live"), 0..2);
    assert_eq!(log.append_backfill(&events(2..5)).expect("backfill"), 2..5);
    assert_eq!(log.append_backfill(&[]).expect("empty backfill"), 5..5);
    assert_eq!(log.append(&events(5..6)).expect("live"), 5..6);
    assert_eq!(marks(&log), vec![(0, false), (1, false), (2, true), (3, true), (4, true), (5, false)]);
    // the events themselves are unchanged by the mark
    let entries = log.read_entries(0, 10).expect("entries");
    assert_eq!(entries.iter().map(|e| e.event.clone()).collect::<Vec<_>>(), events(0..6));
    assert_eq!(log.read(0, 10).expect("plain read").into_iter().map(|(_, e)| e).collect::<Vec<_>>(), events(0..6));
    // windows of the read see only their own marks
    let window: Vec<(u64, bool)> = log.read_entries(4, 2).expect("window").into_iter().map(|e| (e.offset, e.backfill)).collect();
    assert_eq!(window, vec![(4, true), (5, false)]);
    assert_eq!(log.backfill_offsets(0..100).expect("marks"), vec![2, 3, 4]);
    assert_eq!(log.backfill_offsets(3..4).expect("marks"), vec![3]);
    assert_eq!(log.backfill_offsets(4..4).expect("empty range"), Vec::<u64>::new());
    assert_eq!(log.read_entries(6, 10).expect("at head"), vec![]);
}

#[test]
fn marks_survive_reopen_and_are_truncated_with_their_events() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let log = ClickLog::open(dir.path()).expect("open");
        log.append_backfill(&events(0..3)).expect("backfill");
        log.append(&events(3..4)).expect("live");
        log.append_backfill(&events(4..5)).expect("backfill");
    }
    let log = ClickLog::open(dir.path()).expect("reopen");
    assert_eq!(marks(&log), vec![(0, true), (1, true), (2, true), (3, false), (4, true)]);
    assert_eq!(log.truncate_before(2).expect("truncate"), 2);
    assert_eq!(log.backfill_offsets(0..10).expect("marks"), vec![2, 4]);
    assert_eq!(marks(&log), vec![(2, true), (3, false), (4, true)]);
}

#[test]
fn a_log_written_before_marks_existed_reads_as_live() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(CLICK_LOG_FILE_NAME);
    {
        // The layout of the previous version: `events` and `meta` only.
        let db = Database::create(&path).expect("create");
        let txn = db.begin_write().expect("txn");
        {
            let mut t = txn.open_table(EVENTS).expect("events");
            for i in 0..3 {
                let mut buf = Vec::new();
                encode_click_event_into(&event(i), &mut buf).expect("encode");
                t.insert(i, buf.as_slice()).expect("insert");
            }
            let mut meta = txn.open_table(META).expect("meta");
            meta.insert(META_HEAD, 3).expect("head");
        }
        txn.commit().expect("commit");
    }
    let log = ClickLog::open(dir.path()).expect("open old log");
    assert_eq!(log.head(), 3);
    assert_eq!(marks(&log), vec![(0, false), (1, false), (2, false)]);
    assert_eq!(log.append_backfill(&events(3..4)).expect("backfill into old log"), 3..4);
    assert_eq!(marks(&log), vec![(0, false), (1, false), (2, false), (3, true)]);
}
