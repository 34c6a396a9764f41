//! `sluice log tail`: prints click events from the embedded log as NDJSON, one object per
//! line: `{"offset": N, "event": {ClickEvent fields}}`.
//!
//! The log file is held exclusively by a running `sluice serve` with the same data
//! directory; stop it first (events survive restarts).

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use sluice_connectors::click_log::ClickLog;

/// Events read per batch.
const BATCH: usize = 1024;

/// Where to start: `from`, or `lines` events before the head.
pub fn start_offset(log: &ClickLog, from: Option<u64>, lines: u64) -> u64 {
    from.unwrap_or_else(|| log.head().saturating_sub(lines)).max(log.low())
}

/// Writes events `[from, head)` to `out`; returns the next offset.
pub fn print_range(log: &ClickLog, mut from: u64, out: &mut impl Write) -> anyhow::Result<u64> {
    loop {
        let batch = log.read(from, BATCH).context("could not read the click log")?;
        let Some((last, _)) = batch.last() else { return Ok(from) };
        let next = last + 1;
        for (offset, event) in &batch {
            serde_json::to_writer(&mut *out, &serde_json::json!({ "offset": offset, "event": event }))?;
            out.write_all(b"\n")?;
        }
        out.flush()?;
        from = next;
    }
}

/// Runs `sluice log tail` on the log in `data_dir`.
pub fn run(data_dir: &Path, from: Option<u64>, lines: u64) -> anyhow::Result<()> {
    let log = ClickLog::open(data_dir)
        .with_context(|| format!("could not open the click log in \"{}\" (is `sluice serve` running on it? stop it first)", data_dir.display()))?;
    let start = start_offset(&log, from, lines);
    print_range(&log, start, &mut std::io::stdout().lock())?;
    Ok(())
}
