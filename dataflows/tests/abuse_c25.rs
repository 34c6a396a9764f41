//! Case C25 (`shared/cases/README.md`), steps 4 to 6, at the dataflow level: click bursts
//! against a link from one client and from many, and a control that must not be flagged,
//! inside realistic background traffic over 1,000 links, in event time, with the default
//! `[abuse]` configuration. "Flagged within F": F is the 5 s of event time after the
//! burst's first click (the pipeline adds only its processing delay to that).
//!
//! The case also asks that the default `clicks` of the period not silently report the 300
//! clicks of one client as 300 human clicks: the flood cap (`[abuse.flood-cap]`, 30 human
//! clicks per visitor, link and UTC minute by default) counts the first 30 of each minute as
//! human and flags the rest, which are counted with the bot clicks (`include_bots=true`);
//! the `visitor_flood` anomaly of the period names the link and counts the clicks
//! (`evidence.clicks`). The expected split is computed here from the events' timestamps.

mod abuse_traffic;
mod support;

use std::sync::{Arc, Mutex};

use abuse_traffic::{Model, Visitor, click};
use sluice_dataflows::pipeline::PipelineOutputs;
use sluice_dataflows::views::{Bucket, StatsQuery};
use sluice_schemas::anomaly::{link_key, visitor_key};
use sluice_schemas::{Anomaly, AnomalyKind, AnomalyStatus, ClickEvent, Severity};
use support::{BROWSER_UA, Harness, MIN, assert_uniques, config, dims_of};

/// 2026-03-02T10:00:00Z.
const T0: i64 = 1_772_445_600_000;
const F_MS: i64 = 5_000;
const SINGLE: &str = "c25single";
const DISTRIBUTED: &str = "c25dist";
const CONTROL: &str = "c25control";
const SINGLE_AT: i64 = T0 + 5 * MIN + 250;
const DIST_AT: i64 = T0 + 8 * MIN + 700;
const END: i64 = T0 + 14 * MIN;
/// The single-source client.
const FLOODER: u64 = 0x00c2_5f10_0d00_0001;

struct Run {
    anomalies: Vec<Anomaly>,
    h: Harness,
    control_visitors: u64,
    /// Human clicks the flood cap leaves of the single-source burst.
    flood_human: u64,
}

fn run_case() -> Run {
    let mut m = Model::new(1000, 25);
    // Background: 20 clicks/s over 1,000 links for 14 minutes.
    let mut events: Vec<ClickEvent> = abuse_traffic::normal(&mut m, T0, END, 20.0);
    let mut id = 1u128 << 100;
    let mut next_id = || {
        id += 1;
        id
    };
    // Step 4: 300 clicks from one IP and UA within 10 s (30 per second).
    let flooder = Visitor { id: FLOODER, ip: "81.2.69.0".into(), ua: BROWSER_UA, bot: false };
    let mut flood_minutes = std::collections::BTreeMap::<i64, u64>::new();
    for i in 0..300 {
        let ts = SINGLE_AT + i * 10_000 / 300;
        *flood_minutes.entry(ts.div_euclid(MIN)).or_default() += 1;
        events.push(click(next_id(), SINGLE, ts, &flooder, None));
    }
    // Human clicks of the flood: at most the cap per UTC minute (naive recomputation).
    let cap = u64::from(sluice_dataflows::config::FloodCapConfig::default().clicks_per_minute);
    let flood_human: u64 = flood_minutes.values().map(|&n| n.min(cap)).sum();
    // Step 5: a link with a baseline under 1 click per minute (one click every 2 minutes
    // from minute 0), then 300 clicks from 300 client IPs (distinct /24 networks) with one UA
    // within 10 s.
    for k in 0..7 {
        let ua = m.human_ua();
        let v = m.new_visitor(ua, false, None);
        events.push(click(next_id(), DISTRIBUTED, T0 + k * 2 * MIN + 30_000, &v, Some("https://www.google.com/")));
    }
    let mut nets = std::collections::BTreeSet::new();
    let mut i = 0;
    while nets.len() < 300 {
        let v = m.new_visitor(BROWSER_UA, false, None);
        if v.ip.contains(':') || !nets.insert(v.ip.clone()) {
            continue;
        }
        events.push(click(next_id(), DISTRIBUTED, DIST_AT + i * 10_000 / 300, &v, None));
        i += 1;
    }
    // Step 6: 60 clicks from 60 IPs with varied real-browser UAs over 10 minutes (every 10 s;
    // UAs the pipeline's classifier calls human, as a real browser is).
    let mut control_visitors = std::collections::BTreeSet::new();
    let mut k = 0;
    while k < 60 {
        let ua = m.human_ua();
        let v = m.new_visitor(ua, false, None);
        let e = click(next_id(), CONTROL, T0 + 3 * MIN + k * 10_000, &v, m.referrer(false));
        if dims_of(&e).is_bot {
            continue;
        }
        control_visitors.insert(v.id);
        events.push(e);
        k += 1;
    }
    let got: Arc<Mutex<Vec<Anomaly>>> = Arc::default();
    let sink = Arc::clone(&got);
    let outputs = PipelineOutputs { anomalies: Some(Arc::new(move |b: &[Anomaly]| sink.lock().expect("sink").extend_from_slice(b))), ..Default::default() };
    let h = Harness::start(config(2), 4, END, None, outputs);
    h.feed.push_records(abuse_traffic::partitioned(events, 4));
    h.sync();
    let anomalies = got.lock().expect("sink").clone();
    Run { anomalies, h, control_visitors: control_visitors.len() as u64, flood_human }
}

/// The events of the first anomaly of `kind` on `key`.
fn incident<'a>(r: &'a Run, kind: AnomalyKind, key: &str) -> Vec<&'a Anomaly> {
    let Some(open) = r.anomalies.iter().find(|a| a.kind == kind && a.key == key && a.status == AnomalyStatus::Open) else { return Vec::new() };
    r.anomalies.iter().filter(|a| a.anomaly_id == open.anomaly_id).collect()
}

/// Severity reached by `t` (the last non-closing event with `window_end <= t`).
fn severity_by(evs: &[&Anomaly], t: i64) -> Option<Severity> {
    evs.iter().filter(|e| e.status != AnomalyStatus::Closed && e.window_end <= t).map(|e| e.severity).max()
}

fn stats(r: &Run, code: &str) -> (u64, u64) {
    let (clicks, uniques, _) = stats_with_bots(r, code);
    (clicks, uniques)
}

/// Default (human) clicks and uniques, and clicks with bots and flagged clicks included.
fn stats_with_bots(r: &Run, code: &str) -> (u64, u64, u64) {
    let mut q = StatsQuery::new(code, T0, END, Bucket::Hour);
    let s = r.h.handle.views().query(&q).expect("stats query");
    q.include_bots = true;
    let all = r.h.handle.views().query(&q).expect("stats query");
    (s.totals.clicks, s.totals.uniques, all.totals.clicks)
}

#[test]
fn c25_bursts_from_one_client_and_from_300_are_flagged_within_f_and_the_control_is_not() {
    let r = run_case();

    // Step 4: one client, 300 clicks in 10 s → visitor_flood on that client, naming the link.
    let flood = incident(&r, AnomalyKind::VisitorFlood, &visitor_key(FLOODER));
    assert!(
        !flood.is_empty(),
        "step 4: the single-source burst is flagged: {:#?}",
        r.anomalies.iter().filter(|a| a.code.as_deref() == Some(SINGLE)).collect::<Vec<_>>()
    );
    let open = flood[0];
    assert!(open.window_end > SINGLE_AT && open.window_end <= SINGLE_AT + F_MS, "step 4: flagged {} ms after the first click", open.window_end - SINGLE_AT);
    assert_eq!(severity_by(&flood, SINGLE_AT + F_MS), Some(Severity::Critical), "step 4: 150 clicks of one client in 5 s are critical (levels 30/60/120)");
    assert_eq!(open.code.as_deref(), Some(SINGLE));
    let worst = flood.iter().filter(|e| e.status != AnomalyStatus::Closed).max_by_key(|e| e.revision).expect("events");
    let top_code = worst.evidence.top_codes.first().expect("top codes");
    assert_eq!(top_code.value, SINGLE);
    assert!(
        top_code.count <= worst.evidence.clicks && top_code.count + 15 >= worst.evidence.clicks,
        "top code counts the flood's clicks: {:?}",
        worst.evidence
    );
    assert_eq!(worst.evidence.top_user_agents.first().map(|t| t.value.as_str()), Some(BROWSER_UA));
    assert_eq!(worst.evidence.network.as_deref(), Some("81.2.69.0/24"));
    assert_eq!(flood.last().map(|e| e.status), Some(AnomalyStatus::Closed), "step 4: the flood closes after it ends");
    let flagged = flood.iter().map(|e| e.observed).fold(0.0, f64::max);
    assert_eq!(flagged, 300.0, "the flagged count: all 300 clicks were in one window");
    // The link's own detectors count the client once (per-visitor cap), so the one client
    // is not also reported as a burst of the link.
    assert!(incident(&r, AnomalyKind::ClickBurst, &link_key(SINGLE)).is_empty(), "one client is a flood, not a burst of the link");
    let (clicks, uniques, with_flagged) = stats_with_bots(&r, SINGLE);
    assert_eq!(uniques, 1, "step 4: uniques = 1");
    // The default `clicks` leaves the flagged part of the burst out (module docs): the 300
    // clicks fall in one UTC minute, so 30 human clicks and 270 flagged ones.
    assert_eq!(r.flood_human, 30, "the burst lies within one minute");
    assert_eq!(clicks, r.flood_human, "step 4: only the capped part is human");
    assert_eq!(with_flagged, 300, "step 4: the flagged clicks are reported with the bots");
    let minute = StatsQuery { include_bots: false, ..StatsQuery::new(SINGLE, T0, END, Bucket::Minute) };
    let rows: Vec<(i64, u64)> = r.h.handle.views().query(&minute).expect("minutes").rows.iter().map(|x| (x.bucket_start_ms, x.clicks)).collect();
    assert_eq!(rows, vec![(SINGLE_AT.div_euclid(MIN) * MIN, 30)]);

    // Step 5: 300 IPs, one UA, 10 s, on a link with a baseline under 1 click per minute.
    let burst = incident(&r, AnomalyKind::ClickBurst, &link_key(DISTRIBUTED));
    assert!(
        !burst.is_empty(),
        "step 5: the distributed burst is flagged: {:#?}",
        r.anomalies.iter().filter(|a| a.code.as_deref() == Some(DISTRIBUTED)).collect::<Vec<_>>()
    );
    let open = burst[0];
    assert!(open.window_end > DIST_AT && open.window_end <= DIST_AT + F_MS, "step 5: flagged {} ms after the first click", open.window_end - DIST_AT);
    assert!(open.expected < 1.0, "step 5: baseline under 1 click per minute, got {}", open.expected);
    assert_eq!(severity_by(&burst, DIST_AT + F_MS), Some(Severity::Warning), "step 5: 150 human clicks in 5 s (warning from 30, critical from 200)");
    assert_eq!(severity_by(&burst, DIST_AT + 10_000), Some(Severity::Critical), "step 5: all 300 (critical from 200)");
    let last = burst.iter().rfind(|e| e.status != AnomalyStatus::Closed).expect("events");
    assert_eq!(last.evidence.top_user_agents.first().map(|t| t.value.as_str()), Some("Chrome"), "one browser family");
    assert!(last.evidence.clicks >= 200 && last.evidence.visitors == last.evidence.clicks, "one click per visitor: {:?}", last.evidence);
    assert_eq!(burst.last().map(|e| e.status), Some(AnomalyStatus::Closed));
    // No single client or network of the 300 stands out.
    assert!(!r.anomalies.iter().any(|a| a.kind == AnomalyKind::VisitorFlood && a.code.as_deref() == Some(DISTRIBUTED)));

    // Step 6: the control is not flagged and counts 60 clicks, 60 uniques.
    let control: Vec<&Anomaly> = r.anomalies.iter().filter(|a| a.code.as_deref() == Some(CONTROL) || a.key == link_key(CONTROL)).collect();
    assert!(control.is_empty(), "step 6: the control is not flagged: {control:#?}");
    let (clicks, uniques) = stats(&r, CONTROL);
    assert_eq!(clicks, 60, "step 6: clicks = 60");
    assert_eq!(r.control_visitors, 60);
    assert_uniques(uniques, 60, "step 6: uniques");

    // Nothing else in the background traffic reached warning.
    let others: Vec<String> = r
        .anomalies
        .iter()
        .filter(|a| a.severity >= Severity::Warning && a.key != visitor_key(FLOODER) && a.key != link_key(DISTRIBUTED))
        .map(|a| a.summary.clone())
        .collect();
    assert!(others.is_empty(), "no other warning: {others:#?}");
}
