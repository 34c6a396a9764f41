//! Exact values: a few hundred events posted through `POST /v1/events` — past timestamps
//! over five days, exact duplicates and same-id copies with another payload, bots and link
//! previews, late events (applied) and too-late ones (dead-lettered), a backfill batch —
//! checked against an independent plain-map count of the same events, in UTC and in
//! Asia/Kolkata, with and without breakdowns and bots.
//!
//! The reference applies the documented semantics in log order: a live event counts if it
//! is not more than 48 h behind the largest event time accepted so far (backfill: 400
//! days), and its `event_id` was not counted before (first copy wins). Visitors are
//! (UTC day of the event — the salt period —, IP, user agent). Dimensions and the bot flag
//! come from the bundled enricher, applied to each event on its own.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::IpAddr;

use chrono::{FixedOffset, SecondsFormat, TimeZone, Timelike};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use sluice_dataflows::enrich::{EnrichConfig, Enricher};
use sluice_schemas::{ClickEvent, truncate_ip};

use crate::harness::{Server, event, now_ms, q, rows};

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;
const LATENESS: i64 = 48 * HOUR;

const UAS: &[&str] = &[
    crate::harness::BROWSER_UA,
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.82 Mobile Safari/537.36",
    "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
];
const IPS: &[&str] = &[
    "81.2.69.160",
    "8.8.8.8",
    "1.1.1.1",
    "185.60.216.35",
    "41.0.0.1",
    "133.1.2.3",
    "200.1.2.3",
    "5.6.7.8",
    "2a00:1450:4001::1",
    "2001:db8::7",
    "203.0.113.5",
    "93.184.216.34",
];
const REFERRERS: &[Option<&str>] = &[None, Some("https://www.google.com/search?q=x"), Some("https://t.co/abc"), Some("https://mail.google.com/")];

#[derive(Clone, Debug)]
struct Ev {
    id: String,
    code: &'static str,
    ts: i64,
    ip: &'static str,
    ua: &'static str,
    referrer: Option<&'static str>,
}

/// One counted click as the reference sees it.
#[derive(Clone, Debug)]
struct Counted {
    code: &'static str,
    ts: i64,
    bot: bool,
    visitor: (i64, IpAddr, &'static str),
    device: String,
    country: String,
}

struct Reference {
    enricher: Enricher,
    watermark: i64,
    seen: HashSet<String>,
    counted: Vec<Counted>,
    dead: usize,
}

impl Reference {
    fn new() -> Reference {
        Reference {
            enricher: Enricher::new(&EnrichConfig::default()).expect("enricher"),
            watermark: i64::MIN,
            seen: HashSet::new(),
            counted: Vec::new(),
            dead: 0,
        }
    }

    /// Applies one event in log order.
    /// Applies `e`; `false` when it is too late (dead-lettered by the dataflow, or refused
    /// `too_late` at intake: the same outcome).
    fn apply(&mut self, e: &Ev, backfill: bool) -> bool {
        let limit = if backfill { 400 * DAY } else { LATENESS };
        if self.watermark != i64::MIN && e.ts < self.watermark - limit {
            self.dead += 1;
            return false;
        }
        self.watermark = self.watermark.max(e.ts);
        if !self.seen.insert(e.id.clone()) {
            return true;
        }
        let ip: IpAddr = e.ip.parse().expect("ip");
        let ev = ClickEvent {
            event_id: uuid::Uuid::nil(),
            code: e.code.to_string(),
            ts: e.ts,
            ip_trunc: Some(truncate_ip(ip)),
            visitor_id: 0,
            user_agent: e.ua.to_string(),
            referrer: e.referrer.map(str::to_string),
            accept_language: None,
            edge_region: None,
        };
        let en = self.enricher.enrich(&ev);
        self.counted.push(Counted {
            code: e.code,
            ts: e.ts,
            bot: en.is_bot,
            visitor: (e.ts.div_euclid(DAY), ip, e.ua),
            device: en.device.as_str().to_string(),
            country: en.country.as_str().to_string(),
        });
        true
    }

    fn select(&self, code: &str, from: i64, to: i64, bots: bool) -> impl Iterator<Item = &Counted> {
        self.counted.iter().filter(move |c| c.code == code && (from..to).contains(&c.ts) && (bots || !c.bot))
    }
}

/// Start of the local bucket of `ts` in a fixed-offset zone, labelled as the API does.
fn label(offset: FixedOffset, hourly: bool, ts: i64) -> String {
    let t = offset.timestamp_millis_opt(ts).single().expect("instant");
    let start = if hourly {
        t.with_minute(0).and_then(|t| t.with_second(0)).and_then(|t| t.with_nanosecond(0))
    } else {
        t.date_naive().and_hms_opt(0, 0, 0).and_then(|d| offset.from_local_datetime(&d).single())
    };
    start.expect("bucket start").to_rfc3339_opts(SecondsFormat::Secs, offset.local_minus_utc() == 0)
}

/// (clicks, distinct visitors as (UTC day, IP, user agent)) of one reference row.
type RefRow<'a> = (u64, BTreeSet<(i64, IpAddr, &'a str)>);

/// Expected rows: label → (clicks, distinct visitors).
fn expected_rows<'a>(it: impl Iterator<Item = &'a Counted>, offset: FixedOffset, hourly: bool) -> BTreeMap<String, (u64, u64)> {
    let mut m: BTreeMap<String, RefRow> = BTreeMap::new();
    for c in it {
        let e = m.entry(label(offset, hourly, c.ts)).or_default();
        e.0 += 1;
        e.1.insert(c.visitor);
    }
    m.into_iter().map(|(k, (n, v))| (k, (n, v.len() as u64))).collect()
}

fn tolerance(exact: u64) -> u64 {
    if exact <= 48 { 0 } else { (3.0 * 1.04 / 128.0 * exact as f64).ceil() as u64 }
}

fn assert_rows(body: &Value, key: &str, want: &BTreeMap<String, (u64, u64)>, what: &str) {
    let got = rows(body, key);
    let got_clicks: BTreeMap<String, u64> = got.iter().map(|(l, c, _)| (l.clone(), *c)).collect();
    let want_clicks: BTreeMap<String, u64> = want.iter().map(|(l, (c, _))| (l.clone(), *c)).collect();
    assert_eq!(got_clicks, want_clicks, "{what}: clicks per bucket");
    for (l, _, u) in &got {
        let exact = want[l].1;
        assert!(u.abs_diff(exact) <= tolerance(exact), "{what}: uniques of {l}: {u} vs {exact}");
    }
}

fn distinct<'a>(it: impl Iterator<Item = &'a Counted>) -> u64 {
    it.map(|c| c.visitor).collect::<BTreeSet<_>>().len() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_events_give_exact_stats_in_utc_and_kolkata() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start_in(dir.path(), |_| {}).await;
    let codes: [&'static str; 2] = ["exact-a", "exact-b"];
    for c in codes {
        s.link(c).await;
    }
    let now = now_ms();
    let base = now.div_euclid(DAY) * DAY - 4 * DAY;
    let mut rng = ChaCha8Rng::seed_from_u64(20240601);
    let mut reference = Reference::new();
    let mut posted: Vec<Ev> = Vec::new();
    let mut n = 0;
    for batch in 0..14 {
        let backfill = batch == 9;
        let mut events = Vec::new();
        for _ in 0..30 {
            let edge = reference.watermark.saturating_sub(if backfill { 400 * DAY } else { LATENESS });
            // Keep clear of the lateness boundary (the watermark also creeps while idle).
            let clear = |ts: i64| reference.watermark == i64::MIN || (ts - edge).abs() >= 30 * MIN;
            let copy =
                (!posted.is_empty() && !backfill && rng.random_bool(0.12)).then(|| posted[rng.random_range(0..posted.len())].clone()).filter(|c| clear(c.ts));
            let e = if let Some(mut copy) = copy {
                // An exact duplicate, or a copy with the same id and another payload.
                if rng.random_bool(0.3) {
                    copy.ua = UAS[rng.random_range(0..UAS.len())];
                    copy.referrer = Some("https://other.example/");
                }
                copy
            } else {
                n += 1;
                let hi = if batch < 4 { base + 36 * HOUR } else { now - HOUR };
                let mut ts = if backfill { base - 2 * DAY + rng.random_range(0..DAY) } else { base + rng.random_range(0..(hi - base)) };
                if !clear(ts) {
                    ts = edge + HOUR;
                }
                Ev {
                    id: format!("exact-{n}"),
                    code: codes[rng.random_range(0..2usize)],
                    ts,
                    ip: IPS[rng.random_range(0..IPS.len())],
                    ua: UAS[rng.random_range(0..UAS.len())],
                    referrer: REFERRERS[rng.random_range(0..REFERRERS.len())],
                }
            };
            let live = reference.apply(&e, backfill);
            posted.push(e.clone());
            events.push((e, live));
        }
        let body: Vec<Value> = events.iter().map(|(e, _)| event(&e.id, e.code, e.ts, e.ip, e.ua, e.referrer)).collect();
        // The intake refuses `too_late` what it already knows the dataflow would drop; every
        // refusal must be an event the reference counts as too late.
        for index in s.events_allowing_too_late(&body, backfill).await {
            assert!(!events[index].1, "refused too_late but within the lateness: {:?}", events[index].0);
        }
    }
    s.sync().await;
    assert!(reference.dead > 10, "the stream must exercise lateness: {} dead", reference.dead);
    assert!(reference.counted.iter().any(|c| c.bot) && reference.counted.len() > 150, "{} counted", reference.counted.len());

    let utc = FixedOffset::east_opt(0).expect("utc");
    let kolkata = FixedOffset::east_opt(5 * 3600 + 1800).expect("+05:30");
    let (from, to) = (base - 3 * DAY, now.div_euclid(DAY) * DAY + DAY);
    let ist_day = |t: i64| (t + 19_800_000).div_euclid(DAY) * DAY - 19_800_000;
    let (ist_from, ist_to) = (ist_day(from), ist_day(now) + DAY);
    for code in codes {
        // UTC days.
        let body = s.stats(code, &format!("bucket=day&from={}&to={}", q(from), q(to))).await;
        assert_rows(&body, "day", &expected_rows(reference.select(code, from, to, false), utc, false), &format!("{code} utc days"));
        let humans = reference.select(code, from, to, false).count() as u64;
        let bots = reference.select(code, from, to, true).filter(|c| c.bot).count() as u64;
        assert_eq!(body["totals"]["clicks"].as_u64(), Some(humans), "{code} total clicks");
        assert_eq!(body["totals"]["bot_clicks"].as_u64(), Some(bots), "{code} bot clicks");
        let u = distinct(reference.select(code, from, to, false));
        let got = body["totals"]["uniques"].as_u64().expect("uniques");
        assert!(got.abs_diff(u) <= tolerance(u), "{code}: total uniques {got} vs {u} (a union, not a sum of rows)");

        // Bots included.
        let body = s.stats(code, &format!("bucket=day&from={}&to={}&include_bots=true", q(from), q(to))).await;
        assert_eq!(body["totals"]["clicks"].as_u64(), Some(humans + bots));
        assert_eq!(body["totals"]["bot_clicks"].as_u64(), Some(bots));
        assert_rows(&body, "day", &expected_rows(reference.select(code, from, to, true), utc, false), &format!("{code} utc days with bots"));

        // Asia/Kolkata days and, for one local day, hours.
        let body = s.stats(code, &format!("bucket=day&tz=Asia/Kolkata&from={}&to={}", q(ist_from), q(ist_to))).await;
        assert_eq!(body["tz"].as_str(), Some("Asia/Kolkata"));
        assert_rows(&body, "day", &expected_rows(reference.select(code, ist_from, ist_to, false), kolkata, false), &format!("{code} kolkata days"));
        let d = ist_day(base + 2 * DAY);
        let body = s.stats(code, &format!("bucket=hour&tz=Asia/Kolkata&from={}&to={}", q(d), q(d + DAY))).await;
        assert_rows(&body, "hour", &expected_rows(reference.select(code, d, d + DAY, false), kolkata, true), &format!("{code} kolkata hours"));

        // Breakdown by device per UTC day, and by country over the range.
        let body = s.stats(code, &format!("bucket=day&from={}&to={}&dimensions=device", q(from), q(to))).await;
        let mut want: BTreeMap<(String, String), u64> = BTreeMap::new();
        for c in reference.select(code, from, to, false) {
            *want.entry((label(utc, false, c.ts), c.device.clone())).or_default() += 1;
        }
        let got: BTreeMap<(String, String), u64> = body["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .map(|r| ((r["day"].as_str().expect("day").to_string(), r["device"].as_str().expect("device").to_string()), r["clicks"].as_u64().expect("clicks")))
            .collect();
        assert_eq!(got, want, "{code}: clicks per (day, device)");
        let body = s.stats(code, &format!("bucket=day&from={}&to={}&dimensions=country", q(from), q(to))).await;
        let mut want: BTreeMap<String, RefRow> = BTreeMap::new();
        for c in reference.select(code, from, to, false) {
            let e = want.entry(c.country.clone()).or_default();
            e.0 += 1;
            e.1.insert(c.visitor);
        }
        let totals = body["dimension_totals"].as_array().expect("dimension_totals");
        assert_eq!(totals.len(), want.len(), "{code}: countries");
        for t in totals {
            let (n, v) = &want[t["country"].as_str().expect("country")];
            assert_eq!(t["clicks"].as_u64(), Some(*n), "{code} {t}");
            let u = t["uniques"].as_u64().expect("uniques");
            assert!(u.abs_diff(v.len() as u64) <= tolerance(v.len() as u64), "{code} {t}");
        }
        assert_eq!(body["dimension_totals_truncated"], json!(false), "{code}: every country listed");
        // A limit cuts the list to the countries with the most clicks, and says so.
        let body = s.stats(code, &format!("bucket=day&from={}&to={}&dimensions=country&limit=1", q(from), q(to))).await;
        let top = want.iter().map(|(_, (n, _))| *n).max().expect("a country");
        let totals = body["dimension_totals"].as_array().expect("dimension_totals");
        assert_eq!((totals.len(), totals[0]["clicks"].as_u64()), (1, Some(top)), "{code}: {body}");
        assert_eq!(body["dimension_totals_truncated"], json!(want.len() > 1), "{code}: {body}");
        assert_eq!(body["totals"]["clicks"].as_u64(), Some(want.values().map(|(n, _)| *n).sum()), "{code}: totals keep every country");
    }

    // The summary agrees with the per-link totals.
    let (_, _, body) = s.get(&format!("/v1/stats/summary?from={}&to={}", q(from), q(to))).await;
    let total: u64 = codes.iter().map(|c| reference.select(c, from, to, false).count() as u64).sum();
    assert_eq!(body["totals"]["clicks"].as_u64(), Some(total), "{body}");
    for l in body["top_links"].as_array().expect("top_links") {
        let code = l["code"].as_str().expect("code");
        assert_eq!(l["clicks"].as_u64(), Some(reference.select(code, from, to, false).count() as u64), "{code}");
    }
    s.stop().await;
}
