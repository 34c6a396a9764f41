//! Link CRUD, uniqueness, tombstones and listing behaviours.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::TimeDelta;
use sluice_connectors::{Error, LinkPatch, LinkStore, ListQuery, UpdateOutcome};
use sluice_schemas::{Link, RedirectType};

use crate::harness::{Ctx, link, micros, stored, strings, t0};

pub async fn insert_then_get_round_trips_exactly(ctx: Ctx) {
    let store = ctx.open().await;
    let mut l = link("abc1234", t0());
    l.domain = Some("sho.rt".into());
    l.expires_at = Some(t0() + TimeDelta::days(7) + TimeDelta::nanoseconds(999));
    l.tags = strings(&["b", "a", "b"]);
    l.redirect_type = RedirectType::Permanent;
    l.org = Some("acme".into());
    l.version = 42; // ignored: inserts store version 1
    l.updated_at = t0() + TimeDelta::days(1); // ignored: updated_at = created_at
    let expected = stored(&l);
    assert_eq!(expected.tags, strings(&["b", "a"]));
    assert_eq!(expected.created_at.timestamp_subsec_nanos(), 123_456_000);
    let inserted = store.insert(&l).await.expect("insert");
    assert_eq!(inserted, expected);
    assert_eq!(store.get("abc1234").await.expect("get"), Some(expected));
    assert_eq!(store.get("nope").await.expect("get"), None);

    // Edge instants round-trip too.
    let mut old = link("old", chrono::DateTime::from_timestamp(-2_208_988_800, 1_500).expect("1900"));
    old.expires_at = Some(chrono::DateTime::from_timestamp(253_402_300_799, 999_999_999).expect("9999"));
    let got = store.insert(&old).await.expect("insert old");
    assert_eq!(got, stored(&old));
    assert_eq!(store.get("old").await.expect("get"), Some(stored(&old)));
}

pub async fn codes_are_case_sensitive_and_unique(ctx: Ctx) {
    let store = ctx.open().await;
    store.insert(&link("abc", t0())).await.expect("insert abc");
    match store.insert(&link("abc", t0() + TimeDelta::seconds(1))).await {
        Err(Error::CodeTaken(code)) => assert_eq!(code, "abc"),
        other => panic!("expected CodeTaken, got {other:?}"),
    }
    let mut upper = link("ABC", t0());
    upper.long_url = "https://example.com/upper".into();
    store.insert(&upper).await.expect("ABC is a different code");
    assert_eq!(store.get("ABC").await.expect("get").map(|l| l.long_url), Some("https://example.com/upper".into()));
    assert_eq!(store.get("abc").await.expect("get").map(|l| l.long_url), Some("https://example.com/abc".into()));
    assert_eq!(store.get("Abc").await.expect("get"), None);
}

pub async fn concurrent_inserts_of_one_code_yield_one_winner(ctx: Ctx) {
    let store = ctx.open().await;
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let mut l = link("race", t0());
                l.long_url = format!("https://example.com/{i}");
                (i, store.insert(&l).await)
            })
        })
        .collect();
    let mut winners = Vec::new();
    let mut taken = 0;
    for t in tasks {
        match t.await.expect("join") {
            (i, Ok(_)) => winners.push(i),
            (_, Err(Error::CodeTaken(_))) => taken += 1,
            (_, Err(e)) => panic!("unexpected error: {e:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one insert wins");
    assert_eq!(taken, 199);
    let got = store.get("race").await.expect("get").expect("stored");
    assert_eq!(got.long_url, format!("https://example.com/{}", winners[0]));
}

pub async fn update_applies_the_patch_and_bumps_the_version_unless_nothing_changes(ctx: Ctx) {
    let store = ctx.open().await;
    let mut l = link("upd", t0());
    l.expires_at = Some(t0() + TimeDelta::days(1));
    l.tags = strings(&["x"]);
    let v1 = store.insert(&l).await.expect("insert");

    let now = t0() + TimeDelta::minutes(5) + TimeDelta::nanoseconds(777);
    let patch = LinkPatch {
        long_url: Some("https://example.org/new".into()),
        enabled: Some(false),
        expires_at: Some(None),
        tags: Some(strings(&["y", "z", "y"])),
        redirect_type: Some(RedirectType::Permanent),
        org: Some(Some("acme".into())),
    };
    let out = store.update("upd", &patch, Some(1), now).await.expect("update");
    assert!(out.written, "a patch that changes the link writes a revision");
    let v2 = out.link;
    let expected = Link {
        long_url: "https://example.org/new".into(),
        enabled: false,
        expires_at: None,
        tags: strings(&["y", "z"]),
        redirect_type: RedirectType::Permanent,
        org: Some("acme".into()),
        updated_at: micros(now),
        version: 2,
        ..v1.clone()
    };
    assert_eq!(v2, expected);
    assert_eq!(store.get("upd").await.expect("get"), Some(expected.clone()));

    // A patch that changes nothing the link shows (empty, or every field set to its current
    // value) keeps the revision: same version, same updated_at, no change-feed entry.
    let feed_len = store.changes_since(0, 1000).await.expect("feed").len();
    let later = now + TimeDelta::seconds(1);
    // The store reports that it wrote nothing (the caller then has nothing to invalidate or
    // announce).
    let v3 = store.update("upd", &LinkPatch::default(), None, later).await.expect("empty patch");
    assert_eq!(v3, UpdateOutcome { link: expected.clone(), written: false });
    let same = LinkPatch {
        long_url: Some(expected.long_url.clone()),
        enabled: Some(false),
        expires_at: Some(None),
        tags: Some(strings(&["y", "y", "z"])),
        redirect_type: Some(RedirectType::Permanent),
        org: Some(Some("acme".into())),
    };
    assert_eq!(store.update("upd", &same, Some(2), later).await.expect("same values"), UpdateOutcome { link: expected.clone(), written: false });
    // A stale expected version is still a conflict when nothing would change.
    assert!(matches!(store.update("upd", &same, Some(1), later).await, Err(Error::VersionMismatch { expected: 1, actual: 2, .. })));
    assert_eq!(store.get("upd").await.expect("get"), Some(expected.clone()));
    assert_eq!(store.changes_since(0, 1000).await.expect("feed").len(), feed_len);
    // Reordered tags are a change (order is kept).
    let reordered = LinkPatch { tags: Some(strings(&["z", "y"])), ..LinkPatch::default() };
    let v3 = store.update("upd", &reordered, Some(2), later).await.expect("reordered tags");
    assert!(v3.written);
    let v3 = v3.link;
    assert_eq!(v3, Link { tags: strings(&["z", "y"]), version: 3, updated_at: micros(later), ..expected.clone() });

    // Setting an expiry again.
    let exp = t0() + TimeDelta::days(3) + TimeDelta::nanoseconds(1);
    let patch = LinkPatch { expires_at: Some(Some(exp)), ..LinkPatch::default() };
    let v4 = store.update("upd", &patch, Some(3), later).await.expect("set expiry").link;
    assert_eq!(v4.expires_at, Some(micros(exp)));
    assert_eq!(v4.version, 4);
    assert_eq!(store.get("upd").await.expect("get"), Some(v4));
}

pub async fn stale_version_is_a_conflict_and_changes_nothing(ctx: Ctx) {
    let store = ctx.open().await;
    let v1 = store.insert(&link("ver", t0())).await.expect("insert");
    let patch = LinkPatch { enabled: Some(false), ..LinkPatch::default() };
    let v2 = store.update("ver", &patch, Some(1), t0()).await.expect("first update").link;
    let patch2 = LinkPatch { long_url: Some("https://example.com/lost".into()), ..LinkPatch::default() };
    match store.update("ver", &patch2, Some(1), t0()).await {
        Err(Error::VersionMismatch { code, expected, actual }) => {
            assert_eq!((code.as_str(), expected, actual), ("ver", 1, 2));
        }
        other => panic!("expected VersionMismatch, got {other:?}"),
    }
    assert_eq!(store.get("ver").await.expect("get"), Some(v2.clone()));
    assert_ne!(v1, v2);
}

/// A delete with an expected version compares it in its own transaction: a stale version
/// deletes nothing (the link, its tags and the change feed stay as they were), the current
/// one deletes.
pub async fn delete_with_a_stale_version_is_a_conflict_and_deletes_nothing(ctx: Ctx) {
    let store = ctx.open().await;
    let mut l = link("dver", t0());
    l.tags = strings(&["keep-me"]);
    store.insert(&l).await.expect("insert");
    let patch = LinkPatch { enabled: Some(false), ..LinkPatch::default() };
    let v2 = store.update("dver", &patch, Some(1), t0()).await.expect("update").link;
    let feed_before = store.changes_since(0, 100).await.expect("feed");
    match store.delete("dver", Some(1), t0()).await {
        Err(Error::VersionMismatch { code, expected, actual }) => {
            assert_eq!((code.as_str(), expected, actual), ("dver", 1, 2));
        }
        other => panic!("expected VersionMismatch, got {other:?}"),
    }
    assert_eq!(store.get("dver").await.expect("get"), Some(v2.clone()));
    let tagged = store.list(&ListQuery { limit: 10, tag: Some("keep-me".into()), ..ListQuery::default() }).await.expect("list");
    assert_eq!(tagged.iter().map(|(_, l)| l.code.as_str()).collect::<Vec<_>>(), vec!["dver"]);
    assert_eq!(store.changes_since(0, 100).await.expect("feed").len(), feed_before.len());
    assert!(matches!(store.delete("ghost", Some(1), t0()).await, Err(Error::NotFound(c)) if c == "ghost"));
    let deleted = store.delete("dver", Some(2), t0()).await.expect("delete at the current version");
    assert_eq!(deleted, v2);
    assert_eq!(store.get("dver").await.expect("get"), None);
}

pub async fn missing_links_are_not_found(ctx: Ctx) {
    let store = ctx.open().await;
    let patch = LinkPatch { enabled: Some(false), ..LinkPatch::default() };
    assert!(matches!(store.update("ghost", &patch, None, t0()).await, Err(Error::NotFound(c)) if c == "ghost"));
    assert!(matches!(store.delete("ghost", None, t0()).await, Err(Error::NotFound(c)) if c == "ghost"));
    store.insert(&link("gone", t0())).await.expect("insert");
    store.delete("gone", None, t0()).await.expect("delete");
    assert!(matches!(store.delete("gone", None, t0()).await, Err(Error::NotFound(_))));
    assert!(matches!(store.update("gone", &patch, None, t0()).await, Err(Error::NotFound(_))));
    assert!(matches!(store.update("gone", &patch, Some(1), t0()).await, Err(Error::NotFound(_))));
}

pub async fn delete_hides_the_link_and_returns_it(ctx: Ctx) {
    let store = ctx.open().await;
    let mut l = link("del", t0());
    l.tags = strings(&["t"]);
    let inserted = store.insert(&l).await.expect("insert");
    store.insert(&link("keep", t0())).await.expect("insert keep");
    let deleted = store.delete("del", None, t0() + TimeDelta::hours(1)).await.expect("delete");
    assert_eq!(deleted, inserted);
    assert_eq!(store.get("del").await.expect("get"), None);
    let all = store.list(&ListQuery { limit: 100, ..ListQuery::default() }).await.expect("list");
    assert_eq!(all.iter().map(|(_, l)| l.code.as_str()).collect::<Vec<_>>(), vec!["keep"]);
    let tagged = store.list(&ListQuery { limit: 100, tag: Some("t".into()), ..ListQuery::default() }).await.expect("list");
    assert!(tagged.is_empty());
}

pub async fn tombstone_blocks_reuse_for_thirty_days(ctx: Ctx) {
    let store = ctx.open().await;
    let deleted_at = t0() + TimeDelta::days(2);
    store.insert(&link("tomb", t0())).await.expect("insert");
    store.delete("tomb", None, deleted_at).await.expect("delete");
    let deleted_at = micros(deleted_at);
    for age in [TimeDelta::zero(), TimeDelta::days(29), TimeDelta::days(30) - TimeDelta::microseconds(1)] {
        match store.insert(&link("tomb", deleted_at + age)).await {
            Err(Error::CodeTaken(_)) => {}
            other => panic!("reuse {age} after delete must be refused, got {other:?}"),
        }
    }
    // Other codes are unaffected meanwhile.
    store.insert(&link("other", deleted_at + TimeDelta::days(1))).await.expect("other code");

    // 31 days later the code is free again; the new link is a new entry at the end of the list.
    let mut again = link("tomb", deleted_at + TimeDelta::days(31));
    again.long_url = "https://example.com/second-life".into();
    let reborn = store.insert(&again).await.expect("reuse after 31 days");
    assert_eq!(reborn, stored(&again));
    assert_eq!(store.get("tomb").await.expect("get"), Some(stored(&again)));
    let codes: Vec<String> = store.list(&ListQuery { limit: 10, ..ListQuery::default() }).await.expect("list").into_iter().map(|(_, l)| l.code).collect();
    assert_eq!(codes, strings(&["other", "tomb"]));

    // Exactly 30 days is the boundary: reusable.
    store.insert(&link("edge", t0())).await.expect("insert edge");
    store.delete("edge", None, t0()).await.expect("delete edge");
    store.insert(&link("edge", micros(t0()) + TimeDelta::days(30))).await.expect("reuse at exactly 30 days");
}

/// Naive reference: the live links in creation order, filtered.
fn reference<'a>(links: &'a [Link], tag: Option<&str>, enabled: Option<bool>) -> Vec<&'a str> {
    links
        .iter()
        .filter(|l| tag.is_none_or(|t| l.tags.iter().any(|x| x == t)))
        .filter(|l| enabled.is_none_or(|e| l.enabled == e))
        .map(|l| l.code.as_str())
        .collect()
}

/// Pages through the whole result with `limit`, checking keyset order.
async fn page_all(store: &dyn LinkStore, limit: u32, tag: Option<&str>, enabled: Option<bool>) -> Vec<String> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let q = ListQuery { limit, after_seq: after, tag: tag.map(str::to_string), enabled, org: None };
        let page = store.list(&q).await.expect("list");
        assert!(page.len() <= limit as usize);
        for w in page.windows(2) {
            assert!(w[0].0 < w[1].0, "sequence numbers increase");
        }
        if let (Some(a), Some(first)) = (after, page.first()) {
            assert!(first.0 > a);
        }
        let Some(last) = page.last() else { return out };
        after = Some(last.0);
        out.extend(page.into_iter().map(|(_, l)| l.code));
    }
}

pub async fn list_pages_in_creation_order_with_exact_filters(ctx: Ctx) {
    let store = ctx.open().await;
    let tag_pool = ["news", "newsletter", "a%", "a_", "NEWS", "a"];
    let mut links = Vec::new();
    for i in 0..37usize {
        let mut l = link(&format!("k{i:02}"), t0() + TimeDelta::seconds(i as i64));
        l.enabled = i % 3 != 0;
        l.tags = (0..tag_pool.len()).filter(|j| (i + j) % (j + 2) == 0).map(|j| tag_pool[j].to_string()).collect();
        store.insert(&l).await.expect("insert");
        links.push(l);
    }
    // Delete a few; they must vanish from every listing.
    for code in ["k05", "k06", "k20"] {
        store.delete(code, None, t0()).await.expect("delete");
    }
    links.retain(|l| !["k05", "k06", "k20"].contains(&l.code.as_str()));

    let filters: Vec<(Option<&str>, Option<bool>)> = vec![
        (None, None),
        (None, Some(true)),
        (None, Some(false)),
        (Some("news"), None),
        (Some("newsletter"), None),
        (Some("NEWS"), None),
        (Some("a%"), None),
        (Some("a_"), None),
        (Some("a"), Some(true)),
        (Some("new"), None),
        (Some("%"), None),
    ];
    for (tag, enabled) in filters {
        let expected = reference(&links, tag, enabled);
        for limit in [1, 4, 1000] {
            let got = page_all(store.as_ref(), limit, tag, enabled).await;
            assert_eq!(got, expected, "tag={tag:?} enabled={enabled:?} limit={limit}");
        }
    }
    assert!(reference(&links, Some("news"), None).len() < links.len(), "filters are selective");
    assert!(!reference(&links, Some("newsletter"), None).is_empty());
}

pub async fn unicode_tags_match_exactly(ctx: Ctx) {
    let store = ctx.open().await;
    let variants: [(&str, &[&str]); 6] = [
        ("u1", &["café"]),        // NFC
        ("u2", &["cafe\u{301}"]), // NFD: different code points, different tag
        ("u3", &["日本語", "🦀"]),
        ("u4", &["Straße"]),
        ("u5", &["STRASSE", "🦀🦀"]),
        ("u6", &["ÇA", "ça"]),
    ];
    for (code, tags) in variants {
        let mut l = link(code, t0());
        l.tags = strings(tags);
        let got = store.insert(&l).await.expect("insert");
        assert_eq!(got.tags, strings(tags));
    }
    let q = |t: &str| ListQuery { limit: 100, tag: Some(t.to_string()), ..ListQuery::default() };
    let cases: [(&str, &[&str]); 10] = [
        ("café", &["u1"]),
        ("cafe\u{301}", &["u2"]),
        ("cafe", &[]),
        ("🦀", &["u3"]),
        ("🦀🦀", &["u5"]),
        ("日本", &[]),
        ("Straße", &["u4"]),
        ("strasse", &[]),
        ("ça", &["u6"]),
        ("ÇA", &["u6"]),
    ];
    for (tag, expected) in cases {
        let got: Vec<String> = store.list(&q(tag)).await.expect("list").into_iter().map(|(_, l)| l.code).collect();
        assert_eq!(got, strings(expected), "tag {tag:?}");
    }
    assert_eq!(store.get("u3").await.expect("get").expect("u3").tags, strings(&["日本語", "🦀"]));
}

pub async fn pagination_stays_correct_under_concurrent_creation(ctx: Ctx) {
    let store = ctx.open().await;
    for i in 0..40 {
        store.insert(&link(&format!("p{i:03}"), t0())).await.expect("insert");
    }
    let writer = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            for i in 40..160 {
                store.insert(&link(&format!("p{i:03}"), t0())).await.expect("concurrent insert");
                if i % 10 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    let mut seen = Vec::new();
    let mut after = None;
    let mut writer = Some(writer);
    loop {
        let page = store.list(&ListQuery { limit: 7, after_seq: after, ..ListQuery::default() }).await.expect("list");
        if page.is_empty() {
            // Caught up with the writer; once it has finished, one more empty page ends it.
            match writer.take() {
                Some(w) => {
                    w.await.expect("writer");
                    continue;
                }
                None => break,
            }
        }
        after = Some(page.last().expect("non-empty").0);
        seen.extend(page.into_iter().map(|(_, l)| l.code));
    }
    let expected: Vec<String> = (0..160).map(|i| format!("p{i:03}")).collect();
    assert_eq!(seen, expected, "every link exactly once, in creation order");
    assert_eq!(seen.iter().collect::<BTreeSet<_>>().len(), 160);
}

pub async fn list_limit_is_checked(ctx: Ctx) {
    let store = ctx.open().await;
    for limit in [0, 1001] {
        match store.list(&ListQuery { limit, ..ListQuery::default() }).await {
            Err(Error::InvalidValue { field: "limit", .. }) => {}
            other => panic!("limit {limit}: expected InvalidValue, got {other:?}"),
        }
    }
    for i in 0..3 {
        store.insert(&link(&format!("l{i}"), t0())).await.expect("insert");
    }
    assert_eq!(store.list(&ListQuery { limit: 1000, ..ListQuery::default() }).await.expect("list").len(), 3);
    assert_eq!(store.list(&ListQuery { limit: 2, ..ListQuery::default() }).await.expect("list").len(), 2);
}

pub async fn unstorable_values_are_rejected(ctx: Ctx) {
    let store = ctx.open().await;
    let mut nul_url = link("n1", t0());
    nul_url.long_url = "https://example.com/\0".into();
    let mut nul_tag = link("n2", t0());
    nul_tag.tags = strings(&["ok", "bad\0tag"]);
    let mut far = link("n3", t0());
    far.expires_at = Some(chrono::DateTime::from_timestamp(253_402_300_800, 0).expect("year 10000"));
    let nul_code = link("n\0", t0());
    let empty_code = link("", t0());
    for (field, l) in [("long_url", nul_url), ("tags", nul_tag), ("expires_at", far), ("code", nul_code), ("code", empty_code)] {
        match store.insert(&l).await {
            Err(Error::InvalidValue { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{field}: expected InvalidValue, got {other:?}"),
        }
    }
    assert_eq!(store.get("n\0").await.expect("get with nul"), None);
    store.insert(&link("fine", t0())).await.expect("insert");
    let patch = LinkPatch { tags: Some(strings(&["\0"])), ..LinkPatch::default() };
    assert!(matches!(store.update("fine", &patch, None, t0()).await, Err(Error::InvalidValue { field: "tags", .. })));
    let q = ListQuery { limit: 10, tag: Some("\0".into()), ..ListQuery::default() };
    assert!(matches!(store.list(&q).await, Err(Error::InvalidValue { field: "tag", .. })));
    assert_eq!(store.get("fine").await.expect("get").map(|l| l.version), Some(1), "nothing changed");
}

pub async fn data_survives_reopen_and_migrations_are_idempotent(ctx: Ctx) {
    let first = {
        let store = ctx.open().await;
        store.insert(&link("persist", t0())).await.expect("insert")
    };
    let store = ctx.open().await;
    assert_eq!(store.get("persist").await.expect("get"), Some(first));
    let again = ctx.open().await;
    assert!(matches!(again.insert(&link("persist", t0())).await, Err(Error::CodeTaken(_))));
}
