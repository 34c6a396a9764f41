//! Realistic click traffic for the abuse-detection tests, in event time, plus the attack
//! shapes of `sluice loadgen --attack` (the root crate's `src/loadgen/attack.rs`, mirrored
//! here because the dataflow crate cannot depend on the binary).
//!
//! Normal traffic (the loadgen's default mix):
//! * links `l0000`…`l0999` (as many as asked), popularity Zipf with exponent 1.1 (rank `k`
//!   hit with weight `1/k^1.1`), arrivals a Poisson process at `rate` clicks per second;
//! * 35 % of clicks from a returning visitor (one of the last 10,000), the others from a new
//!   visitor: 7 % bots (60 % link-preview fetchers, 40 % other crawlers), 93 % humans;
//! * user agents: real browsers from CrawlerDetect's labelled non-bot fixture
//!   (`tests/data/bots/crawlerdetect-fixture-devices.txt.gz`, every 80th line) and the real
//!   crawler `instances` of crawler-user-agents (`data/bots/crawler-user-agents.json`), the
//!   files the enrichment tests and the enricher use;
//! * client networks: IPv4 /24s that the bundled GeoIP database maps to the loadgen's 30
//!   countries, drawn by the loadgen's country weights (15 % IPv6 /48s);
//! * referrers: the loadgen's medium mix (direct 35 %, search 29 %, social 23 %, e-mail 9 %,
//!   AI assistants 4 % for humans; mostly none for bots) over real hosts;
//! * 2 % exact duplicates (the same event re-posted, as at-least-once delivery does).
//!
//! Partitions are keyed by code ([`route_str`]), like a keyed Kafka topic.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sluice_dataflows::enrich::{CountryMemo, GeoIp};
use sluice_dataflows::hash::route_str;
use sluice_dataflows::source::SourceRecord;
use sluice_schemas::ClickEvent;
use uuid::Uuid;

/// The referrer of the `referrer-spam` shape (loadgen's `SPAM_REFERRER`).
pub const SPAM_REFERRER: &str = "https://free-followers-now.example/offer?id=7731";
/// Its registrable domain, as the enricher reports it.
pub const SPAM_DOMAIN: &str = "free-followers-now.example";
/// The country of the `geo-shift` shape (loadgen's `GEO_SHIFT_COUNTRY`).
pub const GEO_SHIFT_COUNTRY: &str = "VN";

/// Relative weight of client countries (loadgen's `COUNTRY_WEIGHTS`).
pub const COUNTRY_WEIGHTS: &[(&str, u32)] = &[
    ("US", 280),
    ("IN", 90),
    ("DE", 60),
    ("GB", 60),
    ("BR", 50),
    ("FR", 40),
    ("JP", 40),
    ("CA", 30),
    ("ID", 30),
    ("MX", 30),
    ("ES", 20),
    ("IT", 20),
    ("NL", 20),
    ("AU", 20),
    ("PL", 20),
    ("TR", 20),
    ("KR", 20),
    ("VN", 15),
    ("CN", 15),
    ("RU", 15),
    ("NG", 10),
    ("ZA", 10),
    ("AR", 10),
    ("SE", 10),
    ("PH", 10),
    ("EG", 10),
    ("UA", 10),
    ("CH", 10),
    ("SG", 10),
    ("KE", 5),
];

const SEARCH: &[&str] = &[
    "https://www.google.com/",
    "https://www.google.com/",
    "https://www.google.com/search?q=url+shortener+analytics",
    "https://www.google.co.uk/",
    "https://www.google.de/",
    "https://www.google.com.br/",
    "https://www.bing.com/",
    "https://duckduckgo.com/",
    "https://search.yahoo.com/",
    "https://yandex.ru/search/?text=link",
    "https://www.baidu.com/s?wd=link",
    "https://search.brave.com/",
    "https://www.ecosia.org/",
];
const SOCIAL: &[&str] = &[
    "https://t.co/",
    "https://t.co/",
    "https://www.facebook.com/",
    "https://l.facebook.com/",
    "https://www.linkedin.com/",
    "https://lnkd.in/",
    "https://www.reddit.com/",
    "https://out.reddit.com/",
    "https://news.ycombinator.com/",
    "https://l.instagram.com/",
    "https://www.youtube.com/",
    "https://mastodon.social/",
    "https://bsky.app/",
    "https://web.telegram.org/",
];
const EMAIL: &[&str] =
    &["https://mail.google.com/", "https://outlook.live.com/", "https://outlook.office.com/", "https://mail.yahoo.com/", "https://mail.proton.me/"];
const AI: &[&str] = &["https://chatgpt.com/", "https://www.perplexity.ai/", "https://claude.ai/", "https://gemini.google.com/"];

/// Case-insensitive markers of link-preview fetchers among the crawler instances.
const PREVIEW_MARKERS: &[&str] = &[
    "facebookexternalhit",
    "twitterbot",
    "slackbot",
    "discordbot",
    "whatsapp",
    "telegrambot",
    "linkedinbot",
    "mastodon",
    "pinterest",
    "redditbot",
    "embedly",
    "skypeuripreview",
    "applebot",
];

/// Real user agents and client networks (built once per test process).
pub struct World {
    pub humans: Vec<String>,
    pub previews: Vec<String>,
    pub crawlers: Vec<String>,
    /// `(country, weight, /24 prefixes)`.
    pub v4: Vec<(&'static str, u32, Vec<[u8; 3]>)>,
    pub v4_total: u32,
    pub v6: Vec<[u16; 3]>,
}

fn data(path: &str) -> String {
    format!("{}/{path}", std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR (set by cargo test and nextest at run time)"))
}

fn sendable(ua: &str) -> bool {
    !ua.is_empty() && ua.trim() == ua && !ua.chars().any(char::is_control)
}

/// The shared world (module docs).
pub fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let f = std::fs::File::open(data("tests/data/bots/crawlerdetect-fixture-devices.txt.gz")).expect("devices fixture");
        let humans: Vec<String> =
            BufReader::new(flate2::read::GzDecoder::new(f)).lines().map(|l| l.expect("devices fixture is text")).filter(|l| sendable(l)).step_by(80).collect();
        let json = std::fs::read_to_string(data("data/bots/crawler-user-agents.json")).expect("crawler list");
        let entries: Vec<serde_json::Value> = serde_json::from_str(&json).expect("crawler list is JSON");
        let (mut previews, mut crawlers) = (Vec::new(), Vec::new());
        for ua in entries.iter().flat_map(|e| e["instances"].as_array().cloned().unwrap_or_default()) {
            let Some(ua) = ua.as_str().filter(|u| sendable(u)) else { continue };
            let lower = ua.to_ascii_lowercase();
            if PREVIEW_MARKERS.iter().any(|m| lower.contains(m)) { previews.push(ua.to_string()) } else { crawlers.push(ua.to_string()) }
        }
        assert!(humans.len() > 1000 && previews.len() > 20 && crawlers.len() > 1000, "real user agents loaded");
        // Client networks: seeded rejection sampling of the IPv4 space (as the loadgen does).
        let geo = GeoIp::bundled().expect("bundled GeoIP");
        let mut memo = CountryMemo::default();
        let mut rng = ChaCha8Rng::seed_from_u64(0x6e65_7477);
        let wanted: BTreeMap<&str, u32> = COUNTRY_WEIGHTS.iter().copied().collect();
        let mut found: BTreeMap<&'static str, Vec<[u8; 3]>> = BTreeMap::new();
        for _ in 0..150_000 {
            let n: u32 = rng.random();
            let [a, b, c, _] = n.to_be_bytes();
            let cc = geo.lookup_memo(IpAddr::V4(Ipv4Addr::new(a, b, c, 0)), &mut memo);
            if let Some((&code, _)) = wanted.get_key_value(cc.as_str()) {
                found.entry(code).or_default().push([a, b, c]);
            }
        }
        let v4: Vec<(&'static str, u32, Vec<[u8; 3]>)> =
            COUNTRY_WEIGHTS.iter().filter_map(|&(code, w)| found.remove(code).map(|nets| (code, w, nets))).collect();
        assert!(v4.iter().any(|(c, _, n)| *c == GEO_SHIFT_COUNTRY && n.len() > 50), "networks in {GEO_SHIFT_COUNTRY}");
        let v4_total = v4.iter().map(|(_, w, _)| w).sum();
        let mut v6 = Vec::new();
        for _ in 0..20_000 {
            let block = [0x2400u16, 0x2600, 0x2800, 0x2a00][rng.random_range(0..4)];
            let g = [block | rng.random_range(0..0x100u16), rng.random(), rng.random()];
            let cc = geo.lookup_memo(IpAddr::V6(Ipv6Addr::new(g[0], g[1], g[2], 0, 0, 0, 0, 0)), &mut memo);
            if cc.as_str() != "ZZ" {
                v6.push(g);
            }
        }
        assert!(!v6.is_empty(), "IPv6 networks found");
        World { humans, previews, crawlers, v4, v4_total, v6 }
    })
}

/// A client: visitor id, truncated address, user agent.
#[derive(Debug, Clone)]
pub struct Visitor {
    pub id: u64,
    pub ip: String,
    pub ua: &'static str,
    pub bot: bool,
}

/// The normal traffic model (module docs) with its random source.
pub struct Model {
    rng: ChaCha8Rng,
    cdf: Vec<f64>,
    recent: Vec<Visitor>,
    next_recent: usize,
}

/// `l0042`: the code of the link of popularity rank `i` (0 = most popular).
pub fn code(i: usize) -> String {
    format!("l{i:04}")
}

impl Model {
    /// A model over `links` links seeded with `seed`.
    pub fn new(links: usize, seed: u64) -> Model {
        let mut cdf: Vec<f64> = Vec::with_capacity(links);
        let mut acc = 0.0;
        for k in 1..=links {
            acc += 1.0 / (k as f64).powf(1.1);
            cdf.push(acc);
        }
        for x in &mut cdf {
            *x /= acc;
        }
        Model { rng: ChaCha8Rng::seed_from_u64(seed), cdf, recent: Vec::new(), next_recent: 0 }
    }

    /// The expected clicks per minute of link rank `i` at `rate` clicks per second.
    pub fn link_rate_per_min(&self, i: usize, rate: f64) -> f64 {
        let p = self.cdf[i] - if i == 0 { 0.0 } else { self.cdf[i - 1] };
        p * rate * 60.0
    }

    pub fn link(&mut self) -> usize {
        let x: f64 = self.rng.random();
        self.cdf.partition_point(|c| *c < x).min(self.cdf.len() - 1)
    }

    fn network_in(&mut self, country: Option<&str>) -> String {
        let w = world();
        if country.is_none() && self.rng.random_range(0..1000) < 150 {
            let g = w.v6[self.rng.random_range(0..w.v6.len())];
            return Ipv6Addr::new(g[0], g[1], g[2], 0, 0, 0, 0, 0).to_string();
        }
        let nets = match country {
            Some(c) => &w.v4.iter().find(|(x, _, _)| *x == c).expect("country has networks").2,
            None => {
                let mut x = self.rng.random_range(0..w.v4_total);
                let mut i = 0;
                while x >= w.v4[i].1 {
                    x -= w.v4[i].1;
                    i += 1;
                }
                &w.v4[i].2
            }
        };
        let [a, b, c] = nets[self.rng.random_range(0..nets.len())];
        format!("{a}.{b}.{c}.0")
    }

    pub fn human_ua(&mut self) -> &'static str {
        let w = world();
        &w.humans[self.rng.random_range(0..w.humans.len())]
    }

    pub fn bot_ua(&mut self) -> &'static str {
        let w = world();
        if self.rng.random::<f64>() < 0.6 {
            &w.previews[self.rng.random_range(0..w.previews.len())]
        } else {
            &w.crawlers[self.rng.random_range(0..w.crawlers.len())]
        }
    }

    /// A new visitor with `ua` in `country` (any, by weight, when `None`); remembered as recent.
    pub fn new_visitor(&mut self, ua: &'static str, bot: bool, country: Option<&str>) -> Visitor {
        let v = Visitor { id: self.rng.random(), ip: self.network_in(country), ua, bot };
        if self.recent.len() < 10_000 {
            self.recent.push(v.clone());
        } else {
            self.recent[self.next_recent] = v.clone();
            self.next_recent = (self.next_recent + 1) % 10_000;
        }
        v
    }

    /// A returning visitor (35 %) or a new one (7 % bots).
    pub fn visitor(&mut self) -> Visitor {
        if !self.recent.is_empty() && self.rng.random::<f64>() < 0.35 {
            return self.recent[self.rng.random_range(0..self.recent.len())].clone();
        }
        if self.rng.random::<f64>() < 0.07 {
            let ua = self.bot_ua();
            self.new_visitor(ua, true, None)
        } else {
            let ua = self.human_ua();
            self.new_visitor(ua, false, None)
        }
    }

    pub fn referrer(&mut self, bot: bool) -> Option<&'static str> {
        let x = self.rng.random_range(0..1000);
        let list = if bot {
            match x {
                0..920 => return None,
                920..980 => SOCIAL,
                _ => SEARCH,
            }
        } else {
            match x {
                0..350 => return None,
                350..640 => SEARCH,
                640..870 => SOCIAL,
                870..960 => EMAIL,
                _ => AI,
            }
        };
        Some(list[self.rng.random_range(0..list.len())])
    }

    pub fn uniform(&mut self) -> f64 {
        self.rng.random()
    }

    pub fn id(&mut self) -> u128 {
        self.rng.random()
    }
}

/// One click before partitioning.
pub fn click(id: u128, code: &str, ts: i64, v: &Visitor, referrer: Option<&str>) -> ClickEvent {
    ClickEvent {
        event_id: Uuid::from_u128(id),
        code: code.to_string(),
        ts,
        ip_trunc: Some(v.ip.clone()),
        visitor_id: v.id,
        user_agent: v.ua.to_string(),
        referrer: referrer.map(str::to_string),
        accept_language: None,
        edge_region: None,
    }
}

/// Normal traffic: `rate` clicks per second over `links` links for `[start, end)` (ms),
/// Poisson arrivals, 2 % duplicates; sorted by `ts`.
pub fn normal(m: &mut Model, start: i64, end: i64, rate: f64) -> Vec<ClickEvent> {
    let mut out = Vec::new();
    let mut t = start as f64;
    loop {
        t += -(1.0 - m.uniform()).ln() * 1000.0 / rate;
        if t >= end as f64 {
            break;
        }
        let link = m.link();
        let v = m.visitor();
        let r = m.referrer(v.bot);
        let id = m.id();
        let e = click(id, &code(link), t as i64, &v, r);
        if m.uniform() < 0.02 {
            out.push(e.clone());
        }
        out.push(e);
    }
    out
}

/// `sluice loadgen --attack` shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Shape {
    Burst,
    Flood,
    Bots,
    ReferrerSpam,
    GeoShift,
}

impl Shape {
    pub const ALL: [Shape; 5] = [Shape::Burst, Shape::Flood, Shape::Bots, Shape::ReferrerSpam, Shape::GeoShift];

    /// The anomaly kind the shape must raise.
    pub fn kind(self) -> &'static str {
        match self {
            Shape::Burst => "click_burst",
            Shape::Flood => "visitor_flood",
            Shape::Bots => "bot_share",
            Shape::ReferrerSpam => "referrer_spam",
            Shape::GeoShift => "geo_shift",
        }
    }
}

/// An injected attack: `rate` extra clicks per second, evenly spaced, on link rank `link`
/// during `[start, start + duration)`.
#[derive(Debug, Clone)]
pub struct Attack {
    pub shape: Shape,
    pub link: usize,
    pub start: i64,
    pub duration_ms: i64,
    pub rate: f64,
}

/// The clicks of an attack, drawn from `m` (a model seeded apart from the normal traffic,
/// as the loadgen does); returns them and the anomaly key the attack must be reported under.
pub fn attack(m: &mut Model, a: &Attack) -> (Vec<ClickEvent>, String) {
    let code = code(a.link);
    let flooder = {
        let ua = m.human_ua();
        m.new_visitor(ua, false, None)
    };
    let n = (a.rate * a.duration_ms as f64 / 1000.0) as usize;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let ts = a.start + (i as f64 * 1000.0 / a.rate) as i64;
        let (v, r) = match a.shape {
            Shape::Burst => {
                let v = m.visitor();
                let r = m.referrer(v.bot);
                (v, r)
            }
            Shape::Flood => (flooder.clone(), None),
            Shape::Bots => {
                let ua = m.bot_ua();
                let v = m.new_visitor(ua, true, None);
                let r = m.referrer(true);
                (v, r)
            }
            Shape::ReferrerSpam => {
                let ua = m.human_ua();
                (m.new_visitor(ua, false, None), Some(SPAM_REFERRER))
            }
            Shape::GeoShift => {
                let ua = m.human_ua();
                let v = m.new_visitor(ua, false, Some(GEO_SHIFT_COUNTRY));
                let r = m.referrer(false);
                (v, r)
            }
        };
        let id = m.id();
        out.push(click(id, &code, ts, &v, r));
    }
    let key = match a.shape {
        Shape::Flood => sluice_schemas::anomaly::visitor_key(flooder.id),
        _ => sluice_schemas::anomaly::link_key(&code),
    };
    (out, key)
}

/// Merges event lists by `ts` (stable) and assigns partitions by code.
pub fn partitioned(mut events: Vec<ClickEvent>, partitions: u32) -> Vec<SourceRecord> {
    events.sort_by_key(|e| e.ts);
    let mut offsets = vec![0u64; partitions as usize];
    events
        .into_iter()
        .map(|event| {
            let p = (route_str(&event.code) % u64::from(partitions)) as u32;
            let offset = offsets[p as usize];
            offsets[p as usize] += 1;
            SourceRecord { partition: p, offset, event, backfill: false, arrival_ms: None }
        })
        .collect()
}
