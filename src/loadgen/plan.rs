//! The seeded traffic model: which link each request hits (Zipf popularity), who sends it
//! (new or returning visitor, human browser, link-preview fetcher or crawler, client
//! address), with which referrer and method. One [`TrafficModel`] draws every request of a
//! run in sequence from one seeded RNG, so a seed fixes the whole request sequence (the
//! timing of a run is the only thing that varies).
//!
//! Attack shapes (`attack.rs`, `--attack`) plug in as further request sources drawing from the same
//! model ([`TrafficModel::visitor_with`], [`TrafficModel::referrer`], ...).

use std::net::IpAddr;
use std::ops::Range;
use std::sync::Arc;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use uuid::Uuid;

use super::data::{BOT_MEDIUM_MIX, HUMAN_MEDIUM_MIX, Medium, UserAgents, referrers};
use super::ips::IpPools;

/// Returning visitors are drawn from this many most recent visitors.
pub const RECENT_VISITORS: usize = 10_000;

/// All user agents of a run in one table, by kind.
#[derive(Debug)]
pub struct UaTable {
    all: Vec<String>,
    /// Indices of real browsers.
    pub humans: Range<u32>,
    /// Indices of link-preview fetchers.
    pub previews: Range<u32>,
    /// Indices of other crawlers.
    pub crawlers: Range<u32>,
}

impl UaTable {
    /// The table of `uas` (humans, then previews, then crawlers).
    pub fn new(uas: UserAgents) -> UaTable {
        let h = uas.humans.len() as u32;
        let p = uas.previews.len() as u32;
        let c = uas.crawlers.len() as u32;
        let mut all = uas.humans;
        all.extend(uas.previews);
        all.extend(uas.crawlers);
        UaTable { all, humans: 0..h, previews: h..h + p, crawlers: h + p..h + p + c }
    }

    /// The user agent with index `i`.
    ///
    /// # Panics
    /// If `i` is not an index of this table (indices come from this table's ranges).
    pub fn get(&self, i: u32) -> &str {
        &self.all[i as usize]
    }
}

/// Shares of the traffic mix (probabilities in 0..=1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mix {
    /// Zipf exponent `s` of link popularity: rank `k` is hit with weight `1/k^s`.
    pub zipf_exponent: f64,
    /// Share of new visitors that are bots (preview fetchers or crawlers).
    pub bot_share: f64,
    /// Share of bots that are link-preview fetchers (the rest are other crawlers).
    pub preview_share: f64,
    /// Share of requests sent as `HEAD` (not clicks).
    pub head_share: f64,
    /// Share of requests from a returning visitor (one of the last [`RECENT_VISITORS`]).
    pub repeat_share: f64,
}

impl Default for Mix {
    fn default() -> Self {
        Mix { zipf_exponent: 1.1, bot_share: 0.07, preview_share: 0.6, head_share: 0.03, repeat_share: 0.35 }
    }
}

/// A client: address and user agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Visitor {
    /// Client address (sent as `X-Forwarded-For`).
    pub ip: IpAddr,
    /// Index into the [`UaTable`].
    pub ua: u32,
}

/// One planned redirect request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// Index of the link (into the run's code list; 0 is the most popular).
    pub link: usize,
    /// `HEAD` instead of `GET`.
    pub head: bool,
    /// Who sends it.
    pub visitor: Visitor,
    /// `Referer` header, if any.
    pub referrer: Option<&'static str>,
}

/// The generator's random source and state. See the module docs.
pub struct TrafficModel {
    rng: ChaCha8Rng,
    zipf_cdf: Vec<f64>,
    mix: Mix,
    uas: Arc<UaTable>,
    ips: Arc<IpPools>,
    recent: Vec<Visitor>,
    next_slot: usize,
}

/// Cumulative distribution of Zipf weights `1/k^s`, `k = 1..=n`, normalized to end at 1.
pub fn zipf_cdf(n: usize, s: f64) -> Vec<f64> {
    let mut acc = 0.0;
    let mut cdf: Vec<f64> = (1..=n)
        .map(|k| {
            acc += 1.0 / (k as f64).powf(s);
            acc
        })
        .collect();
    for c in &mut cdf {
        *c /= acc;
    }
    cdf
}

fn pick_weighted<T: Copy>(rng: &mut ChaCha8Rng, table: &[(T, u32)]) -> T {
    let total: u32 = table.iter().map(|(_, w)| w).sum();
    let mut x = rng.random_range(0..total.max(1));
    for (v, w) in table {
        if x < *w {
            return *v;
        }
        x -= w;
    }
    table[0].0
}

impl TrafficModel {
    /// A model over `links` links (at least 1) seeded with `seed`.
    pub fn new(seed: u64, links: usize, mix: Mix, uas: Arc<UaTable>, ips: Arc<IpPools>) -> TrafficModel {
        TrafficModel {
            rng: ChaCha8Rng::seed_from_u64(seed),
            zipf_cdf: zipf_cdf(links.max(1), mix.zipf_exponent),
            mix,
            uas,
            ips,
            recent: Vec::with_capacity(RECENT_VISITORS),
            next_slot: 0,
        }
    }

    /// The user-agent table.
    pub fn uas(&self) -> &Arc<UaTable> {
        &self.uas
    }

    /// A link index by Zipf popularity.
    pub fn link(&mut self) -> usize {
        let u: f64 = self.rng.random();
        self.zipf_cdf.partition_point(|&c| c <= u).min(self.zipf_cdf.len() - 1)
    }

    /// A returning visitor (probability `repeat_share`, when any exists) or a new one.
    pub fn visitor(&mut self) -> Visitor {
        if !self.recent.is_empty() && self.rng.random_bool(self.mix.repeat_share) {
            return self.recent[self.rng.random_range(0..self.recent.len())];
        }
        let bot = self.rng.random_bool(self.mix.bot_share);
        let range = if !bot {
            self.uas.humans.clone()
        } else if self.rng.random_bool(self.mix.preview_share) {
            self.uas.previews.clone()
        } else {
            self.uas.crawlers.clone()
        };
        let ua = self.rng.random_range(range);
        self.visitor_with(ua)
    }

    /// A user agent of a real browser.
    pub fn human_ua(&mut self) -> u32 {
        self.rng.random_range(self.uas.humans.clone())
    }

    /// A user agent of a bot: a link-preview fetcher with probability `preview_share`,
    /// else another crawler.
    pub fn bot_ua(&mut self) -> u32 {
        let range = if self.rng.random_bool(self.mix.preview_share) { self.uas.previews.clone() } else { self.uas.crawlers.clone() };
        self.rng.random_range(range)
    }

    /// A new visitor with user agent `ua` at an address in `country` (any country when the
    /// pools have none there); not remembered as recent.
    pub fn visitor_in(&mut self, ua: u32, country: &str) -> Visitor {
        let ip = self.ips.draw_in(country, &mut self.rng).unwrap_or_else(|| self.ips.draw(&mut self.rng));
        Visitor { ip, ua }
    }

    /// A new visitor with user agent `ua` and a fresh address; remembered as recent.
    pub fn visitor_with(&mut self, ua: u32) -> Visitor {
        let v = Visitor { ip: self.ips.draw(&mut self.rng), ua };
        if self.recent.len() < RECENT_VISITORS {
            self.recent.push(v);
        } else {
            self.recent[self.next_slot] = v;
            self.next_slot = (self.next_slot + 1) % RECENT_VISITORS;
        }
        v
    }

    /// A referrer for a click by a human or a bot (`None` = direct).
    pub fn referrer(&mut self, bot: bool) -> Option<&'static str> {
        let medium = pick_weighted(&mut self.rng, if bot { BOT_MEDIUM_MIX } else { HUMAN_MEDIUM_MIX });
        let list = referrers(medium);
        if medium == Medium::Direct || list.is_empty() { None } else { Some(list[self.rng.random_range(0..list.len())]) }
    }

    /// Whether the visitor's user agent is one the generator took from a bot list (the
    /// ground truth asks the pipeline's classifier instead).
    pub fn intended_bot(&self, v: Visitor) -> bool {
        !self.uas.humans.contains(&v.ua)
    }

    /// The next redirect request.
    pub fn request(&mut self) -> Request {
        let link = self.link();
        let visitor = self.visitor();
        let referrer = self.referrer(self.intended_bot(visitor));
        let head = self.rng.random_bool(self.mix.head_share);
        Request { link, head, visitor, referrer }
    }

    /// A random (version 4) event id, from the thread's OS-seeded generator rather than the
    /// seeded plan: the pipeline dedups by event id across runs, so a second run with the
    /// same seed against the same data dir must not repeat the first run's ids (its events
    /// would be dropped as duplicates and the ground truth would disagree).
    pub fn event_id(&mut self) -> Uuid {
        uuid::Builder::from_random_bytes(rand::random()).into_uuid()
    }

    /// A uniform integer in `range`.
    pub fn int(&mut self, range: Range<i64>) -> i64 {
        self.rng.random_range(range)
    }

    /// `true` with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p.clamp(0.0, 1.0))
    }
}
