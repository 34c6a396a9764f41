//! `sluice log tail`: prints click events from the embedded log as NDJSON, one object per
//! line: `{"event": {ClickEvent fields}, "offset": N}` (keys in that order).
//!
//! The log is opened read-only ([`ClickLogReader`]): it can be tailed on a read-only file
//! system (a backup mount) and is not written. The file is held exclusively by a running
//! `sluice serve` with the same data directory; stop it first (events survive restarts). A
//! log not closed cleanly (its server was killed, or a copy taken while it ran) is read as
//! the next start will recover it, the recovery kept in memory (the file is not written, and
//! may be on a read-only file system); a damaged one (e.g. cut short, which redb also takes
//! for not closed cleanly) is refused as damaged, as a start refuses it.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use sluice_connectors::click_log::{CLICK_LOG_FILE_NAME, ClickLogReader};

use crate::log_open::open_error;

/// Events read per batch.
const BATCH: usize = 1024;

/// Where to start: `from`, or `lines` events before the head.
pub fn start_offset(log: &ClickLogReader, from: Option<u64>, lines: u64) -> u64 {
    from.unwrap_or_else(|| log.head().saturating_sub(lines)).max(log.low())
}

/// What `--from` asked for that the log cannot give, as a note for standard error: an offset
/// past the head (nothing to print yet) or one before the oldest kept event (the events
/// before `low` were removed: a log reset, a drained Kafka spill). `None` when `from` is absent or in `[low, head]`.
/// `low` and `head` are log offsets (the oldest kept event and the next to be written).
pub fn from_note(from: Option<u64>, low: u64, head: u64) -> Option<String> {
    let from = from?;
    if from > head {
        Some(format!("note: --from {from} is past the end of the click log (next offset {head}): nothing to print"))
    } else if from < low {
        Some(format!("note: the click log starts at offset {low} (earlier events were removed, e.g. by `sluice log reset`): printing from {low}"))
    } else {
        None
    }
}

/// Writes events `[from, head)` to `out`; returns the next offset.
///
/// Errors: a failed log read; a failed write ([`crate::stdout::write_error`]: a closed
/// output is [`crate::stdout::OutputClosed`]).
pub fn print_range(log: &ClickLogReader, mut from: u64, out: &mut impl Write) -> anyhow::Result<u64> {
    loop {
        let batch = log.read(from, BATCH).context("could not read the click log")?;
        let Some((last, _)) = batch.last() else { return Ok(from) };
        let next = last + 1;
        let mut text = Vec::new();
        for (offset, event) in &batch {
            serde_json::to_writer(&mut text, &serde_json::json!({ "offset": offset, "event": event }))?;
            text.push(b'\n');
        }
        out.write_all(&text).and_then(|()| out.flush()).map_err(crate::stdout::write_error)?;
        from = next;
    }
}

/// Runs `sluice log tail` on the log in `data_dir`, writing to standard output.
///
/// # Errors
/// As [`run_to`].
pub fn run(data_dir: &Path, from: Option<u64>, lines: u64) -> anyhow::Result<()> {
    run_to(data_dir, from, lines, &mut std::io::stdout().lock())
}

/// `sluice log tail` with its configuration: refuses a data dir that is a file, then Kafka
/// mode, whose clicks are in the click topic and never in `clicks.redb` (an empty answer
/// there would read as "no clicks"), then runs [`run`] on `[server] data-dir`.
///
/// # Errors
/// A data dir that is a file (a usage error, exit 2: [`crate::config::refuse_non_directory`]);
/// Kafka mode (`[kafka] brokers` set), naming the topic; else as [`run_to`].
pub fn run_with_config(cfg: &crate::config::Config, from: Option<u64>, lines: u64) -> anyhow::Result<()> {
    crate::config::refuse_non_directory(&cfg.server.data_dir)?;
    kafka_refusal(cfg)?;
    run(&cfg.server.data_dir, from, lines)
}

fn kafka_refusal(cfg: &crate::config::Config) -> anyhow::Result<()> {
    if cfg.kafka.enabled() {
        anyhow::bail!(
            "[kafka] brokers is set: clicks go to the Kafka topic \"{}\", not to clicks.redb; read them there (e.g. kcat -C -t {} -o -10 -e)",
            cfg.kafka.click_topic,
            cfg.kafka.click_topic
        );
    }
    Ok(())
}

/// Runs `sluice log tail` on the log in `data_dir`, writing to `out`.
///
/// # Errors
/// When `data_dir` does not exist or holds no click log (nothing is created: a typo in
/// `--data-dir` must not leave an empty log behind), when the log is held by a running
/// server or cannot be opened otherwise ([`open_error`] names the cause), or when reading or
/// writing fails.
pub fn run_to(data_dir: &Path, from: Option<u64>, lines: u64, out: &mut impl Write) -> anyhow::Result<()> {
    crate::config::existing_data_dir(data_dir, "tail")?;
    let file = data_dir.join(CLICK_LOG_FILE_NAME);
    if file.is_dir() {
        anyhow::bail!("\"{}\" is a directory, not a click log: nothing to tail (check --data-dir)", file.display());
    }
    if !file.is_file() {
        anyhow::bail!(
            "no click log in \"{}\" (expected \"{}\"): nothing to tail (check --data-dir; `sluice serve` creates the log)",
            data_dir.display(),
            file.display()
        );
    }
    // A log a server holds reads as not closed cleanly too; it is refused below.
    let held = sluice_connectors::redb_open::is_held(&file);
    if !held && sluice_connectors::redb_open::was_not_closed_cleanly(&file) {
        tracing::info!(path = %file.display(), "the click log was not closed cleanly (its server was killed): reading it as the next start will recover it, without writing to it");
    }
    let log = ClickLogReader::open(data_dir).map_err(|e| open_error(data_dir, e, "stop it first"))?;
    if let Some(note) = from_note(from, log.low(), log.head()) {
        eprintln!("{note}");
    }
    let start = start_offset(&log, from, lines);
    print_range(&log, start, out)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_fs::{Mutable, set_immutable};
    use sluice_connectors::click_log::ClickLog;
    use sluice_connectors::redb_open::OpenFailure;
    use sluice_schemas::ClickEvent;

    fn click(i: u128) -> ClickEvent {
        ClickEvent {
            event_id: uuid::Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 | i),
            code: format!("c{i}"),
            ts: 1_700_000_000_000 + i as i64,
            ip_trunc: None,
            visitor_id: 7,
            user_agent: "ua".into(),
            referrer: None,
            accept_language: None,
            edge_region: None,
        }
    }

    /// The lines `run_to` wrote, parsed.
    fn lines(out: Vec<u8>) -> Vec<serde_json::Value> {
        String::from_utf8(out).expect("utf-8").lines().map(|l| serde_json::from_str(l).expect("json line")).collect()
    }

    fn line(offset: u64, i: u128, ts: i64) -> serde_json::Value {
        serde_json::json!({"offset": offset, "event": {
            "event_id": format!("01900000-0000-7000-8000-00000000000{i}"), "code": format!("c{i}"), "ts": ts, "ip_trunc": null,
            "visitor_id": 7, "user_agent": "ua", "referrer": null, "accept_language": null, "edge_region": null
        }})
    }

    /// Kafka mode: the clicks are in the topic, never in clicks.redb, so tail says where
    /// they are instead of printing nothing with exit 0.
    #[test]
    fn kafka_mode_names_the_click_topic() {
        let mut cfg: crate::config::Config = toml::from_str(crate::config::DEFAULT_TOML).expect("defaults");
        cfg.kafka.brokers = Some("127.0.0.1:9".into());
        cfg.kafka.click_topic = "clicks-x".into();
        let e = run_with_config(&cfg, None, 10).expect_err("kafka mode");
        assert_eq!(
            e.to_string(),
            "[kafka] brokers is set: clicks go to the Kafka topic \"clicks-x\", not to clicks.redb; read them there (e.g. kcat -C -t clicks-x -o -10 -e)"
        );
        cfg.kafka.brokers = None;
        assert!(kafka_refusal(&cfg).is_ok());
    }

    /// The finding: tail is read-only, so a log it cannot write (here the file and its
    /// directory are immutable, which refuses root too, like a read-only mount) is tailed,
    /// and nothing is written to the directory.
    #[test]
    fn a_log_that_cannot_be_written_is_tailed() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("d");
        ClickLog::open(&dir).expect("open").append(&[click(1), click(2), click(3)]).expect("append");
        let file = dir.join(CLICK_LOG_FILE_NAME);
        let (_file, _dir) = (Mutable(&file), Mutable(&dir));
        if !set_immutable(&file, true) || !set_immutable(&dir, true) {
            eprintln!("skipped: cannot set the immutable attribute here (needs root and a file system with chattr +i)");
            return;
        }
        let refused = std::fs::OpenOptions::new().read(true).write(true).open(&file).expect_err("no write access");
        assert_eq!(refused.raw_os_error(), Some(1), "EPERM even for root");
        let mut out = Vec::new();
        run_to(&dir, None, 2, &mut out).expect("tail");
        assert_eq!(lines(out), vec![line(1, 2, 1_700_000_000_002), line(2, 3, 1_700_000_000_003)]);
        let mut out = Vec::new();
        run_to(&dir, Some(0), 10, &mut out).expect("tail --from 0");
        assert_eq!(lines(out).len(), 3);
        let names: Vec<String> = std::fs::read_dir(&dir).expect("read dir").map(|e| e.expect("entry").file_name().to_string_lossy().into_owned()).collect();
        assert_eq!(names, vec![CLICK_LOG_FILE_NAME.to_string()]);
    }

    /// Finding: `--from` past the head printed nothing and said nothing. The note names the
    /// next offset; an offset before the oldest kept event says where printing starts.
    #[test]
    fn from_outside_the_log_gets_a_note() {
        assert_eq!(from_note(None, 5, 9), None);
        for ok in [5, 7, 9] {
            assert_eq!(from_note(Some(ok), 5, 9), None, "{ok}");
        }
        assert_eq!(from_note(Some(10), 5, 9).as_deref(), Some("note: --from 10 is past the end of the click log (next offset 9): nothing to print"));
        assert_eq!(
            from_note(Some(4), 5, 9).as_deref(),
            Some("note: the click log starts at offset 5 (earlier events were removed, e.g. by `sluice log reset`): printing from 5")
        );
        assert_eq!(
            from_note(Some(u64::MAX), 0, 0).as_deref(),
            Some(&*format!("note: --from {} is past the end of the click log (next offset 0): nothing to print", u64::MAX))
        );
    }

    /// Only a log held by a writer asks about `sluice serve`.
    #[test]
    fn a_log_held_by_a_writer_asks_to_stop_it() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let log = ClickLog::open(tmp.path()).expect("open");
        log.append(&[click(1)]).expect("append");
        let e = run_to(tmp.path(), None, 10, &mut Vec::new()).expect_err("held");
        // Our classification and message; the click log's error follows, its source in
        // redb's words (not spelled out: a redb upgrade may reword it).
        let cause = e.downcast_ref::<sluice_connectors::Error>().expect("the click log's error");
        assert!(matches!(cause, sluice_connectors::Error::ClickLog { op: "open", .. }), "{cause:?}");
        assert_eq!(cause.open_failure(), OpenFailure::HeldByAnotherProcess, "{cause}");
        assert_eq!(
            format!("{e:#}"),
            format!(
                "could not open the click log in \"{}\": another process has it open (is `sluice serve` running on it? stop it first): {}",
                tmp.path().display(),
                crate::health::error_chain(cause)
            )
        );
        drop(log);
        let mut out = Vec::new();
        run_to(tmp.path(), None, 10, &mut out).expect("tail once closed");
        assert_eq!(lines(out), vec![line(0, 1, 1_700_000_000_001)]);
    }

    /// A log holding `clicks` in `tmp/a`, closed cleanly, and in `tmp/b` a copy of its file
    /// taken while its writer had it open (not closed cleanly); returns both directories.
    fn log_and_copy_taken_while_open(tmp: &Path, clicks: &[ClickEvent]) -> (std::path::PathBuf, std::path::PathBuf) {
        let (dir, copy) = (tmp.join("a"), tmp.join("b"));
        let log = ClickLog::open(&dir).expect("open");
        log.append(clicks).expect("append");
        std::fs::create_dir(&copy).expect("mkdir");
        std::fs::copy(log.path(), copy.join(CLICK_LOG_FILE_NAME)).expect("copy while open");
        drop(log);
        (dir, copy)
    }

    /// A copy of a log taken while a writer had it open was not closed cleanly: tail reads it
    /// as a writer's open would recover it and prints its events, without writing to the file
    /// (also when the file may not be written at all).
    #[test]
    fn a_log_not_closed_cleanly_is_tailed_without_writing_to_it() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (_, copy) = log_and_copy_taken_while_open(tmp.path(), &[click(1), click(2)]);
        let file = copy.join(CLICK_LOG_FILE_NAME);
        assert!(sluice_connectors::redb_open::was_not_closed_cleanly(&file));
        let before = std::fs::read(&file).expect("read");
        // Immutable (chattr +i): not even root may write it (where the attribute is supported).
        let _mutable_again = Mutable(&file);
        let immutable = set_immutable(&file, true);
        if immutable {
            assert!(std::fs::OpenOptions::new().write(true).open(&file).is_err(), "the file cannot be opened for writing");
        }
        let mut out = Vec::new();
        run_to(&copy, None, 10, &mut out).expect("tail");
        assert_eq!(lines(out), vec![line(0, 1, 1_700_000_000_001), line(1, 2, 1_700_000_000_002)]);
        assert!(std::fs::read(&file).expect("read") == before, "the file is left as it was");
        assert!(sluice_connectors::redb_open::was_not_closed_cleanly(&file), "still for the next start to recover");
    }

    /// While tail reads a log left not closed cleanly (recovered in memory), no writer may open
    /// the file, and tail refuses a file a writer holds, naming the cause.
    #[test]
    fn a_recovered_read_excludes_writers_and_a_held_log_is_refused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let log = ClickLog::open(&tmp.path().join("a")).expect("open");
        log.append(&[click(1)]).expect("append");
        let copy = tmp.path().join("b");
        std::fs::create_dir(&copy).expect("mkdir");
        std::fs::copy(log.path(), copy.join(CLICK_LOG_FILE_NAME)).expect("copy");
        let held = ClickLogReader::open(&tmp.path().join("a")).expect_err("held by the writer");
        assert_eq!(held.open_failure(), OpenFailure::HeldByAnotherProcess, "{held}");
        drop(log);
        let reader = ClickLogReader::open(&copy).expect("recovered read");
        let writer = ClickLog::open(&copy).expect_err("no writer while the reader reads");
        assert_eq!(writer.open_failure(), OpenFailure::HeldByAnotherProcess, "{writer}");
        assert_eq!(reader.read(0, 10).expect("read").len(), 1);
        drop(reader);
        let log = ClickLog::open(&copy).expect("a writer once the reader is gone");
        assert_eq!(log.read(0, 10).expect("read").len(), 1);
    }

    /// A log cut to half its size also looks not closed cleanly to redb (its length is not
    /// the one its header records). Tail reports the real cause, the damage, naming `sluice
    /// log reset` as a start does, and leaves the file as it is; also for a copy taken while
    /// a writer had the log open (not closed cleanly as well).
    #[test]
    fn a_truncated_log_is_reported_as_damaged_not_as_not_closed_cleanly() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (closed, copy) = log_and_copy_taken_while_open(tmp.path(), &[click(1), click(2)]);
        for (dir, closed_cleanly) in [(closed, true), (copy, false)] {
            let file = dir.join(CLICK_LOG_FILE_NAME);
            let len = std::fs::metadata(&file).expect("metadata").len();
            std::fs::OpenOptions::new().write(true).open(&file).and_then(|f| f.set_len(len / 2)).expect("truncate");
            let cut = std::fs::read(&file).expect("read");
            let e = run_to(&dir, None, 10, &mut Vec::new()).expect_err("damaged");
            let detail = if closed_cleanly {
                format!("File truncated below stored layout: file_len={}, layout_len={len}", len / 2)
            } else {
                // Half of this small file still maps onto a region layout: redb names the first
                // page past the cut.
                "Page r0.16/0 extends past the end of its region, which has 8 pages".to_owned()
            };
            assert_eq!(
                format!("{e:#}"),
                format!(
                    "could not open the click log in \"{d}\": click log \"{f}\" is damaged and could not be repaired ({detail}); sluice will \
                     not start on it. Stop every process using this data dir, then run `sluice log reset --data-dir {d}`: it moves the \
                     damaged file aside and starts a new, empty click log that continues from the newest checkpoint, keeping every click \
                     the checkpoint counted (or, instead, put a backup of \"{f}\" back at that path)",
                    d = dir.display(),
                    f = file.display()
                )
            );
            assert!(std::fs::read(&file).expect("read") == cut, "the file is left as it is");
            let names: Vec<String> = std::fs::read_dir(&dir).expect("ls").map(|e| e.expect("entry").file_name().to_string_lossy().into_owned()).collect();
            assert_eq!(names, vec![CLICK_LOG_FILE_NAME.to_string()]);
        }
    }

    #[test]
    fn a_missing_directory_or_log_is_an_error_and_nothing_is_created() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let missing = tmp.path().join("nope");
        let e = run_to(&missing, None, 10, &mut Vec::new()).expect_err("missing dir");
        assert!(e.to_string().starts_with("no data directory"), "{e}");
        assert!(!missing.exists(), "no directory created");

        let empty = tmp.path().join("empty");
        std::fs::create_dir(&empty).expect("mkdir");
        let e = run_to(&empty, None, 10, &mut Vec::new()).expect_err("no log");
        assert!(e.to_string().starts_with("no click log in"), "{e}");
        assert_eq!(std::fs::read_dir(&empty).expect("read dir").count(), 0, "no log file created");

        let odd = tmp.path().join("odd");
        std::fs::create_dir_all(odd.join(CLICK_LOG_FILE_NAME)).expect("mkdir");
        let e = run_to(&odd, None, 10, &mut Vec::new()).expect_err("a directory in the log's place");
        let expected = format!("\"{}\" is a directory, not a click log: nothing to tail (check --data-dir)", odd.join(CLICK_LOG_FILE_NAME).display());
        assert_eq!(e.to_string(), expected);
    }
}
