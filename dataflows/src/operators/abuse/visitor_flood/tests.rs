use sluice_schemas::{AnomalyStatus, ClickEvent, Severity};
use timely::dataflow::operators::capture::Extract;
use timely::dataflow::operators::{Capture, ToStream};

use super::*;
use crate::records::GatedClick;

fn rec(key: FloodKey, ts: i64, visitor: u64, code: &str) -> FloodRecord {
    FloodRecord { key, ts, visitor_id: visitor, network: None, code: DimStr::new(code), user_agent: Arc::from("curl/8.5.0") }
}

fn report(w: i64) -> WatermarkReport {
    WatermarkReport { partition: 0, watermark_ms: w, idle: false, first_ms: i64::MIN }
}

#[test]
fn networks_parse_and_print_as_cidr() {
    assert_eq!(Network::parse("203.0.113.0").map(|n| n.cidr()).as_deref(), Some("203.0.113.0/24"));
    assert_eq!(Network::parse("203.0.113.77").map(|n| n.cidr()).as_deref(), Some("203.0.113.0/24"));
    assert_eq!(Network::parse("2001:db8:1::").map(|n| n.cidr()).as_deref(), Some("2001:db8:1::/48"));
    assert_eq!(Network::parse("not-an-ip"), None);
    assert_eq!(FloodKey::Visitor(255).anomaly_key(), "visitor:00000000000000ff");
    assert_ne!(FloodKey::Visitor(1).route(), FloodKey::Network(Network::V4([0, 0, 1])).route());
}

/// Case C25 step 4 at the operator level: 300 clicks from one visitor within 10 s.
#[test]
fn one_visitor_300_clicks_in_10_s_escalates_within_4_s_and_closes_after_the_quiet_window() {
    let cfg = AbuseConfig::default();
    let mut det = FloodDetector::new(&cfg);
    let t0 = 1_700_000_000_000 - 1_700_000_000_000 % 60_000;
    let mut out = Vec::new();
    let v = FloodKey::Visitor(42);
    // background: 50 other visitors, one click every 4 s each (15 per window: below info)
    for s in 0..200i64 {
        let mut recs: Vec<FloodRecord> =
            (0..50).filter(|i| (s + i) % 4 == 0).map(|i| rec(FloodKey::Visitor(1000 + i as u64), t0 + s * 1000 + 10, 1000 + i as u64, "bg")).collect();
        if (10..20).contains(&s) {
            recs.extend((0..30).map(|k| rec(v, t0 + s * 1000 + k * 33, 42, "L")));
        }
        det.push(&mut recs);
        det.advance(&[report(t0 + (s + 1) * 1000)], 0, &mut out);
    }
    let events: Vec<(AnomalyStatus, Severity, i64, f64)> = out.iter().map(|a| (a.status, a.severity, a.window_end - t0, a.observed)).collect();
    assert_eq!(
        events,
        vec![
            (AnomalyStatus::Open, Severity::Info, 11_000, 30.0), // 30 clicks after 1 s
            (AnomalyStatus::Updated, Severity::Warning, 12_000, 60.0),
            (AnomalyStatus::Updated, Severity::Critical, 14_000, 120.0), // 4 s after the start
            (AnomalyStatus::Updated, Severity::Critical, 24_000, 300.0), // rate-limited: 10 s after the last event
            (AnomalyStatus::Updated, Severity::Critical, 73_000, 210.0), // leaving the window: moved by >= 25 % (300 → 210)
            (AnomalyStatus::Closed, Severity::Critical, 79_000, 210.0),  // last held at 79 s (30 clicks), closed 60 s later
        ]
    );
    assert_eq!(out[5].detected_at, 0);
    assert_eq!(out.iter().map(|a| a.revision).collect::<Vec<_>>(), vec![0, 1, 2, 3, 4, 5]);
    assert!(out.iter().all(|a| a.key == "visitor:000000000000002a" && a.code.as_deref() == Some("L")));
    assert_eq!(out[3].evidence.top_codes, vec![sluice_schemas::Tally { value: "L".into(), count: 286 }], "tracked from the 15th click");
    // Leaving the window, tracked clicks leave the evidence lists too: at 73 s the untracked
    // first 14 clicks are gone, so the lists count exactly the window's clicks.
    let e4 = &out[4].evidence;
    assert_eq!(e4.clicks, 210);
    assert_eq!(e4.top_codes, vec![sluice_schemas::Tally { value: "L".into(), count: 210 }]);
    assert_eq!(e4.top_user_agents, vec![sluice_schemas::Tally { value: "curl/8.5.0".into(), count: 210 }]);
    assert_eq!(det.tracked_keys(), 50, "only the background visitors are left");
}

#[test]
fn a_network_counts_each_visitor_at_most_the_cap() {
    let cfg = AbuseConfig::default();
    let mut det = FloodDetector::new(&cfg);
    let net = FloodKey::Network(Network::V4([198, 51, 100]));
    let t0 = 6_000_000;
    let mut out = Vec::new();
    det.advance(&[report(t0)], 0, &mut out);
    // one visitor with 500 clicks: capped at 10, never a network flood
    let mut recs: Vec<FloodRecord> = (0..500).map(|i| rec(net, t0 + i, 7, "L")).collect();
    det.push(&mut recs);
    det.advance(&[report(t0 + 1000)], 0, &mut out);
    assert!(out.is_empty(), "{out:?}");
    // 13 more visitors with 10 clicks each: 10 + 130 = 140 capped clicks → warning
    let mut recs: Vec<FloodRecord> = (0..130).map(|i| rec(net, t0 + 1000 + i, 100 + i as u64 % 13, "L")).collect();
    det.push(&mut recs);
    det.advance(&[report(t0 + 2000)], 0, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].severity, out[0].observed, out[0].key.as_str()), (Severity::Warning, 140.0, "network:198.51.100.0/24"));
    assert_eq!((out[0].evidence.clicks, out[0].evidence.visitors), (630, 14));
}

#[test]
fn the_tap_passes_clicks_through_and_counts_each_under_its_visitor_and_known_network() {
    let click = |id: u128, ip: Option<&str>| GatedClick {
        partition: 0,
        offset: id as u64,
        backfill: false,
        event: ClickEvent {
            event_id: uuid::Uuid::from_u128(id),
            code: "ab".into(),
            ts: 1_000,
            ip_trunc: ip.map(str::to_string),
            visitor_id: 7,
            user_agent: "UA".into(),
            referrer: None,
            accept_language: None,
            edge_region: None,
        },
    };
    let input = vec![click(1, Some("203.0.113.0")), click(2, None), click(3, Some("garbage"))];
    let expected = input.clone();
    let (pass, floods) = timely::example(move |scope| {
        let (pass, floods) = input.to_stream(scope).container::<Vec<_>>().tap_flood_records();
        (pass.capture(), floods.capture())
    });
    let pass: Vec<GatedClick> = pass.extract().into_iter().flat_map(|(_, v)| v).collect();
    assert_eq!(pass, expected);
    let mut keys: Vec<FloodKey> = floods
        .try_iter()
        .filter_map(|event| match event {
            timely::dataflow::operators::capture::Event::Messages(_, records) => Some(records),
            timely::dataflow::operators::capture::Event::Progress(_) => None,
        })
        .flatten()
        .flat_map(|c: FloodClick| c.keys().collect::<Vec<_>>())
        .collect();
    keys.sort_by_key(|k| format!("{k:?}"));
    let mut expected_keys = vec![FloodKey::Network(Network::V4([203, 0, 113])), FloodKey::Visitor(7), FloodKey::Visitor(7), FloodKey::Visitor(7)];
    expected_keys.sort_by_key(|k| format!("{k:?}"));
    assert_eq!(keys, expected_keys);
}

#[test]
fn flood_keys_read_back_from_anomaly_keys() {
    for k in
        [FloodKey::Visitor(0), FloodKey::Visitor(u64::MAX), FloodKey::Network(Network::V4([203, 0, 113])), FloodKey::Network(Network::V6([0x2001, 0xdb8, 1]))]
    {
        assert_eq!(FloodKey::from_anomaly_key(&k.anomaly_key()), Some(k));
    }
    for bad in ["visitor:ff", "visitor:000000000000000g", "network:203.0.113.0/48", "network:203.0.113.7/24", "link:ab", "network:nope/24", ""] {
        assert_eq!(FloodKey::from_anomaly_key(bad), None, "{bad}");
    }
}

/// A restored detector takes over the open anomalies of its keys: a quiet one closes a quiet
/// window after its `window_end`, a flood that goes on updates the same anomaly (next
/// revisions) and closes normally; keys another worker owns are left to it.
#[test]
fn adopted_anomalies_close_after_the_quiet_window_or_go_on_with_the_same_id() {
    use AnomalyStatus::*;
    let cfg = AbuseConfig::default();
    let mut det = FloodDetector::new(&cfg);
    let t0 = 1_700_000_000_000 - 1_700_000_000_000 % 60_000;
    let stored = |key: FloodKey| {
        let key = key.anomaly_key();
        let window_start = t0 - 55_000;
        Anomaly {
            anomaly_id: sluice_schemas::anomaly::anomaly_id(AnomalyKind::VisitorFlood, &key, window_start),
            revision: 2,
            status: Updated,
            kind: AnomalyKind::VisitorFlood,
            key,
            severity: Severity::Critical,
            code: Some("L".into()),
            org: None,
            window_start,
            window_end: t0 + 5_000,
            observed: 100.0,
            expected: 60.0,
            score: 100.0 / 60.0,
            summary: "s".into(),
            evidence: Evidence::default(),
            detected_at: 1,
        }
    };
    let (going, quiet, other) = (FloodKey::Visitor(42), FloodKey::Visitor(43), FloodKey::Visitor(44));
    let store = vec![stored(going), stored(quiet), stored(other)];
    let owned = [going.route(), quiet.route()];
    assert_eq!(det.adopt(&store, &|h| owned.contains(&h)), 2);
    assert_eq!(det.tracked_keys(), 2);
    let mut out = Vec::new();
    // 150 clicks of `going` within 1.5 s, at 1 s.
    let mut recs: Vec<FloodRecord> = (0..150).map(|i| rec(going, t0 + 1_000 + i * 10, 42, "L")).collect();
    for s in 1..200i64 {
        det.push(&mut recs);
        det.advance(&[report(t0 + s * 1000)], 7, &mut out);
    }
    let got: Vec<(String, AnomalyStatus, u32, Severity, i64, f64)> =
        out.iter().map(|a| (a.key.clone(), a.status, a.revision, a.severity, a.window_end - t0, a.observed)).collect();
    let (g, q) = (going.anomaly_key(), quiet.anomaly_key());
    assert_eq!(
        got,
        vec![
            // Due 10 s after the adopted event (window_end 5 s), moved 50 % from 100.
            (g.clone(), Updated, 3, Severity::Critical, 15_000, 150.0),
            // The first second's 100 clicks left the window: info, rate limit passed.
            (g.clone(), Updated, 4, Severity::Info, 62_000, 50.0),
            // At tick 65 s, a quiet window after the adopted window_end.
            (q.clone(), Closed, 3, Severity::Critical, 5_000, 100.0),
            // At tick 122 s, a quiet window after the last tick that held.
            (g.clone(), Closed, 5, Severity::Info, 62_000, 50.0),
        ]
    );
    assert!(out.iter().all(|a| a.anomaly_id == stored(if a.key == g { going } else { quiet }).anomaly_id && a.window_start == t0 - 55_000));
    assert_eq!(out[2], Anomaly { revision: 3, status: Closed, detected_at: 7, ..stored(quiet) });
    assert_eq!(det.tracked_keys(), 0);
}

/// One record per click (counted under both keys) and one per click and key (the records
/// the tap emitted before, and what it emits for keys owned by different workers) give the
/// same events: every key folds the same clicks in the same order. A flooding visitor, a
/// flooding network of many visitors, and background clicks with ties on time and visitor.
#[test]
fn clicks_counted_under_both_keys_give_the_events_of_per_key_records() {
    let cfg = AbuseConfig::default();
    let (mut by_click, mut by_key) = (FloodDetector::new(&cfg), FloodDetector::new(&cfg));
    let t0 = 1_700_000_000_000 - 1_700_000_000_000 % 60_000;
    let (mut out_click, mut out_key) = (Vec::new(), Vec::new());
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for s in 0..150i64 {
        let mut clicks = Vec::new();
        for _ in 0..60 {
            let r = next();
            let visitor = match r % 10 {
                0..=3 => 42,                    // the flooding visitor
                4..=6 => 1_000 + (r >> 8) % 40, // many visitors of one network
                _ => 5_000 + (r >> 8) % 500,
            };
            let network = match visitor {
                1_000..=1_039 => Some(Network::V4([198, 51, 100])),
                5_000..=5_099 => None,
                _ => Some(Network::V4([10, 0, (visitor % 7) as u8])),
            };
            let ts = t0 + s * 1_000 + (r >> 20) as i64 % 1_500 - 400; // late and early ones
            let code = ["L", "M", "N"][((r >> 40) % 3) as usize];
            let ua = ["curl/8.5.0", "Mozilla/5.0"][((r >> 44) % 2) as usize];
            clicks.push(FloodClick::new(ts, visitor, network, DimStr::new(code), Arc::from(ua), true, true));
        }
        let mut recs: Vec<FloodRecord> = clicks
            .iter()
            .flat_map(|c| {
                c.keys()
                    .map(|key| FloodRecord {
                        key,
                        ts: c.ts,
                        visitor_id: c.visitor_id,
                        network: c.network(),
                        code: c.code.clone(),
                        user_agent: Arc::clone(&c.user_agent),
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        by_click.push_clicks(&mut clicks);
        by_key.push(&mut recs);
        let w = [report(t0 + s * 1_000)];
        by_click.advance(&w, 9, &mut out_click);
        by_key.advance(&w, 9, &mut out_key);
    }
    assert!(out_click.iter().any(|a| a.key == "visitor:000000000000002a"), "the visitor flood is found");
    assert!(out_click.iter().any(|a| a.key == "network:198.51.100.0/24"), "the network flood is found");
    assert_eq!(out_click, out_key);
    assert_eq!(by_click.tracked_keys(), by_key.tracked_keys());
}
