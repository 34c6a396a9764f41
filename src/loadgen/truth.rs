//! The exact ground truth of a run, per link:
//!
//! - `clicks`: human clicks, i.e. `GET`s answered with a 3xx plus events injected through
//!   `POST /v1/events` that were accepted, each `event_id` counted once; `HEAD` requests,
//!   failed requests and duplicates are not clicks;
//! - `bot_clicks`: the same for bots, plus the human clicks past the flood cap (of one
//!   visitor's clicks on one link within one UTC minute, only the first
//!   `[dataflow.abuse.flood-cap] clicks-per-minute`, default 30, are human; case C25);
//! - `visitors`: distinct (visitor-salt period, client IP, user agent) among the human clicks.
//!
//! Bots and humans are told apart by Sluice's own classifier
//! ([`sluice_dataflows::enrich::Enricher::user_agent`]), so the truth checks the pipeline's
//! counting, not the classifier's accuracy (measured separately in `dataflows/`).
//!
//! Visitors and the salt period: the pipeline's `visitor_id` hashes (period salt, IP, UA),
//! and the salt changes at every period boundary (00:00 UTC for the default `1d`). A
//! returning visitor on both sides of a boundary therefore has two ids, and uniques over a
//! range spanning the boundary count them twice: the truth does the same by keying visitors
//! on the period of the click's event time. Redirects are not sent within a guard interval
//! around a boundary (see `run`), so the server's clock and the generator's agree on the
//! period of every redirect.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use sluice_dataflows::enrich::{EnrichConfig, Enricher};
use uuid::Uuid;

/// Exact expected counts of one link.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkTruth {
    /// Human clicks.
    pub clicks: u64,
    /// Bot clicks.
    pub bot_clicks: u64,
    /// Distinct human visitors (per salt period, summed over periods).
    pub visitors: u64,
}

/// The `--truth` file: `{"links": {"<code>": {"clicks", "bot_clicks", "visitors"}}}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroundTruth {
    /// Per code, every link of the run (zeros included).
    pub links: BTreeMap<String, LinkTruth>,
}

impl GroundTruth {
    /// Sums over all links.
    pub fn totals(&self) -> LinkTruth {
        self.links.values().fold(LinkTruth::default(), |a, l| LinkTruth {
            clicks: a.clicks + l.clicks,
            bot_clicks: a.bot_clicks + l.bot_clicks,
            visitors: a.visitors + l.visitors,
        })
    }
}

#[derive(Default)]
struct LinkAcc {
    clicks: u64,
    bot_clicks: u64,
    visitors: HashSet<(i64, IpAddr, String)>,
}

/// Accumulates clicks into a [`GroundTruth`].
pub struct TruthBuilder {
    classifier: Enricher,
    period_ms: Option<i64>,
    links: BTreeMap<String, LinkAcc>,
    counted_ids: HashSet<Uuid>,
    flood_cap: Option<u32>,
    /// Human clicks per (code, salt period, IP, UA, UTC minute), for the flood cap.
    per_minute: std::collections::HashMap<(String, i64, IpAddr, String, i64), u64>,
}

/// Index of the salt period containing `ts_ms` (0 when the salt never rotates); the same
/// epoch-aligned rule as `sluice_schemas::VisitorSalt::period_index`.
pub fn period_index(period_ms: Option<i64>, ts_ms: i64) -> i64 {
    match period_ms {
        Some(p) if p > 0 => ts_ms.div_euclid(p),
        _ => 0,
    }
}

impl TruthBuilder {
    /// A builder for `codes` (all reported, zeros included) with salt period `period_ms`
    /// (`None` = never rotates).
    ///
    /// Errors if the classifier's data cannot be loaded (a build defect).
    pub fn new(codes: &[String], period_ms: Option<i64>) -> anyhow::Result<TruthBuilder> {
        let classifier = Enricher::new(&EnrichConfig::default()).map_err(|e| anyhow::anyhow!("could not load the bot classifier: {e}"))?;
        let links = codes.iter().map(|c| (c.clone(), LinkAcc::default())).collect();
        Ok(TruthBuilder {
            classifier,
            period_ms,
            links,
            counted_ids: HashSet::new(),
            flood_cap: sluice_dataflows::config::FloodCapConfig::default().cap(),
            per_minute: std::collections::HashMap::new(),
        })
    }

    /// Sets the flood cap the server runs with (`None`: off; default: the default cap).
    pub fn with_flood_cap(mut self, cap: Option<u32>) -> TruthBuilder {
        self.flood_cap = cap;
        self
    }

    /// The salt period in ms (`None`: never rotates).
    pub fn period_ms(&self) -> Option<i64> {
        self.period_ms
    }

    /// Whether Sluice's classifier flags `ua` as a bot.
    pub fn is_bot(&mut self, ua: &str) -> bool {
        self.classifier.user_agent(ua).is_bot
    }

    /// Counts one click on `code` at `ts_ms` from (`ip`, `ua`). With `event_id`, a click
    /// whose id was counted before is a duplicate and ignored; returns whether it counted.
    pub fn click(&mut self, code: &str, ts_ms: i64, ip: IpAddr, ua: &str, event_id: Option<Uuid>) -> bool {
        if let Some(id) = event_id
            && !self.counted_ids.insert(id)
        {
            return false;
        }
        let bot = self.is_bot(ua);
        let period = period_index(self.period_ms, ts_ms);
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        let flagged = !bot
            && self.flood_cap.is_some_and(|cap| {
                let n = self.per_minute.entry((code.to_owned(), period, ip, ua.to_owned(), ts_ms.div_euclid(60_000))).or_default();
                *n += 1;
                *n > u64::from(cap)
            });
        let acc = self.links.entry(code.to_owned()).or_default();
        if bot || flagged {
            acc.bot_clicks += 1;
        } else {
            acc.clicks += 1;
            acc.visitors.insert((period, ip, ua.to_owned()));
        }
        true
    }

    /// The truth so far.
    pub fn snapshot(&self) -> GroundTruth {
        GroundTruth {
            links: self
                .links
                .iter()
                .map(|(code, a)| (code.clone(), LinkTruth { clicks: a.clicks, bot_clicks: a.bot_clicks, visitors: a.visitors.len() as u64 }))
                .collect(),
        }
    }
}
