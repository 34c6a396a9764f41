use std::collections::BTreeSet;

use sluice_schemas::ClickEvent;
use uuid::Uuid;

use super::*;

fn event(i: u64) -> ClickEvent {
    ClickEvent {
        event_id: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 | u128::from(i)),
        code: format!("c{}", i % 17),
        ts: 1_700_000_000_000 + i as i64,
        ip_trunc: if i.is_multiple_of(3) { None } else { Some(format!("198.51.{}.0", i % 256)) },
        visitor_id: i.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        user_agent: format!("agent/{i} ✓"),
        referrer: i.is_multiple_of(2).then(|| format!("https://r{i}.example/")),
        accept_language: None,
        edge_region: Some("local".into()),
    }
}

fn events(range: Range<u64>) -> Vec<ClickEvent> {
    range.map(event).collect()
}

#[test]
fn appends_get_dense_offsets_and_read_back_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = ClickLog::open(dir.path()).expect("open");
    assert_eq!(log.head(), 0);
    assert_eq!(log.append(&events(0..3)).expect("append"), 0..3);
    assert_eq!(log.append(&[]).expect("empty append"), 3..3);
    assert_eq!(log.append(&events(3..10)).expect("append"), 3..10);
    assert_eq!(log.head(), 10);
    let all = log.read(0, 100).expect("read");
    let expected: Vec<(u64, ClickEvent)> = (0..10).map(|i| (i, event(i))).collect();
    assert_eq!(all, expected);
    assert_eq!(log.read(4, 3).expect("read"), expected[4..7].to_vec());
    assert_eq!(log.read(10, 5).expect("read at head"), vec![]);
    assert_eq!(log.read(0, 0).expect("read none"), vec![]);
}

#[test]
fn survives_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let log = ClickLog::open(dir.path()).expect("open");
        log.append(&events(0..5)).expect("append");
    }
    let log = ClickLog::open(dir.path()).expect("reopen");
    assert_eq!(log.head(), 5);
    assert_eq!(log.append(&events(5..6)).expect("append"), 5..6);
    let got: Vec<u64> = log.read(0, 100).expect("read").into_iter().map(|(o, _)| o).collect();
    assert_eq!(got, vec![0, 1, 2, 3, 4, 5]);
    assert_eq!(log.read(0, 100).expect("read")[5].1, event(5));
}

#[test]
fn second_open_of_the_same_file_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _log = ClickLog::open(dir.path()).expect("open");
    match ClickLog::open(dir.path()) {
        Err(Error::ClickLog { op: "open", .. }) => {}
        other => panic!("expected an open error, got {other:?}"),
    }
}

#[test]
fn truncation_removes_a_prefix_and_never_reuses_offsets() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let log = ClickLog::open(dir.path()).expect("open");
        log.append(&events(0..10)).expect("append");
        assert_eq!(log.truncate_before(4).expect("truncate"), 4);
        assert_eq!(log.truncate_before(2).expect("no-op"), 0);
        assert_eq!(log.low(), 4);
        let offsets: Vec<u64> = log.read(0, 100).expect("read").into_iter().map(|(o, _)| o).collect();
        assert_eq!(offsets, (4..10).collect::<Vec<_>>());
        // Truncating everything keeps the head: new events continue at 10.
        assert_eq!(log.truncate_before(1_000).expect("truncate all"), 6);
        assert_eq!(log.read(0, 100).expect("read"), vec![]);
    }
    let log = ClickLog::open(dir.path()).expect("reopen");
    assert_eq!((log.low(), log.head()), (10, 10));
    assert_eq!(log.append(&events(10..12)).expect("append"), 10..12);
    assert_eq!(log.read(0, 100).expect("read"), vec![(10, event(10)), (11, event(11))]);
}

#[test]
fn concurrent_appends_partition_the_offsets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = ClickLog::open(dir.path()).expect("open");
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                (0..10u64)
                    .map(|b| {
                        let first = t * 1000 + b * 10;
                        (log.append(&events(first..first + 10)).expect("append"), first)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut ranges = Vec::new();
    for t in threads {
        ranges.extend(t.join().expect("thread"));
    }
    assert_eq!(log.head(), 400);
    let stored = log.read(0, 1000).expect("read");
    assert_eq!(stored.len(), 400);
    let mut seen = BTreeSet::new();
    for (range, first) in ranges {
        assert_eq!(range.end - range.start, 10);
        for (k, off) in range.enumerate() {
            assert_eq!(stored[off as usize], (off, event(first + k as u64)), "batch stays contiguous");
            assert!(seen.insert(off));
        }
    }
}

#[test]
fn undecodable_entries_are_reported_with_their_offset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = ClickLog::open(dir.path()).expect("open");
    log.append(&events(0..2)).expect("append");
    // Corrupt offset 1 behind the log's back.
    let txn = log.inner.db.begin_write().expect("txn");
    {
        let mut t = txn.open_table(EVENTS).expect("table");
        t.insert(1u64, &b"garbage"[..]).expect("insert");
    }
    txn.commit().expect("commit");
    match log.read(0, 10) {
        Err(Error::ClickLogDecode { offset: 1, .. }) => {}
        other => panic!("expected a decode error at offset 1, got {other:?}"),
    }
    assert_eq!(log.read_raw(1, 1).expect("raw"), vec![(1, b"garbage".to_vec())]);
}

#[tokio::test]
async fn subscribers_see_the_new_head() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = ClickLog::open(dir.path()).expect("open");
    let mut rx = log.subscribe();
    assert_eq!(*rx.borrow(), 0);
    let writer = log.clone();
    tokio::task::spawn_blocking(move || writer.append(&events(0..7)).expect("append"))
        .await
        .expect("join");
    tokio::time::timeout(std::time::Duration::from_secs(5), rx.changed())
        .await
        .expect("notified in time")
        .expect("sender alive");
    assert_eq!(*rx.borrow_and_update(), 7);
}
