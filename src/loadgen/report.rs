//! What a run reports: the ground truth, what was sent and answered, and whether the truth
//! is exact.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use super::truth::GroundTruth;

/// Redirect requests of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestStats {
    /// Requests the schedule called for (`rate × duration`).
    pub planned: u64,
    /// Requests sent.
    pub sent: u64,
    /// Requests answered (any status).
    pub answered: u64,
    /// Answers by status code.
    pub statuses: BTreeMap<u16, u64>,
    /// `HEAD` requests sent.
    pub heads: u64,
    /// Requests without an answer, by failure kind (`connect`, `timeout`, `other`).
    pub failures: BTreeMap<&'static str, u64>,
    /// `GET`s whose outcome is unknown (sent, no answer): the server may have counted them.
    pub unknown_gets: u64,
    /// `GET`s answered 3xx that straddled a salt-period boundary (their visitor period is
    /// uncertain).
    pub straddling: u64,
    /// Time sending was paused around salt-period boundaries.
    pub paused: Duration,
}

/// Events posted to `POST /v1/events`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InjectStats {
    /// Requests (batches) posted.
    pub batches: u64,
    /// Late events posted (first copies).
    pub late_events: u64,
    /// Exact duplicates posted (copies of earlier events, same `event_id`).
    pub duplicates: u64,
    /// Events the server accepted (copies included).
    pub accepted: u64,
    /// Events the server refused, by reason.
    pub rejected: BTreeMap<String, u64>,
    /// Events of batches the server refused as a whole (status and body of the last one).
    pub refused: u64,
    /// Last whole-batch refusal.
    pub last_refusal: Option<String>,
    /// Events of batches that never got an answer (stored or not: unknown).
    pub unknown: u64,
}

/// The attack of a run (`--attack`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttackReport {
    /// Its shape.
    pub kind: super::attack::AttackKind,
    /// The attacked link.
    pub code: String,
    /// Attack requests sent (all `GET`s, counted in the truth like any click).
    pub requests: u64,
    /// Wall clock of the first attack request, ms since the epoch (UTC); `None` if none was sent.
    pub started_at_ms: Option<i64>,
    /// Wall clock of the last attack request, ms since the epoch (UTC).
    pub ended_at_ms: Option<i64>,
}

/// The result of [`super::run`].
#[derive(Debug, Clone)]
pub struct LoadgenReport {
    /// Codes of the run, most popular first (Zipf rank order).
    pub codes: Vec<String>,
    /// The ground truth.
    pub truth: GroundTruth,
    /// Redirect traffic.
    pub requests: RequestStats,
    /// Explicit events.
    pub injected: InjectStats,
    /// From the first request to the end of sending (duration plus draining).
    pub elapsed: Duration,
    /// Answered redirect requests per second over the sending time.
    pub achieved_rate: f64,
    /// The requested rate.
    pub target_rate: f64,
    /// Whether the truth is exact (every click's outcome is known).
    pub exact: bool,
    /// Whether the server trusts this host's `X-Forwarded-For` (`None`: cannot tell).
    pub proxy_trusted: Option<bool>,
    /// The attack, if one was requested.
    pub attack: Option<AttackReport>,
    /// Remarks for the reader (unknown outcomes, proxy trust, ...).
    pub notes: Vec<String>,
}

impl RequestStats {
    /// Requests answered with a redirect (3xx).
    pub fn redirected(&self) -> u64 {
        self.statuses.range(300..400).map(|(_, n)| n).sum()
    }

    /// Requests sent that got no redirect: another status than 3xx, or no answer.
    pub fn not_redirected(&self) -> u64 {
        self.sent.saturating_sub(self.redirected())
    }

    /// What the requests without a redirect got, for messages: `404: 20, connect: 3`
    /// (statuses other than 3xx, then failures by kind).
    fn misses(&self) -> String {
        let statuses = self.statuses.iter().filter(|(s, _)| !(300..400).contains(*s)).map(|(s, n)| format!("{s}: {n}"));
        let failures = self.failures.iter().map(|(k, n)| format!("{k}: {n}"));
        statuses.chain(failures).collect::<Vec<_>>().join(", ")
    }
}

impl LoadgenReport {
    /// The exit status of `sluice loadgen` against `target`: an error when no redirect request
    /// got a redirect (3xx), whatever `max_error_share` is, or when more than
    /// `max_error_share` (0..=1) of the requests sent got none (another status, or no
    /// answer). The message gives the counts and what the requests got instead.
    pub fn outcome(&self, target: &url::Url, max_error_share: f64) -> anyhow::Result<()> {
        let r = &self.requests;
        let (sent, missed) = (r.sent, r.not_redirected());
        if sent == 0 {
            anyhow::bail!("no redirect request was sent to {target}");
        }
        if missed == sent {
            anyhow::bail!(
                "none of the {sent} redirect requests got a redirect (3xx) from {target} ({}): is the server running there, \
                 is --target its redirect origin, and do the links exist (--codes)?",
                r.misses()
            );
        }
        let share = missed as f64 / sent as f64;
        if share > max_error_share {
            anyhow::bail!(
                "{missed} of {sent} redirect requests ({:.1} %) got no redirect (3xx) from {target} ({}), more than --max-error-share {max_error_share} allows",
                share * 100.0,
                r.misses()
            );
        }
        Ok(())
    }

    /// Prints the report: traffic summary, the `top` links by clicks, totals and notes.
    ///
    /// Errors only when `out` fails.
    pub fn print(&self, out: &mut impl Write, top: usize) -> std::io::Result<()> {
        let r = &self.requests;
        let statuses: Vec<String> = r.statuses.iter().map(|(s, n)| format!("{s}: {n}")).collect();
        writeln!(out, "loadgen: {} requests sent of {} planned in {:.1}s", r.sent, r.planned, self.elapsed.as_secs_f64())?;
        writeln!(
            out,
            "  achieved rate {:.1} req/s (target {:.1}); {} HEAD; answers {{{}}}",
            self.achieved_rate,
            self.target_rate,
            r.heads,
            statuses.join(", ")
        )?;
        if !r.failures.is_empty() {
            let f: Vec<String> = r.failures.iter().map(|(k, n)| format!("{k}: {n}")).collect();
            writeln!(out, "  failed requests {{{}}}", f.join(", "))?;
        }
        let i = &self.injected;
        writeln!(
            out,
            "  POST /v1/events: {} batches, {} late events, {} exact duplicates, {} accepted, {} rejected, {} refused, {} unknown",
            i.batches,
            i.late_events,
            i.duplicates,
            i.accepted,
            i.rejected.values().sum::<u64>(),
            i.refused,
            i.unknown
        )?;
        if let Some(a) = &self.attack {
            writeln!(
                out,
                "  attack {:?} on {}: {} requests from {} to {} (ms since epoch); expected anomaly kind {}",
                a.kind,
                a.code,
                a.requests,
                a.started_at_ms.map_or("-".into(), |t| t.to_string()),
                a.ended_at_ms.map_or("-".into(), |t| t.to_string()),
                a.kind.anomaly_kind()
            )?;
        }
        writeln!(out, "ground truth ({}):", if self.exact { "exact" } else { "NOT exact, see notes" })?;
        writeln!(out, "  {:<16} {:>10} {:>10} {:>10}", "code", "clicks", "bot_clicks", "visitors")?;
        let mut by_clicks: Vec<(&String, &super::LinkTruth)> = self.truth.links.iter().collect();
        by_clicks.sort_by(|a, b| b.1.clicks.cmp(&a.1.clicks).then(a.0.cmp(b.0)));
        for (code, t) in by_clicks.iter().take(top) {
            writeln!(out, "  {:<16} {:>10} {:>10} {:>10}", code, t.clicks, t.bot_clicks, t.visitors)?;
        }
        if by_clicks.len() > top {
            writeln!(out, "  ... {} more links", by_clicks.len() - top)?;
        }
        let t = self.truth.totals();
        writeln!(out, "  {:<16} {:>10} {:>10} {:>10}", "total", t.clicks, t.bot_clicks, t.visitors)?;
        for n in &self.notes {
            writeln!(out, "note: {n}")?;
        }
        Ok(())
    }
}
