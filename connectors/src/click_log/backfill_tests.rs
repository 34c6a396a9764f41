//! Backfill marks: written with the batch, read back per offset, truncated with the events;
//! and the storage-format check of [`ClickLog::open`].

use redb::ReadableDatabase;
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

/// Writes a format-1 log (one `events` entry per event, no `format` key) with events
/// `0..n` and `head`/`low` in `meta`, as sluice wrote it before format 2.
fn write_format_1_log(path: &Path, n: u64, head: u64, low: Option<u64>) {
    let db = Database::create(path).expect("create");
    let txn = db.begin_write().expect("txn");
    {
        let mut t = txn.open_table(LEGACY_EVENTS).expect("events");
        for i in 0..n {
            let mut buf = Vec::new();
            encode_click_event_into(&event(i), &mut buf).expect("encode");
            t.insert(i, buf.as_slice()).expect("insert");
        }
        let mut meta = txn.open_table(META).expect("meta");
        meta.insert(META_HEAD, head).expect("head");
        if let Some(low) = low {
            meta.insert(META_LOW, low).expect("low");
        }
    }
    txn.commit().expect("commit");
}

#[test]
fn a_format_1_log_with_events_is_refused_and_left_unchanged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(CLICK_LOG_FILE_NAME);
    write_format_1_log(&path, 3, 3, None);
    match ClickLog::open(dir.path()) {
        Err(e @ Error::ClickLogFormat { found: 1, supported: CLICK_LOG_FORMAT, .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("storage format 1") && msg.contains(CLICK_LOG_FILE_NAME), "{msg}");
        }
        other => panic!("expected a format error, got {other:?}"),
    }
    // Not modified: its events are still there for the sluice that wrote it, no format-2
    // table or format mark was added.
    let db = Database::create(&path).expect("reopen with redb");
    let txn = db.begin_read().expect("txn");
    assert_eq!(txn.open_table(LEGACY_EVENTS).expect("events").len().expect("len"), 3);
    let tables: Vec<String> = txn.list_tables().expect("tables").map(|t| t.name().to_owned()).collect();
    assert_eq!(tables, vec!["events".to_owned(), "meta".to_owned()]);
    assert_eq!(txn.open_table(META).expect("meta").get(META_FORMAT).expect("get").map(|v| v.value()), None);
}

#[test]
fn a_format_1_log_without_stored_events_is_upgraded_keeping_its_offsets() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_format_1_log(&dir.path().join(CLICK_LOG_FILE_NAME), 0, 7, Some(7));
    let log = ClickLog::open(dir.path()).expect("open upgraded log");
    assert_eq!((log.low(), log.head()), (7, 7));
    assert_eq!(log.append_backfill(&events(7..9)).expect("append"), 7..9);
    assert_eq!(marks(&log), vec![(7, true), (8, true)]);
    drop(log);
    let log = ClickLog::open(dir.path()).expect("reopen");
    assert_eq!(log.read(0, 10).expect("read").into_iter().map(|(o, _)| o).collect::<Vec<_>>(), vec![7, 8]);
}

#[test]
fn a_log_of_a_newer_format_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let log = ClickLog::open(dir.path()).expect("open");
        log.append(&events(0..1)).expect("append");
        let txn = log.test_db().begin_write().expect("txn");
        txn.open_table(META).expect("meta").insert(META_FORMAT, CLICK_LOG_FORMAT + 1).expect("format");
        txn.commit().expect("commit");
    }
    match ClickLog::open(dir.path()) {
        Err(Error::ClickLogFormat { found, supported: CLICK_LOG_FORMAT, .. }) => assert_eq!(found, CLICK_LOG_FORMAT + 1),
        other => panic!("expected a format error, got {other:?}"),
    }
}

/// A format-2 log: plain chunks of `events(0..n)` written as a format-2 build wrote them
/// (count, ends, payload; never compressed), `meta` format 2.
fn write_format_2_log(dir: &std::path::Path, n: u64) -> Vec<ClickEvent> {
    let evs = events(0..n);
    let log = ClickLog::open(dir).expect("open");
    let txn = log.test_db().begin_write().expect("txn");
    {
        let mut value = (n as u32).to_le_bytes().to_vec();
        let mut payload = Vec::new();
        for ev in &evs {
            sluice_schemas::avro::encode_click_event_into(ev, &mut payload).expect("encode");
            value.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        }
        value.extend_from_slice(&payload);
        assert_ne!(&value[..4], &[0, 0, 0, 0]);
        txn.open_table(CHUNKS).expect("chunks").insert(0u64, value.as_slice()).expect("insert");
        let mut meta = txn.open_table(META).expect("meta");
        meta.insert(META_FORMAT, 2).expect("format");
        meta.insert(META_HEAD, n).expect("head");
    }
    txn.commit().expect("commit");
    evs
}

#[test]
fn a_format_2_log_is_read_as_it_is_and_upgraded_to_format_3_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let evs = write_format_2_log(dir.path(), 30);
    // The read-only reader (`sluice log tail`) reads a format-2 log without changing it.
    let reader = ClickLogReader::open(dir.path()).expect("reader opens format 2");
    assert_eq!(reader.read(0, 100).expect("read").into_iter().map(|(_, e)| e).collect::<Vec<_>>(), evs);
    drop(reader);
    let log = ClickLog::open(dir.path()).expect("a writer opens format 2");
    assert_eq!(log.head(), 30);
    assert_eq!(log.read(0, 100).expect("read").into_iter().map(|(_, e)| e).collect::<Vec<_>>(), evs);
    {
        let txn = log.test_db().begin_read().expect("txn");
        let meta = txn.open_table(META).expect("meta");
        assert_eq!(meta_get(&meta, META_FORMAT).expect("get"), Some(CLICK_LOG_FORMAT), "upgraded");
    }
    // New appends (compressed: the events repeat their user agent) follow the old ones.
    let more = events(30..130);
    assert_eq!(log.append(&more).expect("append"), 30..130);
    drop(log);
    let log = ClickLog::open(dir.path()).expect("reopen");
    let all: Vec<ClickEvent> = log.read(0, 1000).expect("read").into_iter().map(|(_, e)| e).collect();
    assert_eq!(all, evs.into_iter().chain(more).collect::<Vec<_>>());
    let txn = log.test_db().begin_read().expect("txn");
    let chunks = txn.open_table(CHUNKS).expect("chunks");
    let kinds: Vec<(u64, bool)> = chunks.iter().expect("iter").map(|r| r.expect("entry")).map(|(k, v)| (k.value(), v.value()[..4] == [0, 0, 0, 0])).collect();
    assert_eq!(kinds, vec![(0, false), (30, true)], "the old chunk stays plain, the new one is compressed");
}
