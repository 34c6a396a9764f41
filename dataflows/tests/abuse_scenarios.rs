//! Abuse detection quality (issue 7, "Tests and measurement"), through the whole pipeline in
//! event time: every attack shape of `sluice loadgen --attack` injected into realistic
//! traffic over 1,000 links must be detected within 5 s (event time) of its start with the
//! right kind, key and severity, as one anomaly that is updated while it lasts and closed
//! after it ends, with evidence that shows the attack; ten minutes of normal traffic must
//! raise no warning or critical anomaly. Precision and recall over the scenario set are
//! printed (`--no-capture`) and recorded in the crate README ("Abuse detection quality").
//!
//! Default `[abuse]` configuration throughout: the thresholds under test are the shipped
//! ones. Traffic: `abuse_traffic` (module docs there).

mod abuse_traffic;
mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use abuse_traffic::{Attack, Model, Shape};
use sluice_dataflows::config::{AbuseConfig, Levels};
use sluice_dataflows::pipeline::PipelineOutputs;
use sluice_dataflows::source::SourceRecord;
use sluice_schemas::{Anomaly, AnomalyStatus, ClickEvent, Severity};
use support::{Harness, MIN, config, dims_of};
use uuid::Uuid;

const LINKS: usize = 1000;
/// Normal clicks per second (the loadgen's default `--rate` is 200; see each test).
const RATE: f64 = 100.0;
const PARTITIONS: u32 = 4;
/// 2026-03-02T10:00:00Z.
const T0: i64 = 1_772_445_600_000;
/// The detection limit, event time.
const DETECT_MS: i64 = 5_000;
const ATTACK_MS: i64 = 30_000;

/// Runs the pipeline (2 workers, default config) over `records` with the processing clock at
/// `now`; returns every anomaly event in delivery order and the harness (for the views).
fn run(records: Vec<SourceRecord>, now: i64) -> (Vec<Anomaly>, Harness) {
    run_with(config(2), records, now)
}

/// [`run`] with `cfg` instead of the default configuration.
fn run_with(cfg: sluice_dataflows::config::PipelineConfig, records: Vec<SourceRecord>, now: i64) -> (Vec<Anomaly>, Harness) {
    let got: Arc<Mutex<Vec<Anomaly>>> = Arc::default();
    let sink = Arc::clone(&got);
    let outputs = PipelineOutputs { anomalies: Some(Arc::new(move |b: &[Anomaly]| sink.lock().expect("sink").extend_from_slice(b))), ..Default::default() };
    let h = Harness::start(cfg, PARTITIONS, now, None, outputs);
    h.feed.push_records(records);
    h.sync();
    let events = got.lock().expect("sink").clone();
    (events, h)
}

/// The events of each anomaly id, in delivery order (one `(kind, key)` is delivered by one
/// worker, in order).
fn by_id(events: &[Anomaly]) -> BTreeMap<Uuid, Vec<&Anomaly>> {
    let mut m: BTreeMap<Uuid, Vec<&Anomaly>> = BTreeMap::new();
    for e in events {
        m.entry(e.anomaly_id).or_default().push(e);
    }
    m
}

fn level(volume: u64, l: &Levels) -> Option<Severity> {
    if volume >= l.critical_min_clicks {
        Some(Severity::Critical)
    } else if volume >= l.warning_min_clicks {
        Some(Severity::Warning)
    } else if volume >= l.info_min_clicks {
        Some(Severity::Info)
    } else {
        None
    }
}

/// The severity an attack must have reached `DETECT_MS` after its start: the configured
/// volume levels of its kind applied to the attack's own clicks with `ts < start + 5 s`,
/// counted as the kind's documentation says (human clicks by the pipeline's classifier,
/// each visitor at most `per-visitor-cap` times for link kinds; all clicks of the visitor
/// for floods). The attacks dominate their link, so the critical shape (ratio, share)
/// holds; asserts that the volume is not within 15 % of a level, so the expectation does
/// not hinge on the link's own few clicks.
fn expected_severity(shape: Shape, clicks: &[ClickEvent], start: i64, cfg: &AbuseConfig) -> Severity {
    let early: Vec<&ClickEvent> = clicks.iter().filter(|c| c.ts < start + DETECT_MS).collect();
    let mut per_visitor: BTreeMap<u64, u32> = BTreeMap::new();
    let mut counted = |c: &ClickEvent| {
        let n = per_visitor.entry(c.visitor_id).or_insert(0);
        *n += 1;
        *n <= cfg.per_visitor_cap
    };
    let (volume, levels) = match shape {
        Shape::Flood => (early.len() as u64, cfg.visitor_flood.levels()),
        Shape::Burst => (early.iter().filter(|c| counted(c) && !dims_of(c).is_bot).count() as u64, cfg.click_burst.levels()),
        Shape::Bots => (early.iter().filter(|c| counted(c)).count() as u64, cfg.bot_share.levels()),
        Shape::ReferrerSpam => (early.iter().filter(|c| counted(c) && !dims_of(c).is_bot).count() as u64, cfg.referrer_spam.levels()),
        Shape::GeoShift => (early.iter().filter(|c| counted(c) && !dims_of(c).is_bot).count() as u64, cfg.geo_shift.levels()),
    };
    for t in [levels.info_min_clicks, levels.warning_min_clicks, levels.critical_min_clicks] {
        let margin = (volume as f64 - t as f64).abs() / t as f64;
        assert!(margin > 0.15, "{shape:?}: volume {volume} too close to level {t}: fix the scenario, not the detector");
    }
    level(volume, &levels).expect("the attack reaches at least info")
}

/// One seed's scenario: normal traffic for 11 minutes and the five attack shapes, one per
/// minute from minute 4 (after the 3-minute warm-up), 30 s each, on five distinct links of
/// popularity rank 30..200 (a baseline of roughly 2 to 25 clicks per minute), at 20 or 200
/// extra clicks per second (alternating by seed and shape).
struct Scenario {
    records: Vec<SourceRecord>,
    attacks: Vec<(Attack, String, Severity, Vec<ClickEvent>)>,
    end: i64,
}

fn scenario(seed: u64) -> Scenario {
    let cfg = AbuseConfig::default();
    // The last attack ends at 8:31; its clicks stay in the window until 9:31 and the
    // anomaly closes a quiet window later.
    let end = T0 + 11 * MIN;
    let mut normal_model = Model::new(LINKS, seed);
    let mut events = abuse_traffic::normal(&mut normal_model, T0, end, RATE);
    let mut attack_model = Model::new(LINKS, seed ^ 0x00a7_7ac4);
    let mut links: Vec<usize> = Vec::new();
    let mut attacks = Vec::new();
    for (i, shape) in Shape::ALL.into_iter().enumerate() {
        let link = loop {
            let l = 30 + (attack_model.uniform() * 170.0) as usize;
            if !links.contains(&l) {
                break l;
            }
        };
        links.push(link);
        let start = T0 + (4 + i as i64) * MIN + (attack_model.uniform() * 1000.0) as i64;
        let rate = if (seed + i as u64).is_multiple_of(2) { 20.0 } else { 200.0 };
        let a = Attack { shape, link, start, duration_ms: ATTACK_MS, rate };
        let (clicks, key) = abuse_traffic::attack(&mut attack_model, &a);
        let sev = expected_severity(shape, &clicks, start, &cfg);
        events.extend(clicks.iter().cloned());
        attacks.push((a, key, sev, clicks));
    }
    Scenario { records: abuse_traffic::partitioned(events, PARTITIONS), attacks, end }
}

/// The outcome of one attack.
struct Detection {
    latency_ms: Option<i64>,
    severity_at_5s: Option<Severity>,
}

/// Checks one attack's anomaly in `events`: detection latency and severity at 5 s, one
/// anomaly for the whole attack, its lifecycle and its evidence. Returns the anomaly id
/// (if detected) and the outcome.
fn check_attack(events: &[Anomaly], a: &Attack, key: &str, clicks: &[ClickEvent]) -> (Option<Uuid>, Detection) {
    let code = abuse_traffic::code(a.link);
    let mine: Vec<&Anomaly> = events.iter().filter(|e| e.kind.as_str() == a.shape.kind() && e.key == key).collect();
    let Some(open) = mine.iter().find(|e| e.status == AnomalyStatus::Open) else {
        return (None, Detection { latency_ms: None, severity_at_5s: None });
    };
    let what = format!("{:?} on {code} at {} clicks/s", a.shape, a.rate);
    let end = a.start + a.duration_ms;
    // Dedup: one anomaly over the whole attack (opened once, not re-opened while it lasts).
    let ids: std::collections::BTreeSet<Uuid> = mine.iter().filter(|e| e.window_end <= end + 60_000).map(|e| e.anomaly_id).collect();
    assert_eq!(ids.len(), 1, "{what}: one anomaly for the attack, got {mine:#?}");
    let evs: Vec<&Anomaly> = mine.iter().copied().filter(|e| e.anomaly_id == open.anomaly_id).collect();
    for (i, e) in evs.iter().enumerate() {
        assert_eq!(e.revision as usize, i, "{what}: revisions count events");
        assert_eq!(e.status == AnomalyStatus::Open, i == 0, "{what}: open first, once");
        assert_eq!(e.window_start, open.window_start, "{what}: window start fixed");
        assert_eq!(e.code.as_deref(), Some(code.as_str()), "{what}: the attacked link");
    }
    let closed: Vec<&&Anomaly> = evs.iter().filter(|e| e.status == AnomalyStatus::Closed).collect();
    assert_eq!(closed.len(), 1, "{what}: closed once after the attack: {evs:#?}");
    assert_eq!(evs.last().map(|e| e.status), Some(AnomalyStatus::Closed), "{what}: closed last");
    let last_hold = closed[0].window_end;
    assert!(
        last_hold >= end && last_hold <= end + 61_000,
        "{what}: held during the attack and until its clicks left the window, last held at {}",
        last_hold - a.start
    );
    assert!(evs.len() >= 3, "{what}: updated while it lasted: {evs:#?}");
    let latency = open.window_end - a.start;
    assert!(latency > 0, "{what}: not raised before the attack");
    let at_5s = evs.iter().rfind(|e| e.status != AnomalyStatus::Closed && e.window_end <= a.start + DETECT_MS).map(|e| e.severity);
    // Evidence of the most severe event.
    let worst = evs.iter().filter(|e| e.status != AnomalyStatus::Closed).max_by_key(|e| (e.severity, e.revision)).expect("events");
    let ev = &worst.evidence;
    let top = |v: &[sluice_schemas::Tally]| v.first().map(|t| t.value.clone()).unwrap_or_default();
    match a.shape {
        Shape::Flood => {
            assert_eq!(top(&ev.top_codes), code, "{what}: top link");
            assert_eq!(top(&ev.top_user_agents), clicks[0].user_agent, "{what}: the flooder's user agent");
            assert_eq!(ev.visitors, 1, "{what}");
            let ip = clicks[0].ip_trunc.as_deref().unwrap_or_default();
            let want_net = if ip.contains(':') { format!("{ip}/48") } else { format!("{ip}/24") };
            assert_eq!(ev.network.as_deref(), Some(want_net.as_str()), "{what}: the flooder's network");
            assert!(ev.clicks as f64 >= worst.observed && worst.observed >= f64::from(120u32), "{what}: clicks in evidence {ev:?}");
        }
        Shape::Bots => {
            assert!(ev.bot_clicks > 4 * ev.human_clicks, "{what}: bots dominate the evidence {ev:?}");
            assert!(ev.visitors as f64 >= 0.9 * ev.clicks as f64, "{what}: many visitors {ev:?}");
        }
        Shape::ReferrerSpam => assert_eq!(top(&ev.top_referrers), abuse_traffic::SPAM_DOMAIN, "{what}: {ev:?}"),
        Shape::GeoShift => assert_eq!(top(&ev.top_countries), abuse_traffic::GEO_SHIFT_COUNTRY, "{what}: {ev:?}"),
        Shape::Burst => {
            assert!(ev.human_clicks >= 30 && ev.visitors as f64 >= 0.5 * ev.clicks as f64, "{what}: many human visitors {ev:?}");
            assert!(worst.observed > 3.0 * worst.expected, "{what}: observed {} vs expected {}", worst.observed, worst.expected);
        }
    }
    if a.shape != Shape::Flood {
        assert!(!ev.top_countries.is_empty() && !ev.top_user_agents.is_empty() && ev.baseline_minutes >= 3, "{what}: evidence lists {ev:?}");
    }
    (Some(open.anomaly_id), Detection { latency_ms: Some(latency), severity_at_5s: at_5s })
}

/// Anomaly ids whose highest severity is warning or critical.
fn alarming(events: &[Anomaly]) -> BTreeMap<Uuid, &Anomaly> {
    by_id(events)
        .into_iter()
        .filter_map(|(id, evs)| {
            let worst = *evs.iter().max_by_key(|e| e.severity)?;
            (worst.severity >= Severity::Warning).then_some((id, worst))
        })
        .collect()
}

#[test]
fn attacks_are_detected_within_5_s_with_kind_key_and_severity_and_nothing_else_alarms() {
    const SEEDS: [u64; 4] = [1, 2, 3, 4];
    let (mut tp, mut fp, mut missed, mut wrong_severity, mut late) = (0usize, 0usize, 0usize, 0usize, 0usize);
    let mut attacks_total = 0usize;
    let mut info_other = 0usize;
    let mut latencies: BTreeMap<Shape, Vec<i64>> = BTreeMap::new();
    let mut failures: Vec<String> = Vec::new();
    let started = std::time::Instant::now();
    let mut events_total = 0usize;
    for seed in SEEDS {
        let sc = scenario(seed);
        events_total += sc.records.len();
        let (events, _h) = run(sc.records, sc.end);
        let mut matched: std::collections::BTreeSet<Uuid> = Default::default();
        for (a, key, want, clicks) in &sc.attacks {
            attacks_total += 1;
            let (id, d) = check_attack(&events, a, key, clicks);
            matched.extend(id);
            let what = format!("seed {seed}: {:?} on {} ({key}) at {}/s", a.shape, abuse_traffic::code(a.link), a.rate);
            match d.latency_ms {
                None => {
                    missed += 1;
                    failures.push(format!("{what}: not detected"));
                }
                Some(l) if l > DETECT_MS => {
                    late += 1;
                    failures.push(format!("{what}: detected after {l} ms"));
                }
                Some(l) => {
                    latencies.entry(a.shape).or_default().push(l);
                    if d.severity_at_5s == Some(*want) {
                        tp += 1;
                    } else {
                        wrong_severity += 1;
                        failures.push(format!("{what}: severity at 5 s {:?}, want {want:?}", d.severity_at_5s));
                    }
                }
            }
        }
        for (id, worst) in alarming(&events) {
            if !matched.contains(&id) {
                fp += 1;
                failures.push(format!("seed {seed}: false {} {} on {}: {}", worst.severity.as_str(), worst.kind.as_str(), worst.key, worst.summary));
            }
        }
        info_other += by_id(&events).keys().filter(|id| !matched.contains(id) && !alarming(&events).contains_key(id)).count();
    }
    let recall = tp as f64 / attacks_total as f64;
    let precision = if tp + fp > 0 { tp as f64 / (tp + fp) as f64 } else { 0.0 };
    println!("abuse detection quality: {attacks_total} attacks over {} seeds, {events_total} events, {:.1} s", SEEDS.len(), started.elapsed().as_secs_f64());
    println!(
        "  recall {recall:.3} ({tp} detected with kind, key and severity within {DETECT_MS} ms; {missed} missed, {late} late, {wrong_severity} wrong severity)"
    );
    println!("  precision {precision:.3} ({fp} warning/critical anomalies not caused by an attack; {info_other} info anomalies)");
    for (shape, l) in &latencies {
        println!("  {:<14} detection latency (event time) ms: min {} max {}", shape.kind(), l.iter().min().unwrap_or(&0), l.iter().max().unwrap_or(&0));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!((tp, fp), (attacks_total, 0));
}

#[test]
fn ten_minutes_of_normal_traffic_over_1000_links_raise_no_warning_or_critical() {
    // The loadgen's default rate (200 clicks/s, 120,000 clicks in 10 minutes).
    let mut m = Model::new(LINKS, 42);
    let end = T0 + 10 * MIN;
    let events = abuse_traffic::normal(&mut m, T0, end, 200.0);
    let n = events.len();
    let (anomalies, h) = run(abuse_traffic::partitioned(events, PARTITIONS), end);
    let alarms: Vec<String> = alarming(&anomalies).values().map(|a| format!("{} {}: {}", a.severity.as_str(), a.kind.as_str(), a.summary)).collect();
    let infos = by_id(&anomalies).len() - alarms.len();
    println!("normal traffic: {n} clicks over {LINKS} links in 10 min: {} warning/critical, {infos} info anomalies", alarms.len());
    for a in anomalies.iter().filter(|a| a.status == AnomalyStatus::Open) {
        println!("  opened: {}", a.summary);
    }
    assert!(alarms.is_empty(), "false alarms:\n{}", alarms.join("\n"));
    // The detectors did see the traffic: every click went through (views agree).
    let stats = h.handle.stats();
    assert_eq!(stats.received as usize, n);
}

/// Attack of session 51: with `warmup = "1m"` (accepted; 3 min is the default) the baseline
/// kinds judged links 30 s after the first click against a baseline of no minute at all, so
/// steady traffic opened `click_burst` on every busy link, whose baseline then stayed frozen
/// at zero while it was open. A link is now judged only once its baseline holds two minutes:
/// six minutes of the same normal traffic raise no warning or critical.
#[test]
fn a_short_warm_up_does_not_judge_links_without_a_baseline() {
    let mut cfg = config(2);
    cfg.abuse.warmup = std::time::Duration::from_secs(60);
    let mut m = Model::new(LINKS, 42);
    let end = T0 + 6 * MIN;
    let events = abuse_traffic::normal(&mut m, T0, end, 200.0);
    let (anomalies, _h) = run_with(cfg, abuse_traffic::partitioned(events, PARTITIONS), end);
    let alarms: Vec<String> = alarming(&anomalies).values().map(|a| format!("{} {}: {}", a.severity.as_str(), a.kind.as_str(), a.summary)).collect();
    assert!(alarms.is_empty(), "false alarms:\n{}", alarms.join("\n"));
}

/// A reviewer's report (issue 7): on a server whose detectors had warmed up, 50 links created
/// and driven with normal traffic (Zipf, 200 clicks/s) each opened a `click_burst` warning —
/// their zero history read as a baseline. A link first seen after the warm-up now has its own
/// history and warm-up: normal traffic on new links raises nothing, while a burst on an
/// established link is still detected with its kind, key and severity.
#[test]
fn new_links_after_the_warm_up_raise_nothing_while_a_burst_on_an_established_link_alarms() {
    let cfg = AbuseConfig::default();
    let mut m = Model::new(LINKS, 11);
    let end = T0 + 9 * MIN;
    let mut events = abuse_traffic::normal(&mut m, T0, end, RATE);
    // 50 links first clicked at minute 4 (the detectors' warm-up ended at minute 3); their
    // own warm-up ends at minute 7, then they are judged for two more minutes.
    let new_start = T0 + 4 * MIN;
    let mut fresh_model = Model::new(50, 0xf2e5);
    let mut fresh = abuse_traffic::normal(&mut fresh_model, new_start, end, 200.0);
    for e in &mut fresh {
        e.code = format!("new-{}", e.code);
    }
    // Precondition: the busiest new link's first window holds far more counted human clicks
    // than click_burst's warning level — against a zero baseline that was a warning at least.
    let top = format!("new-{}", abuse_traffic::code(0));
    let mut per_visitor: BTreeMap<u64, u32> = BTreeMap::new();
    let first_window = fresh
        .iter()
        .filter(|c| c.code == top && c.ts < new_start + MIN && !dims_of(c).is_bot)
        .filter(|c| {
            let n = per_visitor.entry(c.visitor_id).or_insert(0);
            *n += 1;
            *n <= cfg.per_visitor_cap
        })
        .count() as u64;
    assert!(first_window >= 4 * cfg.click_burst.warning_min_clicks, "scenario too weak: {first_window} human clicks");
    events.extend(fresh);
    let mut attack_model = Model::new(LINKS, 0x00a7_7ac4);
    let a = Attack { shape: Shape::Burst, link: 60, start: T0 + 5 * MIN + 321, duration_ms: ATTACK_MS, rate: 200.0 };
    let (clicks, key) = abuse_traffic::attack(&mut attack_model, &a);
    let want = expected_severity(Shape::Burst, &clicks, a.start, &cfg);
    events.extend(clicks.iter().cloned());
    let (anomalies, _h) = run(abuse_traffic::partitioned(events, PARTITIONS), end);
    let (id, d) = check_attack(&anomalies, &a, &key, &clicks);
    let id = id.expect("the burst on the established link is detected");
    assert!(d.latency_ms.is_some_and(|l| l <= DETECT_MS), "detected within 5 s: {:?}", d.latency_ms);
    assert_eq!(d.severity_at_5s, Some(want));
    let false_alarms: Vec<String> = alarming(&anomalies)
        .into_iter()
        .filter(|(i, _)| *i != id)
        .map(|(_, a)| format!("{} {} on {}: {}", a.severity.as_str(), a.kind.as_str(), a.key, a.summary))
        .collect();
    assert!(false_alarms.is_empty(), "false alarms:\n{}", false_alarms.join("\n"));
    let on_new: Vec<&str> = anomalies
        .iter()
        .filter(|e| e.code.as_deref().is_some_and(|c| c.starts_with("new-")) && e.kind.as_str() != "bot_share")
        .map(|e| e.summary.as_str())
        .collect();
    assert!(on_new.is_empty(), "baseline anomalies on new links: {on_new:#?}");
}

/// Attack of session 49: a link shared on social media gets link-preview and crawler
/// requests from its first click on, beside ordinary human traffic. The `bot_share` anomaly
/// opens at once (it needs no history) and freezes the link's baseline; the baseline kinds
/// must not then judge the link's steady human traffic against the zero baseline its
/// warm-up never learned (a critical `click_burst`, which auto-actions turn into a disabled
/// link). A control link with the same human traffic and no bots raises nothing either.
#[test]
fn bots_from_a_new_links_first_click_do_not_turn_its_human_traffic_into_a_burst() {
    let mut m = Model::new(LINKS, 0x5e55_1049);
    let end = T0 + 14 * MIN;
    let mut events = abuse_traffic::normal(&mut m, T0, end, RATE);
    // Both links first clicked at minute 4, after the detectors' warm-up.
    let start = T0 + 4 * MIN;
    let mut side = Model::new(LINKS, 0xb075);
    for (code, bots) in [("shared-link", true), ("control-link", false)] {
        let mut t = start;
        let mut i = 0u64;
        while t < end {
            // 240 human clicks a minute (each from a new visitor) ...
            let ua = side.human_ua();
            let v = side.new_visitor(ua, false, None);
            let r = side.referrer(false);
            let id = side.id();
            events.push(abuse_traffic::click(id, code, t, &v, r));
            // ... and, on the shared link, 300 bot clicks a minute.
            if bots {
                for _ in 0..(if i % 4 == 3 { 2 } else { 1 }) {
                    let ua = side.bot_ua();
                    let v = side.new_visitor(ua, true, None);
                    let id = side.id();
                    events.push(abuse_traffic::click(id, code, t + 7, &v, None));
                }
            }
            t += 250;
            i += 1;
        }
    }
    let (anomalies, _h) = run(abuse_traffic::partitioned(events, PARTITIONS), end);
    let on = |code: &str| -> Vec<String> {
        anomalies
            .iter()
            .filter(|e| e.code.as_deref() == Some(code))
            .map(|e| format!("{} {} {}: {}", e.kind.as_str(), e.status.as_str(), e.severity.as_str(), e.summary))
            .collect()
    };
    let shared = on("shared-link");
    assert!(shared.iter().any(|e| e.starts_with("bot_share open")), "the bot surge is reported: {shared:#?}");
    assert!(shared.iter().all(|e| e.starts_with("bot_share")), "only bot_share on the shared link: {shared:#?}");
    assert_eq!(on("control-link"), Vec::<String>::new());
}
