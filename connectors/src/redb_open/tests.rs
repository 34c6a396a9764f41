use super::*;

/// A file another handle holds is [`is_held`], and a second open of it fails on the lock
/// without the "not closed cleanly" warning (nothing crashed; a tester saw the warning
/// when starting a second server on a busy data dir). Once closed, it is not held.
#[test]
fn a_held_file_is_refused_without_the_not_closed_cleanly_warning() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("x.redb");
    let db = open_checked(&path, "test file", None, |d| d, |e| e.to_string()).expect("open");
    assert!(is_held(&path) && was_not_closed_cleanly(&path), "held by a writer, bit set");
    let warned = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&warned);
    let warn = move |_w: RepairWarning| {
        seen.fetch_add(1, Ordering::SeqCst);
        true
    };
    let second = open_checked_gated(&path, "test file", None, warn, |d| d, |e| e.to_string(), redb::backends::FileBackend::new);
    assert!(second.is_err(), "the lock refuses a second open");
    assert_eq!(warned.load(Ordering::SeqCst), 0, "no recovery warning for a held file");
    drop(db);
    assert!(!is_held(&path), "closed: nobody holds it");
    assert!(!is_held(&dir.path().join("missing")), "a missing file is not held");
}

/// The header bit read by [`was_not_closed_cleanly`]: set on a copy taken while a writer
/// has the file open (as a killed writer leaves it), clear once the writer closed it,
/// and clear again after a writer's open recovered the copy and closed it.
#[test]
fn not_closed_cleanly_is_read_from_the_header() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, copy) = (dir.path().join("x.redb"), dir.path().join("copy.redb"));
    const T: redb::TableDefinition<u64, u64> = redb::TableDefinition::new("t");
    let db = open_checked(&path, "test file", None, |d| d, |e| e.to_string()).expect("open");
    let w = db.begin_write().expect("write");
    w.open_table(T).expect("table").insert(1, 2).expect("insert");
    w.commit().expect("commit");
    assert!(was_not_closed_cleanly(&path), "open by a writer");
    std::fs::copy(&path, &copy).expect("copy");
    drop(db);
    assert!(!was_not_closed_cleanly(&path), "closed");
    assert!(was_not_closed_cleanly(&copy), "the copy of an open file");
    let recovered = open_checked(&copy, "test file", None, |d| d, |e| e.to_string()).expect("recover");
    drop(recovered);
    assert!(!was_not_closed_cleanly(&copy), "recovered and closed");
    for junk in [&b""[..], b"redb", b"not a redb file at all"] {
        std::fs::write(&copy, junk).expect("write");
        assert!(!was_not_closed_cleanly(&copy), "{junk:?}");
    }
    assert!(!was_not_closed_cleanly(&dir.path().join("missing")));
}

/// A zero-length file (e.g. `anomalies.redb` cut with `truncate -s 0`) is damage for
/// every store that opens through here, and is left as it is; a missing file is created.
#[test]
fn an_empty_file_is_damage_and_left_empty() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("anomalies.redb");
    std::fs::write(&path, b"").expect("write");
    let e = open_checked(&path, "anomaly store", None, |d| d, |e| e.to_string()).expect_err("empty");
    assert_eq!(e, EMPTY_FILE);
    assert_eq!(std::fs::metadata(&path).expect("metadata").len(), 0, "left as it is");
    std::fs::remove_file(&path).expect("rm");
    drop(open_checked(&path, "anomaly store", None, |d| d, |e| e.to_string()).expect("a missing file is created"));
    assert!(std::fs::metadata(&path).expect("metadata").len() > 0);
}

#[test]
fn only_the_fallback_stage_is_damage() {
    assert!(is_fallback_stage(0.3));
    for p in [0.0, 0.6, 0.9, 1.0] {
        assert!(!is_fallback_stage(p), "{p}");
    }
}

/// A file written, closed cleanly and reopened passes the check without a repair
/// warning (the stages redb reports on every checked open are not damage).
#[test]
fn a_clean_file_reopens_without_a_fallback_stage() {
    use std::sync::{Arc, Mutex};

    use redb::ReadableDatabase;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("x.redb");
    const T: redb::TableDefinition<u64, u64> = redb::TableDefinition::new("t");
    {
        let db = open_checked(&path, "test file", None, |d| d, |e| e.to_string()).expect("open");
        let w = db.begin_write().expect("write");
        w.open_table(T).expect("table").insert(1, 2).expect("insert");
        w.commit().expect("commit");
    }
    let stages = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&stages);
    let db = Database::builder()
        .set_check_integrity_on_open(true)
        .set_repair_callback(move |s| seen.lock().expect("lock").push(s.progress()))
        .create(&path)
        .expect("reopen");
    let stages = stages.lock().expect("lock").clone();
    assert!(!stages.is_empty(), "redb reports its routine stages on a checked open");
    assert!(!stages.iter().any(|&p| is_fallback_stage(p)), "{stages:?}");
    let r = db.begin_read().expect("read");
    assert_eq!(r.open_table(T).expect("table").get(1).expect("get").map(|v| v.value()), Some(2));
}

#[test]
fn copy_on_write_keeps_writes_in_memory_and_reads_them_back() {
    use redb::StorageBackend;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("f");
    let original: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&path, &original).expect("write");
    let cow = CopyOnWrite::new(std::fs::File::open(&path).expect("open")).expect("wrap");
    assert_eq!(cow.len().expect("len"), 10_000);
    // A write across the first page boundary, then one past the end (the file grows).
    cow.write(4090, &[7; 12]).expect("write");
    cow.write(12_000, &[9; 3]).expect("write");
    assert_eq!(cow.len().expect("len"), 12_003);
    let mut all = vec![0u8; 12_003];
    cow.read(0, &mut all).expect("read");
    let mut expected = original.clone();
    expected[4090..4102].fill(7);
    expected.resize(12_000, 0);
    expected.extend_from_slice(&[9; 3]);
    assert!(all == expected, "reads see the writes, the file's bytes and zeros past its end");
    // A shrink hides what was cut: growing again reads zeros there.
    cow.set_len(5000).expect("shrink");
    cow.set_len(6000).expect("grow");
    let mut tail = vec![1u8; 1000];
    cow.read(5000, &mut tail).expect("read");
    assert!(tail.iter().all(|&b| b == 0), "cut bytes read as zeros");
    drop(cow);
    assert!(std::fs::read(&path).expect("read") == original, "the file is unchanged");
}
