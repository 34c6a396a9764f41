//! `sluice log tail`: prints click events from the embedded log as NDJSON, one object per
//! line: `{"event": {ClickEvent fields}, "offset": N}` (keys in that order).
//!
//! The log file is held exclusively by a running `sluice serve` with the same data
//! directory; stop it first (events survive restarts).

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use sluice_connectors::click_log::{CLICK_LOG_FILE_NAME, ClickLog};

/// Events read per batch.
const BATCH: usize = 1024;

/// Where to start: `from`, or `lines` events before the head.
pub fn start_offset(log: &ClickLog, from: Option<u64>, lines: u64) -> u64 {
    from.unwrap_or_else(|| log.head().saturating_sub(lines)).max(log.low())
}

/// Writes events `[from, head)` to `out`; returns the next offset.
///
/// Errors: a failed log read; a failed write ([`crate::stdout::write_error`]: a closed
/// output is [`crate::stdout::OutputClosed`]).
pub fn print_range(log: &ClickLog, mut from: u64, out: &mut impl Write) -> anyhow::Result<u64> {
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

/// Runs `sluice log tail` on the log in `data_dir`.
///
/// # Errors
/// When `data_dir` does not exist or holds no click log (nothing is created: a typo in
/// `--data-dir` must not leave an empty log behind), when the log is held by a running
/// server, or when reading or writing fails.
pub fn run(data_dir: &Path, from: Option<u64>, lines: u64) -> anyhow::Result<()> {
    if !data_dir.is_dir() {
        anyhow::bail!("no data directory \"{}\": nothing to tail (check --data-dir or [server] data-dir)", data_dir.display());
    }
    let file = data_dir.join(CLICK_LOG_FILE_NAME);
    if !file.is_file() {
        anyhow::bail!(
            "no click log in \"{}\" (expected \"{}\"): nothing to tail (check --data-dir; `sluice serve` creates the log)",
            data_dir.display(),
            file.display()
        );
    }
    let log = ClickLog::open(data_dir)
        .with_context(|| format!("could not open the click log in \"{}\" (is `sluice serve` running on it? stop it first)", data_dir.display()))?;
    let start = start_offset(&log, from, lines);
    print_range(&log, start, &mut std::io::stdout().lock())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_directory_or_log_is_an_error_and_nothing_is_created() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let missing = tmp.path().join("nope");
        let e = run(&missing, None, 10).expect_err("missing dir");
        assert!(e.to_string().starts_with("no data directory"), "{e}");
        assert!(!missing.exists(), "no directory created");

        let empty = tmp.path().join("empty");
        std::fs::create_dir(&empty).expect("mkdir");
        let e = run(&empty, None, 10).expect_err("no log");
        assert!(e.to_string().starts_with("no click log in"), "{e}");
        assert_eq!(std::fs::read_dir(&empty).expect("read dir").count(), 0, "no log file created");
    }
}
