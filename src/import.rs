//! `sluice import FILE`: backfills click history from an NDJSON event file or a web-server
//! access log in combined log format (parsers: `sluice_ingest::import`).
//!
//! Where events go:
//! - default (`--target URL`, or `http://<server.listen>` of the configuration): batches of
//!   `--batch-size` events to `POST /v1/events?backfill=true` of the running server, which
//!   validates them, derives visitor ids with its own secret and makes them durable;
//! - `--data-dir DIR`: straight into the click log in `DIR`, validated here with the visitor
//!   secret and salt period of that data directory and configuration — for when no server
//!   runs (the log file is held exclusively by a running `sluice serve`; stop it first).
//!
//! Either way the events are marked backfill (bypass the lateness limit, not dedup; see
//! `sluice_connectors::click_log`) unless `--no-backfill` is given, and the same line
//! always yields the same event, so importing a file twice adds nothing after dedup.
//! Requests that get no answer or a 503 (a server still starting, say) are retried for up to
//! `--retry-for` (60 s), as its `Retry-After` asks (safe because of dedup). Lines that are not
//! clicks are counted by reason and reported.
//!
//! Request size: text members longer than the server keeps are cut here the way it cuts them
//! (same event, visitor id included), requests stay within `[ingest] max-body-bytes`, a
//! 413 splits a request in halves, and an event too large for a request alone is reported
//! by line while the rest is stored (see [`run`]). An import that stops on an error says
//! how far it got and why (see [`run`]).

mod lateness;
mod sink;
#[cfg(test)]
mod tests;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use sluice_connectors::redb_open::OpenFailure;
use sluice_ingest::event_input::{MAX_EVENTS_PER_REQUEST, Rejection};
use sluice_ingest::import::{ImportFormat, ImportTally, LineOutcome, LineParser};
use url::Url;

use self::sink::{Batch, SendFailed, Sink, json_len, open_sink};
use crate::config::{Config, FlagOverrides};
use crate::job::start_cleanup::Before;

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// One event object per line (`{event_id, code, ts, ip | ip_trunc, user_agent, referrer}`).
    Ndjson,
    /// nginx/Apache combined (or common) log format.
    Combined,
}

/// `sluice import`.
#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    /// File to import ("-" reads standard input).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Input format (default: ndjson for *.ndjson, *.jsonl, *.json; combined otherwise).
    #[arg(long, value_enum)]
    pub format: Option<FormatArg>,
    /// Server to send to (default: http://<server.listen> of the configuration).
    #[arg(long, value_name = "URL", conflicts_with = "data_dir")]
    pub target: Option<Url>,
    /// Append to the click log in DIR instead (no server may be running on DIR).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Configuration file (listen address and ingest token; visitor secret and salt period for --data-dir).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Bearer token for POST /v1/events (default: [ingest] token of the configuration).
    #[arg(long, env = "SLUICE_INGEST_TOKEN", value_name = "T", hide_env_values = true)]
    pub ingest_token: Option<String>,
    /// Access logs: codes are the path segment after this prefix ("/" or e.g. "/s/"; "s" and
    /// "/s" are read as "/s/"). No click under it at all is an error (exit 1).
    #[arg(long, default_value = "/", value_name = "PREFIX")]
    pub path_prefix: String,
    /// How long one request to the server is retried, e.g. 60s, 5m, 0s (never): while no
    /// answer comes (connection refused, reset, timeout) or the server answers 503 (starting,
    /// store or log unavailable; nothing stored), waiting as its Retry-After asks (at most
    /// 30s) or 0.5s doubling to 5s. When the next attempt would start later than this after
    /// the first, the import stops (exit 1). At most 1day.
    #[arg(long, default_value = "60s", value_parser = crate::cli::parse_retry_for, value_name = "D", conflicts_with = "data_dir")]
    pub retry_for: Duration,
    /// Events per request or log append (1..=10000; another value is a usage error, exit 2).
    #[arg(long, default_value_t = 5000, value_name = "N",
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=MAX_EVENTS_PER_REQUEST as u64))]
    pub batch_size: usize,
    /// Import as live events (subject to the lateness limit) instead of backfill.
    #[arg(long)]
    pub no_backfill: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Where the events went (`http://...` or the log file path).
    pub destination: String,
    /// Parser counts (lines, events, skipped and invalid lines by reason).
    pub tally: ImportTally,
    /// Events stored.
    pub accepted: u64,
    /// Events refused by validation, by reason; `payload_too_large` for events larger than
    /// one request may be (see [`Self::too_large`]).
    pub rejected: std::collections::BTreeMap<String, u64>,
    /// Events not stored because one alone is larger than a request to the server may be
    /// (`[ingest] max-body-bytes` of the configuration, or a server that answered 413 to it
    /// alone): input line and size in bytes (as JSON, text members already cut to
    /// [`sluice_ingest::event_input::MAX_FIELD_BYTES`]) of each. Counted in `rejected` as `payload_too_large`.
    pub too_large: Vec<(u64, usize)>,
    /// Every event of the input lines up to this one was answered by the destination
    /// (stored, or rejected and counted); 0 before the first answer.
    pub answered_through_line: u64,
    /// Wall time of the import.
    pub elapsed: Duration,
    /// With `--data-dir`, when no event was stored (so the files the import created there were
    /// removed again): what became of the dir, `"D" not created` or `"D" left as it was`; the
    /// summary then names no file.
    pub nothing_stored: Option<String>,
}

impl ImportReport {
    /// Stored events per second.
    pub fn events_per_second(&self) -> f64 {
        self.accepted as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

fn open_input(path: &Path) -> anyhow::Result<(Box<dyn Read + Send>, Option<u64>)> {
    if path.as_os_str() == "-" {
        return Ok((Box::new(std::io::stdin()), None));
    }
    let f = std::fs::File::open(path).with_context(|| format!("could not open \"{}\"", path.display()))?;
    let meta = f.metadata().ok();
    // A directory opens on Unix; only its first read fails (EISDIR).
    if meta.as_ref().is_some_and(std::fs::Metadata::is_dir) {
        bail!("could not read \"{}\": it is a directory; expected an NDJSON file or an access log (or - for standard input)", path.display());
    }
    Ok((Box::new(f), meta.map(|m| m.len())))
}

/// Runs the import (see the module docs).
///
/// Events go in batches of at most `--batch-size` events and, to a server, of at most
/// `[ingest] max-body-bytes` (of the configuration; 32 MiB by default) per request; text
/// members are cut to [`sluice_ingest::event_input::MAX_FIELD_BYTES`] first, as the server cuts them. A server that
/// answers 413 to a request (a lower limit than the configuration's) gets its events again
/// in halves; an event too large for a request alone is not sent, or refused with 413 alone:
/// it is counted in the report by line ([`ImportReport::too_large`]), and the others are
/// stored.
///
/// Errors: a `--data-dir` that is a file (a usage error, exit 2, before anything is read:
/// [`crate::config::refuse_non_directory`]; so is a `[server] data-dir` of the
/// configuration that is a file, whichever the destination), an input that cannot be opened or read at all (missing, a directory, no read
/// permission: the error names the path and why, nothing else, since nothing was sent),
/// an unreadable configuration, a click log held by a running server, unreadable
/// checkpoints or click log of `--data-dir` (their newest event time decides which events
/// are too late, `lateness.rs`), a server refusing a whole batch (authentication), or a
/// server unreachable after retries. An error after the first line names how many events were stored and rejected before,
/// the lines of the failed request and whether they may have been stored, the cause with
/// its chain (e.g. "Connection refused"), and that running the same import again is safe
/// (same `event_id`s, dropped by dedup). Lines that are not clicks and events refused by
/// validation are not errors: they are counted in the report.
///
/// With `--data-dir DIR`: an import that stores no event (it failed, the outcome
/// [`import_outcome`] refuses, or the input holds no event at all: an empty file) removes
/// the visitor secret and the empty click log it created in DIR, and DIR itself (with the
/// missing parents it created) when it did not exist before, so that a mistyped file or
/// format, or an empty input, leaves nothing behind.
pub async fn run(args: &ImportArgs) -> anyhow::Result<ImportReport> {
    run_with_env(args, &|k| std::env::var(k).ok()).await
}

/// [`run`] with `env` read for the conventional `KAFKA_BROKERS` / `SCHEMA_REGISTRY_URL` in
/// place of the process environment (tests run beside a broker those variables name).
///
/// Errors: as [`run`].
pub(crate) async fn run_with_env(args: &ImportArgs, env: &(dyn Fn(&str) -> Option<String> + Sync)) -> anyhow::Result<ImportReport> {
    if !(1..=MAX_EVENTS_PER_REQUEST).contains(&args.batch_size) {
        bail!("--batch-size must be between 1 and {MAX_EVENTS_PER_REQUEST}, got {}", args.batch_size);
    }
    if let Some(dir) = &args.data_dir {
        crate::config::refuse_non_directory(dir)?;
    }
    let started = Instant::now();
    let format = match args.format {
        Some(FormatArg::Ndjson) => ImportFormat::Ndjson,
        Some(FormatArg::Combined) => ImportFormat::Combined,
        None => ImportFormat::guess(&args.file.to_string_lossy()),
    };
    let flags = FlagOverrides { data_dir: args.data_dir.clone(), ..FlagOverrides::default() };
    let mut cfg = Config::load(args.config.as_deref(), &flags)?;
    // The data dir of the configuration too, as every command refuses it (a usage error,
    // exit 2): a file there is a broken configuration, and the server the import would
    // send to cannot have started on it (finding: the import went on and tried the server).
    crate::config::refuse_non_directory(&cfg.server.data_dir)?;
    // Kafka mode as `sluice serve` sees it, `KAFKA_BROKERS` included (attack of session 52:
    // with only that set, the import stored into a log the server never reads).
    cfg.kafka.apply_env(env);
    if let Some(dir) = &args.data_dir
        && cfg.kafka.enabled()
    {
        // Attack of session 49: the events went to the embedded log, which a Kafka-mode
        // server never reads, and the import said it stored them.
        return Err(crate::bench::usage_error(format!(
            "this configuration reads clicks from Kafka ([kafka] brokers); `--data-dir {}` would store the events in the embedded click log, which a Kafka-mode server does not read: import through the server instead (`--target http://<listen address>`), which writes them to the click topic",
            dir.display()
        )));
    }
    // Looked at before anything is created: an import that stores nothing leaves nothing
    // behind that it made in the data dir (see `import_into`).
    let before = args.data_dir.as_deref().map(Before::look);
    let mut report = ImportReport::default();
    import_into(args, &cfg, format, &mut report, before.as_ref()).await?;
    report.elapsed = started.elapsed();
    Ok(report)
}

/// [`run`] after the configuration is loaded: opens the destination and stores the file's
/// events ([`store_events`]), counting into `report` (so that what was stored is known when
/// it fails).
///
/// With `--data-dir` (`before`: its entries before the import), an import that stored no
/// event, whether it failed or not, removes what it added there ([`Before::remove_added`],
/// as a refused `sluice serve` start does): while it still holds the click log's lock, so
/// no other process uses the dir meanwhile; or, when opening the destination failed, only
/// if the data dir did not exist before and the click log is not held by another process
/// (attack of session 52: of two imports into one new data dir, the refused one removed the
/// log and secret the other had just stored its events with).
async fn import_into(args: &ImportArgs, cfg: &Config, format: ImportFormat, report: &mut ImportReport, before: Option<&Before>) -> anyhow::Result<()> {
    // The input first: a file that cannot be opened creates nothing.
    let (input, len) = open_input(&args.file)?;
    let sink = match open_sink(args, cfg) {
        Ok(sink) => sink,
        Err(e) => {
            let held = e.downcast_ref::<sluice_connectors::Error>().is_some_and(|c| c.open_failure() == OpenFailure::HeldByAnotherProcess);
            if let Some(before) = before.filter(|b| !b.existed() && !held) {
                before.remove_added();
            }
            return Err(e);
        }
    };
    let result = store_events(args, cfg, format, report, &sink, input, len).await;
    if report.accepted == 0
        && let Some(before) = before
        && let Some(dir) = &args.data_dir
    {
        before.remove_added();
        let fate = match (before.existed(), dir.exists()) {
            (true, _) => "left as it was",
            (false, false) => "not created",
            (false, true) => "created but left without clicks", // a file someone else put there meanwhile
        };
        report.nothing_stored = Some(format!("\"{}\" {fate}", dir.display()));
    }
    drop(sink);
    result
}

/// Reads `input` (`len` bytes, when known) line by line and stores its events in `sink`,
/// counting into `report`.
async fn store_events(
    args: &ImportArgs,
    cfg: &Config,
    format: ImportFormat,
    report: &mut ImportReport,
    sink: &Sink,
    input: Box<dyn Read + Send>,
    len: Option<u64>,
) -> anyhow::Result<()> {
    let pb = match (args.quiet, len) {
        (true, _) => ProgressBar::hidden(),
        (false, Some(n)) => ProgressBar::new(n),
        (false, None) => ProgressBar::new_spinner(),
    };
    pb.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:40.cyan/blue} {bytes}/{total_bytes} ({bytes_per_sec}) {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let parser = LineParser::new(format, &args.path_prefix);
    let backfill = !args.no_backfill;
    report.destination = sink.describe();
    let mut reader = BufReader::with_capacity(1 << 20, input);
    let mut buf = Vec::with_capacity(4096);
    let mut batch = Batch::default();
    let mut line_no: u64 = 0;
    // Whether a non-blank line was read (NDJSON: the first one must not open a JSON array).
    let mut seen_content = false;
    let dedup_window = cfg.dataflow.dedup_horizon.max(cfg.dataflow.allowed_lateness);
    let stopped = |report: &ImportReport, failed: SendFailed| stopped_error(report, &failed, dedup_window);
    loop {
        buf.clear();
        let n = match reader.read_until(b'\n', &mut buf) {
            Ok(n) => n,
            Err(e) if line_no == 0 => {
                // Not one line could be read: nothing was sent, there is nothing to resume.
                return Err(anyhow::Error::new(e).context(format!("could not read \"{}\"", args.file.display())));
            }
            Err(e) => {
                let cause = anyhow::Error::new(e).context(format!("could not read \"{}\"", args.file.display()));
                let (first, last) = (batch.lines.first().copied().unwrap_or(line_no + 1), batch.lines.last().copied().unwrap_or(line_no));
                return Err(stopped(report, SendFailed { lines: (first, last), events: batch.len(), maybe_stored: false, cause }));
            }
        };
        if n == 0 {
            break;
        }
        pb.inc(n as u64);
        line_no += 1;
        let raw = buf.strip_suffix(b"\n").unwrap_or(&buf);
        let text = match std::str::from_utf8(raw) {
            Ok(t) => std::borrow::Cow::Borrowed(t),
            // JSON is UTF-8 (RFC 8259 §8.1), and POST /v1/events answers 400 invalid_utf8: an
            // invalid line, never an event with U+FFFD in place of the bytes.
            Err(e) if format == ImportFormat::Ndjson => {
                seen_content = true;
                let reason = Rejection::new("invalid_utf8", format!("line {line_no} is not utf-8 (byte {} of the line)", e.valid_up_to()));
                report.tally.count(LineOutcome::Invalid(reason));
                continue;
            }
            // Access logs: a non-UTF-8 byte (rare: nginx and Apache escape them) becomes U+FFFD.
            Err(_) => String::from_utf8_lossy(raw),
        };
        if format == ImportFormat::Ndjson && !seen_content {
            let content = text.trim_start_matches('\u{feff}').trim_start();
            seen_content = !content.is_empty();
            if content.starts_with('[') {
                // The body shape of `POST /v1/events`: refused whole, before anything is
                // sent, rather than counted as malformed lines around one parsed event.
                bail!(
                    "\"{}\" holds a JSON array (line {line_no} starts with '['), the body shape of POST /v1/events; `sluice import` reads NDJSON, \
                     one event object per line: convert it first, e.g. `jq -c '.[]' {} > events.ndjson`, and import that",
                    args.file.display(),
                    args.file.display()
                );
            }
        }
        if let Some(mut event) = report.tally.count(parser.parse(line_no, &text)) {
            // The server cuts these members to MAX_FIELD_BYTES before it reads them: cut here,
            // the event is the same, and one huge header no longer makes a request too large.
            event.cut_text_fields();
            match sink.max_body_bytes() {
                Some(max) => {
                    let bytes = json_len(&event);
                    if bytes + 2 > max {
                        // Larger than any request may be even alone (a huge event_id, code or
                        // IP, which the server would refuse anyway): refused here, by line.
                        *report.rejected.entry("payload_too_large".into()).or_default() += 1;
                        report.too_large.push((line_no, bytes));
                        continue;
                    }
                    if !batch.events.is_empty() && batch.body_bytes + 1 + bytes > max {
                        sink.send(std::mem::take(&mut batch), backfill, report).await.map_err(|f| stopped(report, f))?;
                    }
                    batch.push(line_no, event, bytes);
                }
                None => batch.push(line_no, event, 0),
            }
        }
        if batch.len() == args.batch_size {
            sink.send(std::mem::take(&mut batch), backfill, report).await.map_err(|f| stopped(report, f))?;
            pb.set_message(format!("{} events stored", report.accepted));
        }
    }
    if !batch.events.is_empty() {
        sink.send(batch, backfill, report).await.map_err(|f| stopped(report, f))?;
    }
    pb.finish_and_clear();
    Ok(())
}

/// The error of an import that stopped at `failed`: how many events were stored (and
/// rejected) before, up to which line everything was answered, whether the events of the
/// failed request were stored, the cause with its chain, and that running the same import
/// again is safe: the same input yields the same `event_id`s, and the dataflow drops the
/// copies of events already stored while they are within its dedup window (`dedup_window`:
/// `max(dedup-horizon, allowed-lateness)`, 48 h by default; docs/events-import-loadgen.md,
/// "Duplicates").
fn stopped_error(report: &ImportReport, failed: &SendFailed, dedup_window: Duration) -> anyhow::Error {
    let rejected: u64 = report.rejected.values().sum();
    let before = if report.accepted == 0 && rejected == 0 {
        "import stopped before any event was stored".to_owned()
    } else {
        format!(
            "import stopped after {} events were stored and {rejected} rejected, every line up to {} answered",
            report.accepted, report.answered_through_line
        )
    };
    let (first, last) = failed.lines;
    let lines = if first == last { format!("line {first}") } else { format!("lines {first}-{last}") };
    let what = match (failed.events, failed.maybe_stored) {
        (0, _) => format!("nothing after line {} was sent", report.answered_through_line.max(first.saturating_sub(1))),
        (1, false) => format!("the event of {lines} was not stored, and nothing after it was sent"),
        (n, false) => format!("the {n} events of {lines} were not stored, and nothing after them was sent"),
        (1, true) => format!("the event of {lines} may have been stored (it was sent but no answer came), nothing after it was sent"),
        (n, true) => format!("the {n} events of {lines} may have been stored (they were sent but no answer came), nothing after them was sent"),
    };
    let hours = dedup_window.as_secs() / 3600;
    let window = if dedup_window.as_secs().is_multiple_of(3600) { format!("{hours} h") } else { humantime::format_duration(dedup_window).to_string() };
    anyhow::anyhow!(
        "{before}; {what}: {:#}. Running the same import again is safe (within {window}): its events keep their event_ids, and the \
         dataflow drops the copies of those already stored (dedup by event_id)",
        failed.cause
    )
}

/// `sluice import` on the command line: [`run`], then a summary on stdout.
pub async fn run_cli(args: &ImportArgs) -> anyhow::Result<()> {
    let r = run(args).await?;
    let t = &r.tally;
    // An import into a data dir that stored nothing removed what it created: name no file.
    let into = match &r.nothing_stored {
        Some(_) => String::new(),
        None => format!(" into {}{}", r.destination, if args.no_backfill { "" } else { " (backfill)" }),
    };
    let mut text = format!(
        "imported \"{}\"{into}: {} lines, {} events parsed, {} stored, {} rejected in {:.2}s ({:.0} events/s){}\n",
        args.file.display(),
        t.lines,
        t.events,
        r.accepted,
        r.rejected.values().sum::<u64>(),
        r.elapsed.as_secs_f64(),
        r.events_per_second(),
        r.nothing_stored.as_ref().map_or(String::new(), |fate| format!("; nothing stored, {fate}"))
    );
    let list = |m: &mut dyn Iterator<Item = (String, u64)>| m.map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ");
    if !t.skipped.is_empty() {
        text += &format!("skipped lines: {}\n", list(&mut t.skipped.iter().map(|(k, v)| ((*k).to_owned(), *v))));
    }
    if !t.invalid.is_empty() {
        text += &format!("invalid lines: {}\n", list(&mut t.invalid.iter().map(|(k, v)| ((*k).to_owned(), *v))));
    }
    if !r.rejected.is_empty() {
        text += &format!("rejected events: {}\n", list(&mut r.rejected.iter().map(|(k, v)| (k.clone(), *v))));
    }
    if !r.too_large.is_empty() {
        text += &format!("{}\n", too_large_summary(&r.too_large));
    }
    // A closed output (`| head -1`) loses only the rest of the summary: the exit status
    // still says whether events were rejected.
    if let Err(e) = std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes()).map_err(crate::stdout::write_error)
        && !crate::stdout::is_closed(&e)
    {
        return Err(e);
    }
    import_outcome(&r, &args.path_prefix)
}

/// Most lines [`too_large_summary`] names.
const TOO_LARGE_LINES_SHOWN: usize = 10;

/// The summary line of the events refused as too large for one request: how many, and the
/// first [`TOO_LARGE_LINES_SHOWN`] lines with their sizes.
fn too_large_summary(too_large: &[(u64, usize)]) -> String {
    let shown: Vec<String> = too_large.iter().take(TOO_LARGE_LINES_SHOWN).map(|(line, bytes)| format!("line {line} ({bytes} bytes)")).collect();
    let more = too_large.len().saturating_sub(TOO_LARGE_LINES_SHOWN);
    let more = if more > 0 { format!(" and {more} more") } else { String::new() };
    format!("events larger than a request to the server may be, not sent or refused with 413 (the other events were sent): {}{more}", shown.join(", "))
}

/// The exit status of `sluice import`: an error (non-zero exit) when the input has
/// non-blank lines but not one of them could be read (each is a malformed access-log line
/// or not JSON: the wrong `--format`, or not a log at all; or JSON but not an event object,
/// e.g. a JSON array of events on one line), or when any parsed event was
/// rejected (the stored ones stay stored; the summary above lists the reasons), or when no
/// line was a click and some were redirects or requests outside `path_prefix` (the
/// `--path-prefix` given, read with a leading and trailing `/`), or when any NDJSON line
/// was not a valid event (`missing_field`, `invalid_field`, ...; the valid ones stay
/// stored), so scripts notice a partial or failed import.
pub fn import_outcome(r: &ImportReport, path_prefix: &str) -> anyhow::Result<()> {
    let t = &r.tally;
    let content = t.lines - t.skipped.get("blank").copied().unwrap_or(0);
    let unreadable = t.skipped.get("malformed").copied().unwrap_or(0) + t.invalid.get("malformed_json").copied().unwrap_or(0);
    let not_objects = t.invalid.get("not_an_object").copied().unwrap_or(0);
    if content > 0 && unreadable == content {
        anyhow::bail!(
            "none of the {content} non-blank lines could be read (each is malformed), nothing was imported: is the file in the format given or guessed (--format ndjson|combined)?"
        )
    }
    if content > 0 && not_objects > 0 && unreadable + not_objects == content {
        let malformed = if unreadable > 0 { format!(", {unreadable} malformed") } else { String::new() };
        anyhow::bail!(
            "none of the {content} non-blank lines is an event ({not_objects} are JSON but not an object{malformed}), nothing was imported: \
             NDJSON takes one event object per line (`jq -c '.[]' FILE` turns a JSON array, such as a POST /v1/events body, into that)"
        )
    }
    let outside = t.skipped.get("not_code_path").copied().unwrap_or(0);
    if t.events == 0 && outside > 0 {
        let prefix = sluice_ingest::import::normalize_path_prefix(path_prefix);
        anyhow::bail!(
            "no line is a click on a short link under the path prefix \"{prefix}\" ({outside} of {content} non-blank lines have another path), nothing was imported: \
             is --path-prefix right (\"/\" when codes sit at the root, \"/s/\" for https://host/s/CODE)?"
        )
    }
    let invalid: u64 = t.invalid.values().sum();
    if t.events == 0 && invalid > 0 {
        let reasons: Vec<String> = t.invalid.iter().map(|(k, v)| format!("{k} {v}")).collect();
        anyhow::bail!(
            "none of the {content} non-blank lines is a valid event (invalid lines: {}), nothing was imported: see the event fields in `sluice import --help`",
            reasons.join(", ")
        )
    }
    let rejected: u64 = r.rejected.values().sum();
    let refused = if rejected == 0 { None } else { Some(format!("{rejected} of {} events were rejected ({} stored)", t.events, r.accepted)) };
    if invalid > 0 {
        // An NDJSON line that is no valid event is an event the user meant to import and
        // that was not stored: as much a failure as a rejected one.
        let reasons: Vec<String> = t.invalid.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let stored = if r.accepted == 1 { "1 event".to_owned() } else { format!("{} events", r.accepted) };
        let tail = refused.map_or_else(|| format!("{stored} stored"), |refused| format!("and {refused}"));
        anyhow::bail!("{invalid} of the {content} non-blank lines are not valid events ({}), not imported; {tail}", reasons.join(", "))
    }
    match refused {
        None => Ok(()),
        Some(refused) => anyhow::bail!("{refused}"),
    }
}
