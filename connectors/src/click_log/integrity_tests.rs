//! The integrity check at open: a damaged `clicks.redb` (truncated, overwritten with
//! garbage) is refused with [`Error::ClickLogDamaged`] naming the file and what to do, never
//! opened as if it were sound and never a panic.

use std::io::{Seek, SeekFrom, Write};

use sluice_schemas::ClickEvent;
use uuid::Uuid;

use super::*;

fn event(i: u64) -> ClickEvent {
    ClickEvent {
        event_id: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 | u128::from(i)),
        code: format!("c{}", i % 17),
        ts: 1_700_000_000_000 + i as i64,
        ip_trunc: None,
        visitor_id: i,
        // Varied bytes, so the events fill many pages.
        user_agent: format!("agent/{i}/{:x}", i.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
        referrer: None,
        accept_language: None,
        edge_region: None,
    }
}

/// A log of 20,000 events in 40 appends, closed; returns the directory and the file's length.
fn written_log() -> (tempfile::TempDir, u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let log = ClickLog::open(dir.path()).expect("open");
        for b in 0..40u64 {
            let evs: Vec<ClickEvent> = (b * 500..(b + 1) * 500).map(event).collect();
            log.append(&evs).expect("append");
        }
        assert_eq!(log.head(), 20_000);
    }
    let len = std::fs::metadata(dir.path().join(CLICK_LOG_FILE_NAME)).expect("metadata").len();
    assert!(len > 1 << 20, "the log spans many pages: {len} bytes");
    (dir, len)
}

fn assert_damaged(dir: &Path) {
    let path = dir.join(CLICK_LOG_FILE_NAME);
    match ClickLog::open(dir) {
        Err(e @ Error::ClickLogDamaged { .. }) => {
            let msg = e.to_string();
            eprintln!("{msg}");
            assert!(msg.contains(&path.display().to_string()), "names the file: {msg}");
            assert!(msg.contains(&format!("run `sluice log reset --data-dir {}`", dir.display())), "says what to do: {msg}");
        }
        Err(e) => panic!("expected ClickLogDamaged, got {e:?}"),
        Ok(log) => panic!("a damaged log opened: {log:?}"),
    }
}

#[test]
fn a_sound_log_passes_the_check_and_keeps_its_events() {
    let (dir, _) = written_log();
    let log = ClickLog::open(dir.path()).expect("reopen");
    assert_eq!((log.low(), log.head()), (0, 20_000));
    assert_eq!(log.read(12_345, 1).expect("read"), vec![(12_345, event(12_345))]);
}

#[test]
fn a_truncated_log_is_refused_at_open() {
    let (dir, len) = written_log();
    let f = std::fs::OpenOptions::new().write(true).open(dir.path().join(CLICK_LOG_FILE_NAME)).expect("open file");
    f.set_len(len / 2).expect("truncate");
    drop(f);
    assert_damaged(dir.path());
}

#[test]
fn a_log_overwritten_with_garbage_is_refused_at_open() {
    let (dir, len) = written_log();
    let mut f = std::fs::OpenOptions::new().write(true).open(dir.path().join(CLICK_LOG_FILE_NAME)).expect("open file");
    // 64 KiB of pseudo-random bytes in the middle of the file (not the header).
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let garbage: Vec<u8> = (0..65_536)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    f.seek(SeekFrom::Start(len / 2)).expect("seek");
    f.write_all(&garbage).expect("overwrite");
    f.sync_all().expect("sync");
    drop(f);
    assert_damaged(dir.path());
}

#[test]
fn a_log_with_a_garbage_header_is_refused_at_open() {
    let (dir, _) = written_log();
    let mut f = std::fs::OpenOptions::new().write(true).open(dir.path().join(CLICK_LOG_FILE_NAME)).expect("open file");
    f.write_all(&[0xA5; 4096]).expect("overwrite the header");
    drop(f);
    assert_damaged(dir.path());
}

#[test]
fn a_log_cut_inside_its_header_is_refused_as_damaged() {
    // Cut to fewer bytes than redb's header (a failed copy, a partial restore): the open
    // failed with a bare "failed to fill whole buffer" I/O error that no message explained
    // and that `sluice log reset` did not take for damage.
    for cut in [9u64, 100, 300] {
        let (dir, _) = written_log();
        let f = std::fs::OpenOptions::new().write(true).open(dir.path().join(CLICK_LOG_FILE_NAME)).expect("open file");
        f.set_len(cut).expect("truncate");
        drop(f);
        // `log tail`'s reader says the same, before the writer's open touches the file.
        match ClickLogReader::open(dir.path()) {
            Err(Error::ClickLogDamaged { .. }) => {}
            other => panic!("cut to {cut} bytes: expected ClickLogDamaged from the reader, got {other:?}"),
        }
        assert_damaged(dir.path());
    }
}

/// A file cut to 0 bytes is damage too, not a new log: the writer's open (a start, `sluice
/// log reset`) and the reader (`sluice log tail`) refuse it with one message, and neither
/// writes a new database into it.
#[test]
fn a_log_cut_to_zero_bytes_is_damaged_for_the_writer_and_the_reader() {
    let (dir, _) = written_log();
    let path = dir.path().join(CLICK_LOG_FILE_NAME);
    std::fs::OpenOptions::new().write(true).open(&path).and_then(|f| f.set_len(0)).expect("truncate");
    let want = format!(
        "click log \"{p}\" is damaged and could not be repaired (the file is empty (0 bytes): it holds no database, not even redb's \
         header); sluice will not start on it. Stop every process using this data dir, then run `sluice log reset --data-dir {d}`: it \
         moves the damaged file aside and starts a new, empty click log that continues from the newest checkpoint, keeping every click \
         the checkpoint counted (or, instead, put a backup of \"{p}\" back at that path)",
        p = path.display(),
        d = dir.path().display()
    );
    assert_eq!(ClickLog::open(dir.path()).expect_err("damaged").to_string(), want);
    assert_eq!(ClickLogReader::open(dir.path()).expect_err("damaged").to_string(), want);
    assert_eq!(std::fs::metadata(&path).expect("metadata").len(), 0, "nothing was written into it");
    assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 1, "nothing else was created");
}

/// A file cut short also looks not closed cleanly to redb (its length is not the one its
/// header records), so the reader's open asks for a repair. It is damage all the same, and
/// the reader says so (naming `sluice log reset`) rather than that a repair is needed — also
/// for a copy taken while a writer had the file open, which was not closed cleanly either.
#[test]
fn a_truncated_log_is_damaged_for_the_reader_not_in_need_of_a_repair() {
    let (dir, _) = written_log();
    let open_copy = tempfile::tempdir().expect("tempdir");
    {
        let log = ClickLog::open(dir.path()).expect("open");
        std::fs::copy(log.path(), open_copy.path().join(CLICK_LOG_FILE_NAME)).expect("copy while open");
    }
    for (d, closed_cleanly) in [(dir.path(), true), (open_copy.path(), false)] {
        let path = d.join(CLICK_LOG_FILE_NAME);
        let len = std::fs::metadata(&path).expect("metadata").len();
        std::fs::OpenOptions::new().write(true).open(&path).and_then(|f| f.set_len(len / 2)).expect("truncate");
        let cut = std::fs::read(&path).expect("read file");
        let e = ClickLogReader::open(d).expect_err("damaged");
        assert_eq!(e.open_failure(), crate::redb_open::OpenFailure::Other, "{e}");
        let detail = if closed_cleanly {
            format!("File truncated below stored layout: file_len={}, layout_len={len}", len / 2)
        } else {
            format!("File length does not correspond to a valid region layout: file_len={}", len / 2)
        };
        assert_eq!(
            e.to_string(),
            format!(
                "click log \"{p}\" is damaged and could not be repaired ({detail}); sluice will not start on it. Stop every process using \
                 this data dir, then run `sluice log reset --data-dir {d}`: it moves the damaged file aside and starts a new, empty click \
                 log that continues from the newest checkpoint, keeping every click the checkpoint counted (or, instead, put a backup of \
                 \"{p}\" back at that path)",
                p = path.display(),
                d = d.display()
            )
        );
        assert!(std::fs::read(&path).expect("read file") == cut, "the reader wrote to the file");
        // A start says the same.
        assert_eq!(ClickLog::open(d).expect_err("damaged").to_string(), e.to_string());
    }
}

/// Flips one byte at `at` of the log file in `dir`.
fn flip(dir: &Path, at: u64) {
    use std::io::Read;
    let mut f = std::fs::OpenOptions::new().read(true).write(true).open(dir.join(CLICK_LOG_FILE_NAME)).expect("open file");
    let mut b = [0u8];
    f.seek(SeekFrom::Start(at)).expect("seek");
    f.read_exact(&mut b).expect("read");
    f.seek(SeekFrom::Start(at)).expect("seek");
    f.write_all(&[b[0] ^ 0x01]).expect("write");
}

#[test]
fn the_read_only_reader_refuses_an_altered_file_and_never_returns_altered_events() {
    // `sluice log tail` opens the log read-only. A read-only redb open verifies no page
    // checksums, so before the check a flipped bit in a chunk came back as an altered event
    // (exit 0), and some flips made a later read panic.
    let (dir, len) = written_log();
    let expected: Vec<(u64, ClickEvent)> = (0..20_000).map(|i| (i, event(i))).collect();
    let pristine = std::fs::read(dir.path().join(CLICK_LOG_FILE_NAME)).expect("read file");
    let reader = ClickLogReader::open(dir.path()).expect("a sound log opens read-only");
    assert_eq!(reader.read(0, 30_000).expect("read"), expected);
    drop(reader);
    let (mut refused, mut whole) = (0, 0);
    // 40 flips spread over the file past redb's header page.
    for k in 0..40u64 {
        std::fs::write(dir.path().join(CLICK_LOG_FILE_NAME), &pristine).expect("restore");
        let at = 4096 + (len - 4096) * k / 40 + k * 37 % 4096;
        flip(dir.path(), at.min(len - 1));
        let read = std::panic::catch_unwind(|| ClickLogReader::open(dir.path()).and_then(|r| r.read(0, 30_000)));
        match read {
            Err(_) => panic!("flip at {at}: the reader panicked"),
            Ok(Err(Error::ClickLogDamaged { .. })) => refused += 1,
            Ok(Err(e)) => panic!("flip at {at}: expected ClickLogDamaged or the events unchanged, got {e:?}"),
            Ok(Ok(events)) => {
                assert!(events == expected, "flip at {at}: the reader returned altered events");
                whole += 1;
            }
        }
    }
    // Flips in unused pages change nothing; most land in the events' pages and are refused.
    assert!(refused >= 20, "refused {refused} of 40 (unchanged {whole})");
    // The file itself is never written by the reader.
    std::fs::write(dir.path().join(CLICK_LOG_FILE_NAME), &pristine).expect("restore");
    let _ = ClickLogReader::open(dir.path()).expect("open").read(0, 10).expect("read");
    assert!(std::fs::read(dir.path().join(CLICK_LOG_FILE_NAME)).expect("read file") == pristine, "the reader wrote to the file");
}

/// Attack of session 47: 512 bytes of garbage written into a small log (a few pages, like a
/// server's first minutes) made `sluice log tail` fail with a bare "DB corrupted: Malformed
/// allocator state" instead of the damage message naming `sluice log reset`. Every block of
/// the file overwritten in turn (pseudo-random bytes, then zeros): the reader and the
/// writer open it and read the events unchanged, or refuse it as damaged; never another
/// error, never a panic.
#[test]
fn garbage_anywhere_in_a_small_log_is_damage_for_the_reader() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let log = ClickLog::open(dir.path()).expect("open");
        for b in 0..4u64 {
            log.append(&(b * 50..(b + 1) * 50).map(event).collect::<Vec<_>>()).expect("append");
        }
    }
    let path = dir.path().join(CLICK_LOG_FILE_NAME);
    let pristine = std::fs::read(&path).expect("read file");
    let expected: Vec<(u64, ClickEvent)> = (0..200).map(|i| (i, event(i))).collect();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut refused = 0;
    for zeros in [false, true] {
        for at in (512..pristine.len()).step_by(512) {
            let mut bytes = pristine.clone();
            for b in &mut bytes[at..(at + 512).min(pristine.len())] {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                *b = if zeros { 0 } else { seed as u8 };
            }
            std::fs::write(&path, &bytes).expect("write");
            let read = std::panic::catch_unwind(|| ClickLogReader::open(dir.path()).and_then(|r| r.read(0, 1000)));
            match read {
                Err(_) => panic!("garbage at {at} (zeros {zeros}): the reader panicked"),
                Ok(Err(Error::ClickLogDamaged { .. })) => refused += 1,
                Ok(Err(e)) => panic!("garbage at {at} (zeros {zeros}): expected ClickLogDamaged or the events unchanged, got {e:?}"),
                Ok(Ok(events)) => assert!(events == expected, "garbage at {at} (zeros {zeros}): altered events"),
            }
            // The writer's open (a start) decides alike: the events unchanged, or damage.
            std::fs::write(&path, &bytes).expect("write");
            match std::panic::catch_unwind(|| ClickLog::open(dir.path()).and_then(|l| l.read(0, 1000))) {
                Err(_) => panic!("garbage at {at} (zeros {zeros}): the writer's open panicked"),
                Ok(Err(Error::ClickLogDamaged { .. })) => {}
                Ok(Err(e)) => panic!("garbage at {at} (zeros {zeros}): the writer expected ClickLogDamaged or the events unchanged, got {e:?}"),
                Ok(Ok(events)) => assert!(events == expected, "garbage at {at} (zeros {zeros}): the writer read altered events"),
            }
        }
    }
    assert!(refused > 0, "some block holds the events");
}
