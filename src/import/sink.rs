//! Where `sluice import` stores its events ([`Sink`]): the click log of `--data-dir`, or
//! `POST /v1/events` of a running server, in requests that fit the server's body limit (a
//! 413 splits a request in halves; an event too large alone is counted by line), retried
//! while no answer comes or the server answers 503, for at most `--retry-for` per request.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;
use sluice_connectors::click_log::{CLICK_LOG_FILE_NAME, ClickLog};
use sluice_ingest::event_input::{EventInput, Validation};
use sluice_schemas::VisitorSalt;
use url::Url;

use super::lateness::OfflineLateness;
use super::{ImportArgs, ImportReport};
use crate::config::Config;

/// Where an import's events go: a server's `POST /v1/events`, or a click log directly.
pub(super) enum Sink {
    Http {
        client: reqwest::Client,
        url: String,
        token: Option<String>,
        max_body_bytes: usize,
        /// How long one request is retried (`--retry-for`), from its first attempt.
        retry_for: Duration,
    },
    Log {
        log: ClickLog,
        salt: VisitorSalt,
        skew_ms: i64,
        lateness: OfflineLateness,
    },
}

/// The longest wait between two attempts of a request, whatever the server's `Retry-After`
/// asks for (30 s).
pub(super) const MAX_RETRY_WAIT: Duration = Duration::from_secs(30);

/// The shortest wait between two attempts (100 ms): a `Retry-After: 0` does not make a loop
/// of requests.
const MIN_RETRY_WAIT: Duration = Duration::from_millis(100);

/// The wait before attempt `attempt + 1` of a request when the server named none: 500 ms,
/// doubling per attempt, at most 5 s.
pub(super) fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(250u64.saturating_mul(1 << attempt.min(8))).min(Duration::from_secs(5))
}

/// The wait a 503's `Retry-After` asks for (delta-seconds; an HTTP date or garbage is
/// ignored), within [`MIN_RETRY_WAIT`]..=[`MAX_RETRY_WAIT`].
pub(super) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let secs: u64 = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs).clamp(MIN_RETRY_WAIT, MAX_RETRY_WAIT))
}

pub(super) fn now_ms() -> i64 {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Events on their way to the destination, with the input line of each.
#[derive(Default)]
pub(super) struct Batch {
    pub(super) events: Vec<EventInput>,
    pub(super) lines: Vec<u64>,
    /// Bytes of the JSON array of `events` as a request body (HTTP destination).
    pub(super) body_bytes: usize,
}

impl Batch {
    pub(super) fn len(&self) -> usize {
        self.events.len()
    }

    pub(super) fn push(&mut self, line: u64, event: EventInput, json_bytes: usize) {
        self.body_bytes += if self.events.is_empty() { json_bytes + 2 } else { json_bytes + 1 };
        self.events.push(event);
        self.lines.push(line);
    }
}

/// A batch (or the part of one) that could not be stored: its input lines, whether the
/// destination may have stored it anyway (a request sent without an answer back), and why.
#[derive(Debug)]
pub(super) struct SendFailed {
    pub(super) lines: (u64, u64),
    pub(super) events: usize,
    pub(super) maybe_stored: bool,
    pub(super) cause: anyhow::Error,
}

/// What one request to `POST /v1/events` came to.
enum Posted {
    /// Answered 200 (or 400 `all_events_rejected`): events stored, rejections by reason.
    Answered { accepted: u64, rejected: Vec<String> },
    /// 413: the body is larger than the server takes, or holds more events than it takes.
    TooLarge,
}

/// Bytes `event` takes as JSON.
pub(super) fn json_len(event: &EventInput) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    // Serializing strings and integers into a counter cannot fail.
    let _ = serde_json::to_writer(&mut c, event);
    c.0
}

/// What an answer other than 503 to a request of `sent` events came to: 200 (or 400
/// `all_events_rejected`): stored and rejected events; 413: [`Posted::TooLarge`]; anything
/// else: the refusal, worded to follow the URL ("refused the batch with …").
fn answered(status: reqwest::StatusCode, text: &str, sent: usize) -> Result<Posted, String> {
    let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let rejections = match (status.as_u16(), v["error"]["code"].as_str()) {
        (200, _) => &v["rejected"],
        (400, Some("all_events_rejected")) => &v["error"]["details"]["rejected"],
        (413, _) => return Ok(Posted::TooLarge),
        _ => return Err(format!("refused the batch with {status}: {text}")),
    };
    let rejected: Vec<String> = rejections.as_array().into_iter().flatten().map(|r| r["reason"].as_str().unwrap_or("unknown").to_owned()).collect();
    let accepted = v["accepted"].as_u64().unwrap_or(sent.saturating_sub(rejected.len()) as u64);
    Ok(Posted::Answered { accepted, rejected })
}

/// `e` with its whole chain of causes (`a: b: c`), as one line.
fn chain(e: impl Into<anyhow::Error>) -> String {
    format!("{:#}", e.into())
}

impl Sink {
    pub(super) fn describe(&self) -> String {
        match self {
            Sink::Http { url, .. } => url.clone(),
            Sink::Log { log, .. } => log.path().display().to_string(),
        }
    }

    /// The largest request body this destination takes (`None`: no limit).
    pub(super) fn max_body_bytes(&self) -> Option<usize> {
        match self {
            Sink::Http { max_body_bytes, .. } => Some(*max_body_bytes),
            Sink::Log { .. } => None,
        }
    }

    /// Stores `batch`, counting into `report` as answers come (stored events, rejections by
    /// reason, events too large for a request, the last line answered).
    pub(super) async fn send(&self, batch: Batch, backfill: bool, report: &mut ImportReport) -> Result<(), SendFailed> {
        let (first, last) = (batch.lines.first().copied().unwrap_or(0), batch.lines.last().copied().unwrap_or(0));
        match self {
            Sink::Log { log, salt, skew_ms, lateness } => {
                let ctx = Validation { salt, now_ms: now_ms(), max_future_skew_ms: *skew_ms };
                let mut events = Vec::with_capacity(batch.len());
                let mut rejected = Vec::new();
                for input in batch.events {
                    match input.into_click_event(&ctx) {
                        Ok(e) => events.push(e),
                        Err(r) => rejected.push(r.reason),
                    }
                }
                // What the dataflow would dead-letter `too_late` is refused, as the intake does.
                let too_late = lateness.retain(&mut events);
                let n = events.len() as u64;
                let log = log.clone();
                let appended = tokio::task::spawn_blocking(move || if backfill { log.append_backfill(&events) } else { log.append(&events) })
                    .await
                    .context("log append task failed")
                    .and_then(|r| r.context("could not append to the click log"));
                if let Err(cause) = appended {
                    return Err(SendFailed { lines: (first, last), events: n as usize, maybe_stored: false, cause });
                }
                for r in rejected {
                    *report.rejected.entry(r.to_owned()).or_default() += 1;
                }
                if too_late > 0 {
                    *report.rejected.entry("too_late".into()).or_default() += too_late;
                }
                report.accepted += n;
                report.answered_through_line = last;
                Ok(())
            }
            Sink::Http { .. } => {
                // A 413 splits the part it was for in two, each sent on its own; an event
                // that gets 413 alone is refused with its line, and the rest goes on.
                let mut parts: Vec<std::ops::Range<usize>> = Vec::with_capacity(8);
                parts.push(0..batch.len());
                while let Some(part) = parts.pop() {
                    let events = &batch.events[part.clone()];
                    let lines = (batch.lines[part.start], batch.lines[part.end - 1]);
                    match self.post(events, backfill).await {
                        Ok(Posted::Answered { accepted, rejected }) => {
                            report.accepted += accepted;
                            for r in rejected {
                                *report.rejected.entry(r).or_default() += 1;
                            }
                        }
                        Ok(Posted::TooLarge) if part.len() > 1 => {
                            let mid = part.start + part.len() / 2;
                            parts.push(mid..part.end);
                            parts.push(part.start..mid);
                            continue;
                        }
                        Ok(Posted::TooLarge) => {
                            *report.rejected.entry("payload_too_large".into()).or_default() += 1;
                            report.too_large.push((lines.0, json_len(&events[0])));
                        }
                        Err((maybe_stored, cause)) => return Err(SendFailed { lines, events: events.len(), maybe_stored, cause }),
                    }
                    report.answered_through_line = lines.1;
                }
                Ok(())
            }
        }
    }

    /// One `POST /v1/events` of `events` (HTTP destination), retried when no answer comes
    /// (a refused connection, a reset, a timeout) or the server answers 503 (`starting`
    /// while it applies its start-up work, `store_unavailable`, `log_unavailable`: nothing
    /// was stored), as long as the next attempt starts within `retry_for` of the first: after
    /// the wait its `Retry-After` asks for (seconds, at most [`MAX_RETRY_WAIT`]), else
    /// [`backoff`]. A wait that would end past that deadline is not waited: the request gives
    /// up at once. An attempt under way is never cut short (the client's 60 s timeout bounds
    /// it). Any other answer ends the request as before (413: [`Posted::TooLarge`]; other
    /// statuses: refused).
    ///
    /// Errors with whether the server may have stored the events and why. May have: an
    /// attempt was sent and no answer came, whatever later attempts got (a 503 says that
    /// attempt stored nothing, not an earlier one). Resending is safe either way: the same
    /// events keep their `event_id`s, which the dataflow deduplicates, and an answer counts
    /// its events once however many attempts it took.
    async fn post(&self, events: &[EventInput], backfill: bool) -> Result<Posted, (bool, anyhow::Error)> {
        let Sink::Http { client, url, token, retry_for, .. } = self else {
            return Err((false, anyhow::anyhow!("not an HTTP destination")));
        };
        let url = if backfill { format!("{url}?backfill=true") } else { url.clone() };
        let body = serde_json::to_vec(events).map_err(|e| (false, anyhow::Error::new(e).context("could not encode the events")))?;
        // `None`: a --retry-for too long for the clock (1000 years, say) never passes.
        let deadline = Instant::now().checked_add(*retry_for);
        let mut maybe_stored = false;
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let mut req = client.post(&url).header("content-type", "application/json").body(body.clone());
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let (wait, failure) = match req.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    let asked = retry_after(resp.headers());
                    let text = resp.text().await.unwrap_or_default();
                    if status == reqwest::StatusCode::SERVICE_UNAVAILABLE {
                        // Nothing was stored (the server says so), but an earlier attempt
                        // without an answer may have been.
                        (asked.unwrap_or_else(|| backoff(attempt)), format!("the last answered {status}: {text}"))
                    } else {
                        return answered(status, &text, events.len()).map_err(|cause| (maybe_stored, anyhow::anyhow!("{url} {cause}")));
                    }
                }
                Err(e) => {
                    // A request that could not connect never reached the server.
                    maybe_stored |= !e.is_connect();
                    (backoff(attempt), format!("the last failed: {}", chain(e)))
                }
            };
            if deadline.is_some_and(|d| Instant::now() + wait > d) {
                let tries = if attempt == 1 { "1 attempt".to_owned() } else { format!("{attempt} attempts") };
                let within = humantime::format_duration(*retry_for);
                return Err((maybe_stored, anyhow::anyhow!("could not send events to {url} ({tries}, retried for at most --retry-for {within}); {failure}")));
            }
            tracing::info!(url = %url, attempt, wait_ms = wait.as_millis() as u64, last = %failure, "events request not answered or 503: retrying");
            tokio::time::sleep(wait).await;
        }
    }
}

/// The destination of `args`: the click log of `--data-dir` (its visitor secret loaded, or
/// created in a data dir without a log, first), or the `POST /v1/events` of `--target` (default: the configuration's
/// listen address). Errors: a `--target` that is not `http://` is a usage error
/// ([`crate::bench::BenchError::Usage`], exit 2); opening the data dir or its log; a data
/// dir that holds a click log but neither a visitor secret file nor a configured one.
pub(super) fn open_sink(args: &ImportArgs, cfg: &Config) -> anyhow::Result<Sink> {
    if let Some(dir) = &args.data_dir {
        // A data dir whose click log is gone while its checkpoints remain is refused before
        // anything is created in it, as `sluice serve` refuses it (`sluice log reset`).
        let checkpoints_on = !cfg.dataflow.checkpoint_interval.is_zero() && cfg.dataflow.processes == 1 && !cfg.kafka.enabled();
        if checkpoints_on && !dir.join(CLICK_LOG_FILE_NAME).exists() {
            crate::job::checkpoint::refuse_without_log(&crate::job::checkpoint::dir_of(dir), cfg.dataflow.partition())?;
        }
        crate::config::create_data_dir(dir)?;
        // A data dir that holds clicks but no secret is refused before anything in it is
        // opened or created (attack of session 51: an import refused because a server with a
        // configured secret held the dir left a generated secret behind, which a later import
        // then used; a refused open also rewrote clicks.redb). Past this check the secret
        // is only created in a data dir without a click log, and before the log: a secret
        // generated after it would look like a lost one ("data dir already holds data").
        let had_log = dir.join(CLICK_LOG_FILE_NAME).exists();
        let configured = cfg.visitor.secret.as_ref().map(|s| s.0.as_str());
        if had_log && configured.is_none() && !dir.join(crate::visitor_secret::FILE_NAME).exists() {
            bail!(
                "\"{}\" holds a click log but no {} file, and no [visitor] secret is configured: the server that writes this data dir keys \
                 visitor ids with its [visitor] secret, so import with its configuration (--config, or SLUICE__VISITOR__SECRET); a new secret \
                 would count its returning visitors as new uniques",
                dir.display(),
                crate::visitor_secret::FILE_NAME
            );
        }
        let secret = crate::visitor_secret::load_or_create_after(configured, dir, had_log)?;
        let log = ClickLog::open(dir).map_err(|e| crate::log_open::open_error(dir, e, "then import with --target"))?;
        let salt = VisitorSalt::new(secret, cfg.visitor.salt_period.period_ms());
        let skew_ms = cfg.intake_future_skew_ms();
        let lateness = OfflineLateness::open(cfg, dir, &log, !args.no_backfill)?;
        return Ok(Sink::Log { log, salt, skew_ms, lateness });
    }
    let base = match &args.target {
        Some(u) => u.clone(),
        None => Url::parse(&format!("http://{}", cfg.server.listen)).context("server.listen is not a usable address")?,
    };
    if base.scheme() != "http" {
        // A refused flag value: a usage error (exit 2), as `loadgen --target ftp://x`.
        let msg = format!("--target must be an http:// URL (this build has no TLS client), got {base}");
        return Err(crate::bench::BenchError::Usage(msg).into());
    }
    let client = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().context("could not build the HTTP client")?;
    let url = format!("{}/v1/events", base.as_str().trim_end_matches('/'));
    let token = args.ingest_token.clone().or_else(|| cfg.ingest.token.as_ref().map(|t| t.0.clone()));
    Ok(Sink::Http { client, url, token, max_body_bytes: cfg.ingest.max_body_bytes, retry_for: args.retry_for })
}
