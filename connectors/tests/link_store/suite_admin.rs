//! Admin controls: blocklist entries holding links, admin holds, the owner's `enabled`
//! restored, the append-only audit log.

use chrono::TimeDelta;
use serde_json::json;
use sluice_connectors::{AdminStore, AuditQuery, AuditRecord, BlocklistEntry, Error, HOLD_ADMIN, LinkChange, LinkHold, LinkPatch};
use sluice_schemas::Link;

use crate::harness::{Ctx, link, micros, t0};

fn audit(action: &str, target: &str, at_s: i64) -> AuditRecord {
    AuditRecord {
        seq: 0,
        at: t0() + TimeDelta::seconds(at_s),
        actor: "admin-token".into(),
        action: action.into(),
        target: target.into(),
        reason: Some(format!("why {action}")),
        origin_ip: Some("127.0.0.1".into()),
        details: json!({}),
    }
}

fn to(code: &str, url: &str) -> Link {
    Link { long_url: url.into(), ..link(code, t0()) }
}

/// Host of a stored (normalized) target, as the API computes it.
fn host_matches(pattern: &str) -> impl Fn(&Link) -> bool + Send + Sync + '_ {
    move |l: &Link| {
        let rest = l.long_url.split_once("://").map_or("", |(_, r)| r);
        let host = rest.split(['/', '?', '#', ':']).next().unwrap_or("");
        host == pattern || host.ends_with(&format!(".{pattern}"))
    }
}

fn admin(store: &std::sync::Arc<dyn sluice_connectors::LinkStore>) -> &dyn AdminStore {
    store.admin().expect("real stores have admin storage")
}

pub async fn blocklist_holds_matching_links_and_release_restores_owner_state(ctx: Ctx) {
    let store = ctx.open().await;
    store.insert(&to("a", "https://evil.example/x")).await.expect("a");
    store.insert(&to("b", "https://sub.evil.example/y?q=1")).await.expect("b");
    store.insert(&to("c", "https://notevil.example/z")).await.expect("c");
    store.insert(&to("d", "https://good.example/?next=evil.example")).await.expect("d");
    store.insert(&to("e", "https://x.evil.example/")).await.expect("e");
    // The owner disabled e before the blocklist: it stays disabled after release.
    store.update("e", &LinkPatch { enabled: Some(false), ..LinkPatch::default() }, None, t0()).await.expect("disable e");
    let before = store.changes_since(0, 100).await.expect("feed").last().map(|(n, _)| *n).expect("some");

    let entry = BlocklistEntry { pattern: "evil.example".into(), reason: Some("phishing".into()), actor: "admin-token".into(), created_at: t0() };
    let filter = host_matches("evil.example");
    let added = admin(&store).blocklist_add(&entry, &filter, &audit("blocklist.add", "evil.example", 1)).await.expect("add");
    assert!(added.added);
    let codes: Vec<&str> = added.links.iter().map(|o| o.link.code.as_str()).collect();
    assert_eq!(codes, vec!["a", "b", "e"]);
    assert_eq!(added.links.iter().map(|o| o.changed).collect::<Vec<_>>(), vec![true, true, false]);
    assert!(added.links.iter().all(|o| !o.link.enabled));
    assert_eq!(added.links[0].link.version, 2);
    assert_eq!(
        added.links[0].holds,
        vec![LinkHold { source: "blocklist:evil.example".into(), reason: Some("phishing".into()), actor: "admin-token".into(), created_at: micros(t0()) }]
    );
    // Exactly the flipped links are in the change feed, with their new state.
    let feed: Vec<LinkChange> = store.changes_since(before, 100).await.expect("feed").into_iter().map(|(_, c)| c).collect();
    assert_eq!(feed, vec![LinkChange::Upserted(added.links[0].link.clone()), LinkChange::Upserted(added.links[1].link.clone())]);
    assert!(!store.get("a").await.expect("get").expect("a").enabled);
    assert!(store.get("c").await.expect("get").expect("c").enabled);
    assert!(store.get("d").await.expect("get").expect("d").enabled);

    // Adding again changes nothing and reports the held links.
    let again = admin(&store).blocklist_add(&entry, &filter, &audit("blocklist.add", "evil.example", 2)).await.expect("add again");
    assert!(!again.added);
    assert_eq!(again.links.iter().map(|o| (o.link.code.as_str(), o.changed)).collect::<Vec<_>>(), vec![("a", false), ("b", false), ("e", false)]);
    assert_eq!(admin(&store).blocklist_list().await.expect("list"), vec![BlocklistEntry { created_at: micros(t0()), ..entry.clone() }]);

    // An admin hold on a as well: releasing the blocklist keeps a disabled.
    let hold = LinkHold { source: HOLD_ADMIN.into(), reason: Some("spam".into()), actor: "loopback".into(), created_at: t0() + TimeDelta::seconds(3) };
    let held = admin(&store).hold_link("a", &hold, t0() + TimeDelta::seconds(3), None).await.expect("hold a");
    assert!(!held.changed);
    assert_eq!(held.holds.iter().map(|h| h.source.as_str()).collect::<Vec<_>>(), vec!["blocklist:evil.example", "admin"]);

    let released = admin(&store)
        .blocklist_remove("evil.example", t0() + TimeDelta::seconds(4), &audit("blocklist.remove", "evil.example", 4))
        .await
        .expect("remove")
        .expect("existed");
    assert_eq!(
        released.iter().map(|o| (o.link.code.as_str(), o.link.enabled, o.changed)).collect::<Vec<_>>(),
        vec![("a", false, false), ("b", true, true), ("e", false, false)]
    );
    assert_eq!(released[1].link.version, 3);
    assert!(admin(&store).blocklist_remove("evil.example", t0(), &audit("blocklist.remove", "evil.example", 5)).await.expect("remove").is_none());
    assert!(admin(&store).blocklist_list().await.expect("list").is_empty());

    let a = admin(&store).release_link("a", HOLD_ADMIN, t0() + TimeDelta::seconds(6), None).await.expect("release a");
    assert!(a.changed && a.link.enabled && a.holds.is_empty());
    assert!(store.get("a").await.expect("get").expect("a").enabled);
    // Releasing an absent hold is a no-op.
    let a2 = admin(&store).release_link("a", HOLD_ADMIN, t0() + TimeDelta::seconds(7), None).await.expect("release again");
    assert!(!a2.changed && a2.link == a.link);

    // The audit log holds exactly the two blocklist changes, newest first, with affected codes.
    let log = admin(&store).audit_list(&AuditQuery { limit: 10, ..AuditQuery::default() }).await.expect("audit");
    assert_eq!(
        log.iter().map(|r| (r.action.as_str(), r.details.clone())).collect::<Vec<_>>(),
        vec![("blocklist.remove", json!({"affected": ["a", "b", "e"]})), ("blocklist.add", json!({"affected": ["a", "b", "e"]})),]
    );
}

pub async fn admin_holds_need_a_live_link_and_survive_owner_updates(ctx: Ctx) {
    let store = ctx.open().await;
    let hold = LinkHold { source: HOLD_ADMIN.into(), reason: None, actor: "admin-token".into(), created_at: t0() };
    assert!(matches!(admin(&store).hold_link("nope", &hold, t0(), None).await, Err(Error::NotFound(c)) if c == "nope"));
    assert!(matches!(admin(&store).release_link("nope", HOLD_ADMIN, t0(), None).await, Err(Error::NotFound(_))));
    assert!(matches!(admin(&store).link_holds("nope").await, Err(Error::NotFound(_))));
    store.insert(&link("k", t0())).await.expect("insert");
    let rec = audit("link.disable", "k", 1);
    let out = admin(&store).hold_link("k", &hold, t0() + TimeDelta::seconds(1), Some(&rec)).await.expect("hold");
    assert!(out.changed && !out.link.enabled);
    assert_eq!(out.link.updated_at, micros(t0() + TimeDelta::seconds(1)));
    assert_eq!(admin(&store).link_holds("k").await.expect("holds"), vec![LinkHold { created_at: micros(t0()), ..hold.clone() }]);
    // The owner cannot re-enable a held link; the owner's last word counts after release.
    let on = LinkPatch { enabled: Some(true), ..LinkPatch::default() };
    let off = LinkPatch { enabled: Some(false), ..LinkPatch::default() };
    // Recorded for later, but nothing the link shows changes: no revision written.
    let held_on = store.update("k", &on, None, t0() + TimeDelta::seconds(2)).await.expect("owner on");
    assert!(!held_on.link.enabled && !held_on.written, "{held_on:?}");
    assert!(!store.update("k", &off, None, t0() + TimeDelta::seconds(2)).await.expect("owner off").link.enabled);
    let released = admin(&store).release_link("k", HOLD_ADMIN, t0() + TimeDelta::seconds(2), None).await.expect("release");
    assert!(!released.changed && !released.link.enabled, "the owner had disabled it meanwhile");
    let on_again = store.update("k", &on, None, t0() + TimeDelta::seconds(2)).await.expect("owner on");
    assert!(on_again.link.enabled && on_again.written, "{on_again:?}");
    admin(&store).hold_link("k", &hold, t0() + TimeDelta::seconds(2), None).await.expect("hold again");
    // A hold belongs to the link, not the code: after delete + reuse the new link is clean.
    store.delete("k", None, t0() + TimeDelta::seconds(2)).await.expect("delete");
    store.insert(&link("k", t0() + TimeDelta::days(31))).await.expect("reuse");
    assert!(admin(&store).link_holds("k").await.expect("holds").is_empty());
    assert!(store.get("k").await.expect("get").expect("k").enabled);
}

pub async fn audit_log_pages_newest_first_with_filters_and_is_append_only(ctx: Ctx) {
    let store = ctx.open().await;
    let mut appended = Vec::new();
    for i in 0..7 {
        let mut r = audit(if i % 2 == 0 { "link.disable" } else { "link.enable" }, &format!("c{i}"), i);
        if i == 3 {
            r.actor = "auto".into();
            r.origin_ip = None;
            r.details = json!({"anomaly_id": "x"});
        }
        let stored = admin(&store).audit_append(&r).await.expect("append");
        assert_eq!(stored.at, micros(r.at));
        assert!(appended.last().is_none_or(|p: &AuditRecord| p.seq < stored.seq), "seq grows");
        appended.push(stored);
    }
    let mut newest_first = appended.clone();
    newest_first.reverse();
    // Paging by 3 with the last seq as cursor returns every record once.
    let mut got = Vec::new();
    let mut before = None;
    loop {
        let page = admin(&store).audit_list(&AuditQuery { limit: 3, before_seq: before, ..AuditQuery::default() }).await.expect("page");
        if page.is_empty() {
            break;
        }
        before = page.last().map(|r| r.seq);
        got.extend(page);
    }
    assert_eq!(got, newest_first);
    let only = |q: AuditQuery| {
        let store = store.clone();
        async move { admin(&store).audit_list(&q).await.expect("list").into_iter().map(|r| r.target).collect::<Vec<_>>() }
    };
    assert_eq!(only(AuditQuery { limit: 10, action: Some("link.enable".into()), ..AuditQuery::default() }).await, vec!["c5", "c3", "c1"]);
    assert_eq!(only(AuditQuery { limit: 10, actor: Some("auto".into()), ..AuditQuery::default() }).await, vec!["c3"]);
    assert_eq!(
        only(AuditQuery { limit: 10, from: Some(t0() + TimeDelta::seconds(2)), to: Some(t0() + TimeDelta::seconds(4)), ..AuditQuery::default() }).await,
        vec!["c3", "c2"]
    );
    assert!(matches!(admin(&store).audit_list(&AuditQuery { limit: 0, ..AuditQuery::default() }).await, Err(Error::InvalidValue { field: "limit", .. })));
    assert!(matches!(admin(&store).audit_list(&AuditQuery { limit: 1001, ..AuditQuery::default() }).await, Err(Error::InvalidValue { field: "limit", .. })));
    let bad = AuditRecord { reason: Some("nul\0".into()), ..audit("x", "y", 0) };
    assert!(matches!(admin(&store).audit_append(&bad).await, Err(Error::InvalidValue { field: "reason", .. })));
}
