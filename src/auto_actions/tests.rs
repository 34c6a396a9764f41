//! The follower against a real SQLite link store and anomaly store: which events act, what
//! is written (hold, one audit record, the action in the anomaly), and a restart that
//! re-reads everything (including a hold placed just before a crash) without acting twice.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use sluice_connectors::{AuditQuery, HOLD_ADMIN, LinkChange, LinkHold, LinkStore, open_store};
use sluice_schemas::anomaly::anomaly_id;
use sluice_schemas::{Anomaly, Evidence, Link, RedirectType};
use sluice_serving::{ApiConfig, ApiState};

use super::*;

fn link(code: &str) -> Link {
    let t = chrono::Utc::now();
    Link {
        code: code.into(),
        long_url: format!("https://example.com/{code}"),
        domain: None,
        expires_at: None,
        enabled: true,
        tags: Vec::new(),
        redirect_type: RedirectType::Found,
        org: None,
        created_at: t,
        updated_at: t,
        version: 1,
    }
}

/// An anomaly on `code` first seen at `start` (ms), ending `end` (ms).
fn anomaly(kind: AnomalyKind, code: &str, start: i64, end: i64, revision: u32, status: AnomalyStatus, severity: Severity) -> Anomaly {
    let key = format!("link:{code}");
    Anomaly {
        anomaly_id: anomaly_id(kind, &key, start),
        revision,
        status,
        kind,
        key,
        severity,
        code: Some(code.into()),
        org: None,
        window_start: start,
        window_end: end,
        observed: 500.0,
        expected: 10.0,
        score: 12.0,
        summary: format!("{} on {code}", kind.as_str()),
        evidence: Evidence { window_ms: 60_000, clicks: 500, ..Evidence::default() },
        detected_at: end,
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    links: Arc<dyn LinkStore>,
    anomalies: Arc<AnomalyStore>,
    admin: AutoAdmin,
    changed: Arc<Mutex<Vec<String>>>,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let links = open_store(dir.path().join("links").to_str().expect("utf-8")).await.expect("link store");
    for code in ["hot", "held", "other", "late"] {
        links.insert(&link(code)).await.expect("insert");
    }
    let anomalies = Arc::new(AnomalyStore::open(dir.path()).expect("anomaly store"));
    let changed = Arc::new(Mutex::new(Vec::new()));
    let c = Arc::clone(&changed);
    let api = ApiState::new(Arc::clone(&links), ApiConfig::new(url::Url::parse("http://127.0.0.1:1").expect("url"))).with_hook(Arc::new(
        move |change: &LinkChange| {
            if let LinkChange::Upserted(l) = change {
                c.lock().push(format!("{}:{}", l.code, l.enabled));
            }
        },
    ));
    let admin = AutoAdmin::new(api).expect("SQLite keeps admin state");
    Fixture { _dir: dir, links, anomalies, admin, changed }
}

fn section() -> AutoActionsSection {
    AutoActionsSection { enabled: true, kinds: vec![AnomalyKind::ClickBurst, AnomalyKind::VisitorFlood], ..AutoActionsSection::default() }
}

/// Waits until the follower's stored cursor reaches the store's head.
async fn caught_up(store: &AnomalyStore) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while store.cursor(CURSOR_NAME).expect("cursor") != Some(store.head()) {
        assert!(tokio::time::Instant::now() < deadline, "auto actions did not catch up: cursor {:?}, head {}", store.cursor(CURSOR_NAME), store.head());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn auto_audit(links: &dyn LinkStore) -> Vec<sluice_connectors::AuditRecord> {
    let q = AuditQuery { limit: 100, actor: Some(AUTO_ACTOR.into()), ..AuditQuery::default() };
    links.admin().expect("admin").audit_list(&q).await.expect("audit")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn critical_anomalies_of_chosen_kinds_disable_their_link_once() {
    use AnomalyKind::{BotShare, ClickBurst, VisitorFlood};
    use AnomalyStatus::{Closed, Open, Updated};
    use Severity::{Critical, Warning};
    let f = fixture().await;
    let now = chrono::Utc::now().timestamp_millis();
    let (start, end) = (now - 120_000, now - 1_000);
    // Stored before the first start: behind the initial cursor (the head), never acted on.
    f.anomalies.append(&[anomaly(ClickBurst, "other", start - 60_000, end, 0, Open, Critical)]).expect("append");
    // `held` is already disabled by an admin.
    let admin_hold = LinkHold { source: HOLD_ADMIN.into(), reason: Some("phishing".into()), actor: "admin-token".into(), created_at: chrono::Utc::now() };
    f.links.admin().expect("admin").hold_link("held", &admin_hold, chrono::Utc::now(), None).await.expect("hold");
    f.changed.lock().clear();
    // As when the store opens: the cursor is the head (1) before anything else is stored.
    assert_eq!(init_cursor(&f.anomalies).expect("cursor"), 1);

    let auto = AutoActions::start(&section(), Arc::clone(&f.anomalies), f.admin.clone());
    let flood = anomaly(VisitorFlood, "hot", start, end, 0, Open, Critical);
    let on_held = anomaly(ClickBurst, "held", start, end, 0, Open, Critical);
    let ids = f
        .anomalies
        .append(&[
            flood.clone(),
            anomaly(ClickBurst, "other", start, end, 0, Open, Warning),           // not critical
            anomaly(BotShare, "other", start, end, 0, Open, Critical),            // kind not chosen
            on_held.clone(),                                                      // already held
            anomaly(VisitorFlood, "hot", start, end + 500, 1, Updated, Critical), // same anomaly again
            anomaly(ClickBurst, "gone", start, end, 0, Open, Critical),           // no such link
            anomaly(ClickBurst, "other", start + 1, end, 2, Closed, Critical),    // closed
            anomaly(ClickBurst, "late", start - 7_200_000, now - 3_600_000, 0, Open, Critical), // older than max-age
        ])
        .expect("append");
    assert_eq!(ids, (2..=9).collect::<Vec<u64>>());
    caught_up(&f.anomalies).await;

    // Exactly `hot` was disabled, by an admin hold of the auto actor, with its change hooks run.
    let enabled = |code: &'static str| {
        let links = Arc::clone(&f.links);
        async move { links.get(code).await.expect("get").expect("link").enabled }
    };
    assert!(!enabled("hot").await);
    assert!(!enabled("held").await);
    assert!(enabled("other").await);
    assert!(enabled("late").await);
    assert_eq!(*f.changed.lock(), vec!["hot:false".to_string()]);
    let holds = f.links.admin().expect("admin").link_holds("hot").await.expect("holds");
    assert_eq!(holds.len(), 1);
    assert_eq!((holds[0].source.as_str(), holds[0].actor.as_str()), (HOLD_ADMIN, AUTO_ACTOR));
    assert!(holds[0].reason.as_deref().is_some_and(|r| r.contains(&flood.anomaly_id.to_string())), "{holds:?}");

    // One audit record, naming the anomaly.
    let audit = auto_audit(f.links.as_ref()).await;
    assert_eq!(audit.len(), 1, "{audit:?}");
    let r = &audit[0];
    assert_eq!((r.action.as_str(), r.target.as_str(), r.origin_ip.as_deref()), ("auto.disable", "hot", None));
    assert_eq!(r.reason.as_deref(), Some(format!("critical visitor_flood anomaly {}: visitor_flood on hot", flood.anomaly_id).as_str()));
    assert_eq!(r.details, serde_json::json!({"anomaly_id": flood.anomaly_id.to_string(), "kind": "visitor_flood", "severity": "critical", "event_id": 2}));

    // The anomalies say what was done; the others have nothing.
    let outcomes = |a: &Anomaly| {
        f.anomalies.actions(a.anomaly_id.as_bytes()).expect("actions").into_iter().map(|x| (x.action, x.outcome, x.code, x.event_id)).collect::<Vec<_>>()
    };
    assert_eq!(outcomes(&flood), vec![("disable".to_string(), "applied".to_string(), "hot".to_string(), 2)]);
    assert_eq!(outcomes(&on_held), vec![("disable".to_string(), "already_disabled".to_string(), "held".to_string(), 5)]);
    let with_actions: Vec<u64> = f.anomalies.events_after(0, 100).expect("events").into_iter().filter(|e| !e.actions.is_empty()).map(|e| e.event_id).collect();
    assert_eq!(with_actions, vec![2, 5, 6]);
    auto.shutdown().await;

    // A crash between a hold and its record: the hold for a new anomaly on `other` is in place
    // (with its audit record), the store knows nothing, and the cursor is back at 0.
    let burst = anomaly(ClickBurst, "other", now - 60_000, now, 0, Open, Critical);
    let trigger =
        AutoTrigger { anomaly_id: burst.anomaly_id, kind: "click_burst".into(), severity: "critical".into(), event_id: 10, summary: burst.summary.clone() };
    assert_eq!(f.admin.disable("other", &trigger).await.expect("disable"), AutoDisableOutcome::Applied);
    assert_eq!(f.anomalies.append(std::slice::from_ref(&burst)).expect("append"), vec![10]);
    f.anomalies.set_cursor(CURSOR_NAME, 0).expect("rewind");
    let auto = AutoActions::start(&section(), Arc::clone(&f.anomalies), f.admin.clone());
    caught_up(&f.anomalies).await;
    auto.shutdown().await;
    // Every event re-read: the burst is recorded as applied, nothing was held or audited again.
    assert_eq!(outcomes(&burst), vec![("disable".to_string(), "applied".to_string(), "other".to_string(), 10)]);
    let audit = auto_audit(f.links.as_ref()).await;
    assert_eq!(audit.iter().map(|r| r.target.as_str()).collect::<Vec<_>>(), vec!["other", "hot"]);
    // The first start's old anomaly (event 1) is acted on by this re-read only because the
    // cursor was rewound past the head it started from; its link was already held: recorded
    // as such, no audit.
    assert_eq!(outcomes(&anomaly(ClickBurst, "other", start - 60_000, end, 0, Open, Critical))[0].1, "already_disabled");
    assert_eq!(*f.changed.lock(), vec!["hot:false".to_string(), "other:false".to_string()]);
}

#[test]
fn the_section_validates_and_parses() {
    assert!(AutoActionsSection::default().validate().is_ok());
    assert!(AutoActionsSection { enabled: true, ..AutoActionsSection::default() }.validate().is_err());
    assert!(section().validate().is_ok());
    let s: AutoActionsSection = toml::from_str("enabled = true\nkinds = [\"click_burst\"]\naction = \"disable\"\nmax-age = \"5m\"").expect("parses");
    assert_eq!(s, AutoActionsSection { enabled: true, kinds: vec![AnomalyKind::ClickBurst], action: AutoAction::Disable, max_age: Duration::from_secs(300) });
    let err = toml::from_str::<AutoActionsSection>("action = \"rate-limit\"").expect_err("not an action");
    assert!(err.to_string().contains("rate-limit"), "{err}");
    assert!(toml::from_str::<AutoActionsSection>("kinds = [\"burst\"]").is_err());
}
