//! `blocklisted_target` through the whole pipeline: link metadata and the admin blocklist
//! joined in the graph, clicks on a link whose target host is covered by an entry (a parent
//! domain, pasted with odd spelling) raise one anomaly that escalates, names the host and the
//! entry, and closes once the entry is removed; a look-alike host is never matched.

mod support;

use std::sync::{Arc, Mutex};

use sluice_dataflows::pipeline::{PipelineOutputs, link_meta_channel};
use sluice_schemas::{Anomaly, AnomalyKind, AnomalyStatus, LinkMeta, Severity};
use support::{BROWSER_UA, Harness, MIN, config, event};

/// 2026-03-02T10:00:00Z.
const T0: i64 = 1_772_445_600_000;

fn meta(code: &str, host: &str) -> LinkMeta {
    LinkMeta { code: code.into(), org: Some("acme".into()), tags: Vec::new(), domain: None, target_host: Some(host.into()), valid_from_ms: 0 }
}

/// One click every 5 s on each of `codes` during `[from, to)`.
fn push_clicks(h: &Harness, codes: &[&str], from: i64, to: i64, id: &mut u128) {
    let mut t = from;
    while t < to {
        for (i, c) in codes.iter().enumerate() {
            *id += 1;
            h.feed.push(0, event(*id, c, t + i as i64, *id as u64, BROWSER_UA, Some("81.2.69.0"), None), false);
        }
        t += 5_000;
    }
}

#[test]
fn clicks_on_a_blocklisted_target_raise_one_anomaly_until_the_entry_is_removed() {
    let got: Arc<Mutex<Vec<Anomaly>>> = Arc::default();
    let sink = Arc::clone(&got);
    let outputs = PipelineOutputs { anomalies: Some(Arc::new(move |b: &[Anomaly]| sink.lock().expect("sink").extend_from_slice(b))), ..Default::default() };
    let (tx, feed) = link_meta_channel();
    let h = Harness::start(config(2), 1, T0 + 10 * MIN, Some(feed), outputs);
    assert!(tx.insert(meta("bad1", "cdn.evil.example")));
    assert!(tx.insert(meta("good1", "notevil.example")));
    assert_eq!(h.handle.blocklist().insert("https://EVIL.example.:443/x").expect("valid entry"), "evil.example");
    h.sync();
    let mut id = 0u128;
    push_clicks(&h, &["bad1", "good1"], T0, T0 + 3 * MIN, &mut id);
    h.sync();
    h.handle.blocklist().remove("evil.example").expect("valid entry");
    h.sync();
    push_clicks(&h, &["bad1", "good1"], T0 + 3 * MIN, T0 + 6 * MIN, &mut id);
    h.sync();

    let events = got.lock().expect("sink").clone();
    assert!(events.iter().all(|a| a.key == "link:bad1" && a.kind == AnomalyKind::BlocklistedTarget), "only bad1 is flagged: {events:#?}");
    let got: Vec<(AnomalyStatus, Severity, i64)> = events.iter().map(|a| (a.status, a.severity, a.window_end - T0)).collect();
    use AnomalyStatus::*;
    use Severity::*;
    // Open at the first tick after the first click (any click is a warning); updated every
    // 10 s while the count moves by >= 25 % (1 → 3 → 5 → 7 → 9), at once when 10 clicks are
    // in the 60 s window (critical, the 10th at 45 s), then steady at 12; closed a quiet window
    // after the entry was removed, having held until the last tick before the removal (2:55).
    assert_eq!(
        got,
        vec![
            (Open, Warning, 1_000),
            (Updated, Warning, 11_000),
            (Updated, Warning, 21_000),
            (Updated, Warning, 31_000),
            (Updated, Warning, 41_000),
            (Updated, Critical, 46_000),
            (Closed, Critical, 175_000),
        ]
    );
    assert!(events.iter().all(|a| a.anomaly_id == events[0].anomaly_id), "one anomaly");
    let critical = &events[5];
    let ev = &critical.evidence;
    assert_eq!(ev.target_host.as_deref(), Some("cdn.evil.example"));
    assert_eq!(ev.blocklist_patterns, vec!["evil.example".to_string()]);
    assert_eq!((ev.clicks, critical.observed), (10, 10.0));
    assert_eq!((critical.code.as_deref(), critical.org.as_deref()), (Some("bad1"), Some("acme")));
}
