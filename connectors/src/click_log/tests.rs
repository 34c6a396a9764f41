use std::collections::BTreeSet;

use redb::ReadableDatabase;
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

/// The log id is written once with the file: the same after reopening and after copying the
/// file elsewhere, different for a log created apart, and given to a log that had none
/// (written by an older build) on its first open, then kept.
#[test]
fn log_id_stays_with_the_file() {
    let (a, b, c) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    let id_a = {
        let log = ClickLog::open(a.path()).expect("open");
        log.append(&events(0..3)).expect("append");
        log.log_id()
    };
    assert_ne!(id_a, 0);
    assert_eq!(ClickLog::open(a.path()).expect("reopen").log_id(), id_a);
    std::fs::copy(a.path().join(CLICK_LOG_FILE_NAME), c.path().join(CLICK_LOG_FILE_NAME)).expect("copy");
    assert_eq!(ClickLog::open(c.path()).expect("open copy").log_id(), id_a);
    let id_b = ClickLog::open(b.path()).expect("open other").log_id();
    assert_ne!(id_b, id_a);
    // A log without the key (as an older build wrote it) gets one on its first open.
    {
        let db = redb::Database::create(b.path().join(CLICK_LOG_FILE_NAME)).expect("open raw");
        let txn = db.begin_write().expect("txn");
        txn.open_table(META).expect("meta").remove(META_LOG_ID).expect("remove");
        txn.commit().expect("commit");
    }
    let id_new = ClickLog::open(b.path()).expect("open without id").log_id();
    assert!(id_new != 0 && id_new != id_b && id_new != id_a);
    assert_eq!(ClickLog::open(b.path()).expect("reopen").log_id(), id_new);
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
    // Replace offset 1 by garbage behind the log's back: chunks [0] and [1 = garbage].
    let (_, mut buf) = log.read_raw(0, 1).expect("raw").remove(0);
    let mut ends = vec![buf.len()];
    buf.extend_from_slice(b"garbage");
    ends.push(buf.len());
    let txn = log.test_db().begin_write().expect("txn");
    {
        let mut t = txn.open_table(CHUNKS).expect("table");
        let (mut raw, mut value) = (Vec::new(), Vec::new());
        chunk::encode(&buf, &ends, 0..2, &mut raw, &mut value);
        t.insert(0u64, value.as_slice()).expect("insert");
    }
    txn.commit().expect("commit");
    match log.read(0, 10) {
        Err(Error::ClickLogDecode { offset: 1, .. }) => {}
        other => panic!("expected a decode error at offset 1, got {other:?}"),
    }
    assert_eq!(log.read(0, 1).expect("offset 0 still reads"), vec![(0, event(0))]);
    assert_eq!(log.read_raw(1, 1).expect("raw"), vec![(1, b"garbage".to_vec())]);
}

#[test]
fn a_damaged_chunk_reads_as_undecodable_events_and_the_rest_stays_readable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = ClickLog::open(dir.path()).expect("open");
    log.append(&events(0..2)).expect("append");
    log.append(&events(2..5)).expect("append");
    log.append(&events(5..6)).expect("append");
    let txn = log.test_db().begin_write().expect("txn");
    txn.open_table(CHUNKS).expect("table").insert(2u64, &b"\x03\x00\x00\x00 not a chunk"[..]).expect("insert");
    txn.commit().expect("commit");
    let raw = log.read_raw(0, 100).expect("raw");
    let offsets: Vec<u64> = raw.iter().map(|(o, _)| *o).collect();
    assert_eq!(offsets, (0..6).collect::<Vec<_>>(), "offsets of the damaged chunk are kept: 2..5 up to the next chunk");
    assert!(raw[2..5].iter().all(|(_, b)| b.is_empty()));
    assert_eq!(raw[5].1, log.read_raw(5, 1).expect("raw")[0].1);
    assert_eq!(log.read(5, 10).expect("after the damage"), vec![(5, event(5))]);
    match log.read(3, 10) {
        Err(Error::ClickLogDecode { offset: 3, .. }) => {}
        other => panic!("expected a decode error at offset 3, got {other:?}"),
    }
    // Truncation still removes it.
    assert_eq!(log.truncate_before(5).expect("truncate"), 5);
    assert_eq!(log.read(0, 10).expect("read"), vec![(5, event(5))]);
}

#[test]
fn big_appends_are_split_into_chunks_and_read_from_any_offset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let all = events(0..1000);
    {
        let log = ClickLog::open(dir.path()).expect("open");
        assert_eq!(log.append(&all[..600]).expect("append"), 0..600);
        assert_eq!(log.append(&all[600..601]).expect("append"), 600..601);
        assert_eq!(log.append(&all[601..]).expect("append"), 601..1000);
        let txn = log.test_db().begin_read().expect("txn");
        let chunks = txn.open_table(CHUNKS).expect("table").len().expect("len");
        assert!((4..100).contains(&chunks), "600 + 1 + 399 events of ~100 bytes in {chunks} chunks");
    }
    let log = ClickLog::open(dir.path()).expect("reopen");
    assert_eq!(log.head(), 1000);
    let expected: Vec<(u64, ClickEvent)> = all.iter().cloned().enumerate().map(|(i, e)| (i as u64, e)).collect();
    assert_eq!(log.read(0, 5000).expect("read"), expected);
    // Every start offset and window size reads exactly its slice (chunk boundaries included).
    for from in [0u64, 1, 83, 84, 85, 167, 168, 599, 600, 601, 602, 998, 999, 1000, 1001] {
        for max in [1usize, 2, 84, 85, 500] {
            let want: Vec<_> = expected.iter().skip(from as usize).take(max).cloned().collect();
            assert_eq!(log.read(from, max).expect("read"), want, "from {from} max {max}");
        }
    }
    // Truncating inside a chunk hides the offsets below low, keeps the rest of the chunk.
    assert_eq!(log.truncate_before(90).expect("truncate"), 90);
    assert_eq!(log.read(0, 3).expect("read"), expected[90..93].to_vec());
    assert_eq!(log.read(89, 1).expect("read"), expected[90..91].to_vec());
    drop(log);
    let log = ClickLog::open(dir.path()).expect("reopen");
    assert_eq!((log.low(), log.head()), (90, 1000));
    assert_eq!(log.read(0, 2).expect("read"), expected[90..92].to_vec());
    assert_eq!(log.truncate_before(1000).expect("truncate all"), 910);
    assert_eq!(log.read(0, 10).expect("read"), vec![]);
    let txn = log.test_db().begin_read().expect("txn");
    assert_eq!(txn.open_table(CHUNKS).expect("table").len().expect("len"), 0, "every chunk ended at or before 1000");
}

#[tokio::test]
async fn subscribers_see_the_new_head() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = ClickLog::open(dir.path()).expect("open");
    let mut rx = log.subscribe();
    assert_eq!(*rx.borrow(), 0);
    let writer = log.clone();
    tokio::task::spawn_blocking(move || writer.append(&events(0..7)).expect("append")).await.expect("join");
    tokio::time::timeout(std::time::Duration::from_secs(5), rx.changed()).await.expect("notified in time").expect("sender alive");
    assert_eq!(*rx.borrow_and_update(), 7);
}

#[test]
fn a_directory_where_the_log_file_goes_is_named_as_such() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(CLICK_LOG_FILE_NAME);
    std::fs::create_dir(&path).expect("mkdir");
    let err = ClickLog::open(dir.path()).expect_err("refused");
    assert_eq!(
        err.to_string(),
        Error::Config(format!("the click log \"{}\" is a directory, not a file: move it out of the data dir", path.display())).to_string()
    );
    assert!(matches!(err, Error::Config(_)), "{err:?}");
}

/// The link store change mark: absent in a new log; raising never lowers it, setting
/// replaces it (also with a lower value); kept across a reopen, apart from the store id.
#[test]
fn the_link_store_change_mark_is_raised_or_set_and_survives_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = ClickLog::open(dir.path()).expect("open");
    assert_eq!(log.link_store_seq().expect("mark"), None);
    assert!(log.raise_link_store_seq(5).expect("raise"));
    assert!(!log.raise_link_store_seq(5).expect("same value"), "nothing written for the same value");
    assert!(!log.raise_link_store_seq(3).expect("lower value"), "raising never lowers");
    assert_eq!(log.link_store_seq().expect("mark"), Some(5));
    assert!(log.raise_link_store_seq(9).expect("raise"));
    log.set_link_store_seq(2).expect("set lower");
    assert_eq!(log.link_store_seq().expect("mark"), Some(2));
    log.set_link_store_id(11).expect("store id");
    drop(log);
    let log = ClickLog::open(dir.path()).expect("reopen");
    assert_eq!((log.link_store_seq().expect("mark"), log.link_store_id().expect("id")), (Some(2), Some(11)));
}
