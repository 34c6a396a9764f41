//! The admin blocklist over HTTP, against both stores: every spelling of a pattern is one
//! entry, existing links stop redirecting at once even when cached and come back when it
//! goes, IPv6 addresses bare or bracketed, entries stored in an old spelling read
//! canonically, IPv4 entries not bypassed by NAT64 or 6to4 spellings.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::admin::{TOKEN, admin, with_token};
use crate::backend_tests;
use crate::harness::{Backend, TestApp};

backend_tests!(
    blocklist_normalizes_every_spelling,
    blocklisted_links_stop_redirecting_at_once,
    blocklist_takes_ipv6_addresses_bare_or_bracketed,
    blocklist_entries_stored_in_an_old_spelling_are_read_canonically,
    nat64_spellings_of_a_blocklisted_ipv4_address_are_blocked,
);

fn codes(v: &Value) -> Vec<String> {
    v.as_array().expect("array").iter().map(|l| l["code"].as_str().expect("code").to_owned()).collect()
}

async fn blocklist_normalizes_every_spelling(b: Backend) {
    let app = with_token(b).await;
    // (spelling, normalized): the first of each group adds, the rest find it.
    for (spelling, want, added) in [
        ("Evil.Example", "evil.example", true),
        ("evil.example.", "evil.example", false),
        ("EVIL.EXAMPLE:8443", "evil.example", false),
        ("https://evil.example/some/path?q=1", "evil.example", false),
        ("Bücher.Example", "xn--bcher-kva.example", true),
        ("xn--bcher-kva.example", "xn--bcher-kva.example", false),
        ("XN--BCHER-KVA.EXAMPLE.", "xn--bcher-kva.example", false),
    ] {
        let r = admin(&app, Method::POST, "/v1/admin/blocklist", Some(json!({"pattern": spelling, "reason": "phishing"}))).await;
        assert_eq!(r.status, if added { StatusCode::CREATED } else { StatusCode::OK }, "{spelling}: {:?}", r.body);
        let v = r.json();
        assert_eq!(v["entry"]["pattern"], want, "{spelling}");
        assert_eq!(v["added"], added, "{spelling}");
    }
    for bad in ["", "   ", "a b.example", "http://", "10.0.0.0/8"] {
        admin(&app, Method::POST, "/v1/admin/blocklist", Some(json!({"pattern": bad}))).await.assert_error(400, "invalid_pattern");
    }
    admin(&app, Method::POST, "/v1/admin/blocklist", Some(json!({"pattern": "*.evil.example"}))).await.assert_error(400, "pattern_wildcard");
    for suffix in ["com", "co.uk", "github.io", "localhost"] {
        admin(&app, Method::POST, "/v1/admin/blocklist", Some(json!({"pattern": suffix}))).await.assert_error(400, "pattern_public_suffix");
    }
    admin(&app, Method::POST, "/v1/admin/blocklist", Some(json!({"pattern": "x.example", "extra": 1}))).await.assert_error(400, "unknown_field");
    let list = admin(&app, Method::GET, "/v1/admin/blocklist", None).await.json();
    let patterns: Vec<&str> = list["items"].as_array().expect("items").iter().map(|e| e["pattern"].as_str().expect("p")).collect();
    assert_eq!(patterns, vec!["evil.example", "xn--bcher-kva.example"]);
    assert_eq!(list["items"][0]["actor"], "admin-token");
    assert_eq!(list["items"][0]["reason"], "phishing");

    // Targets: refused (422 policy_violation, no link created) or accepted.
    for (i, (target, blocked)) in [
        ("https://evil.example/x", true),
        ("https://EVIL.example./x", true),
        ("https://evil.example:8443/x", true),
        ("http://a.b.evil.example/", true),
        ("https://bücher.example/", true),
        ("https://BÜCHER.example/", true),
        ("https://xn--bcher-kva.example/", true),
        ("https://shop.bücher.example/", true),
        ("https://notevil.example/", false),
        ("https://evil.example.com/", false),
        ("https://evil-example.com/", false),
        ("https://bucher.example/", false),
        ("https://example.com/?u=https://evil.example/", false),
    ]
    .into_iter()
    .enumerate()
    {
        let alias = format!("nrm{i}");
        let r = app.post_json("/v1/links", &json!({"long_url": target, "custom_alias": alias})).await;
        if blocked {
            let err = r.assert_error(422, "policy_violation");
            assert!(err["details"]["domain"] == "evil.example" || err["details"]["domain"] == "xn--bcher-kva.example", "{target}: {err}");
            app.assert_no_link(&alias).await;
        } else {
            assert_eq!(r.status, StatusCode::CREATED, "{target}: {:?}", r.body);
        }
    }
    // PATCH to a blocked target: 422, link unchanged.
    let code = app.create_url("https://fine.example/p").await;
    let r = app.patch_json(&format!("/v1/links/{code}"), &json!({"long_url": "https://sub.evil.example/"}), None).await;
    r.assert_error(422, "policy_violation");
    assert_eq!(app.get(&format!("/v1/links/{code}")).await.json()["long_url"], "https://fine.example/p");
    // A spelling that adding refuses (a path) is refused by removing too, not read as its
    // host (attack of session 51: it removed `evil.example`).
    for bad in ["evil.example%2Fjunk%3Fq", "a%2Fb"] {
        let r = admin(&app, Method::DELETE, &format!("/v1/admin/blocklist/{bad}"), None).await;
        r.assert_error(400, "invalid_pattern");
    }
    // Unblocking by any spelling; unknown entries are 404.
    let r = admin(&app, Method::DELETE, "/v1/admin/blocklist/EVIL.example.", None).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.json(), json!({"pattern": "evil.example", "released_links": []}));
    admin(&app, Method::DELETE, "/v1/admin/blocklist/evil.example", None).await.assert_error(404, "not_found");
    assert_eq!(app.post_json("/v1/links", &json!({"long_url": "https://evil.example/x"})).await.status, StatusCode::CREATED);
}

async fn blocklisted_links_stop_redirecting_at_once(b: Backend) {
    let app = with_token(b).await;
    let a = app.create_url("https://bad.example/a").await;
    let c = app.create_url("https://cdn.bad.example/c?x=1").await;
    let ok = app.create_url("https://good.example/").await;
    // Redirect each once: they are now in the redirect's L1 cache.
    for code in [&a, &c, &ok] {
        assert_eq!(app.get(&format!("/{code}")).await.status, StatusCode::FOUND);
    }
    assert_eq!(app.take_events().len(), 3);
    let r = admin(&app, Method::POST, "/v1/admin/blocklist", Some(json!({"pattern": "BAD.example"}))).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let v = r.json();
    assert_eq!(codes(&v["affected_links"]), vec![a.clone(), c.clone()]);
    assert!(v["affected_links"].as_array().expect("arr").iter().all(|l| l["enabled"] == false));
    // At once, although cached: 404, never the target; HEAD too; no click events.
    for code in [&a, &c] {
        let r = app.get(&format!("/{code}")).await;
        r.assert_error(404, "not_found");
        assert_eq!(r.location(), None);
        assert_eq!(app.head(&format!("/{code}")).await.status, StatusCode::NOT_FOUND);
    }
    assert_eq!(app.get(&format!("/{ok}")).await.status, StatusCode::FOUND);
    assert_eq!(app.take_events().iter().map(|e| e.code.clone()).collect::<Vec<_>>(), vec![ok.clone()]);
    // The link still exists (its past clicks are kept), disabled; its owner cannot re-enable it.
    let link = app.get(&format!("/v1/links/{a}")).await;
    assert_eq!(link.status, StatusCode::OK);
    assert_eq!(link.json()["enabled"], false);
    let r = app.patch_json(&format!("/v1/links/{a}"), &json!({"enabled": true}), None).await;
    let err = r.assert_error(409, "link_held");
    assert_eq!(err["details"]["holds"], json!(["blocklist:bad.example"]));
    assert_eq!(app.get(&format!("/{a}")).await.status, StatusCode::NOT_FOUND);
    // Enabling a blocklisted link is refused too.
    let r = admin(&app, Method::POST, &format!("/v1/admin/links/{a}/enable"), None).await;
    let err = r.assert_error(409, "link_blocklisted");
    assert_eq!(err["details"]["patterns"], json!(["bad.example"]));
    // Unblock: both redirect again.
    let r = admin(&app, Method::DELETE, "/v1/admin/blocklist/bad.example", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(codes(&r.json()["released_links"]), vec![a.clone(), c.clone()]);
    assert_eq!(app.get(&format!("/{a}")).await.location(), Some("https://bad.example/a"));
    assert_eq!(app.get(&format!("/{c}")).await.location(), Some("https://cdn.bad.example/c?x=1"));
}

/// An IPv6 address as a blocklist entry, at run time (`POST /v1/admin/blocklist`) and in
/// `[links] blocklist`: bare (`2001:db8::1`, once "invalid port number") or bracketed, one
/// entry either way, and it blocks targets on that address in any spelling.
async fn blocklist_takes_ipv6_addresses_bare_or_bracketed(b: Backend) {
    let app = TestApp::start_with(b, |c| {
        c.admin.token = Some(sluice::config::Secret(TOKEN.into()));
        c.links.blocklist = vec!["2001:db8::9".into(), "[2001:db8::a]:443".into()];
    })
    .await;
    for (spelling, added) in [("2001:db8::1", true), ("[2001:DB8::1]", false), ("[2001:db8:0:0::1]:443", false), ("https://[2001:db8::1]/x", false)] {
        let r = admin(&app, Method::POST, "/v1/admin/blocklist", Some(json!({"pattern": spelling}))).await;
        assert_eq!(r.status, if added { StatusCode::CREATED } else { StatusCode::OK }, "{spelling}: {:?}", r.body);
        assert_eq!((&r.json()["entry"]["pattern"], &r.json()["added"]), (&json!("2001:db8::1"), &json!(added)), "{spelling}");
    }
    let err = admin(&app, Method::POST, "/v1/admin/blocklist", Some(json!({"pattern": "2001:db8::zz"}))).await.assert_error(400, "invalid_pattern");
    assert_eq!(
        err["message"],
        "invalid blocklist entry: \"2001:db8::zz\" is neither a domain nor an IPv6 address; write an IPv6 address bare (2001:db8::1) or in brackets ([2001:db8::1], with a port [2001:db8::1]:443)"
    );
    let list = admin(&app, Method::GET, "/v1/admin/blocklist", None).await.json();
    assert_eq!(list["config"], json!(["2001:db8::9", "2001:db8::a"]));
    for (i, (target, domain)) in [
        ("http://[2001:db8::1]/x", "2001:db8::1"),
        ("https://[2001:0db8::0001]:8443/", "2001:db8::1"),
        ("http://[2001:db8::9]/", "2001:db8::9"),
        ("http://[2001:db8::a]/", "2001:db8::a"),
    ]
    .into_iter()
    .enumerate()
    {
        let alias = format!("six{i}");
        let err = app.post_json("/v1/links", &json!({"long_url": target, "custom_alias": alias})).await.assert_error(422, "policy_violation");
        assert_eq!(err["details"]["domain"], domain, "{target}");
        app.assert_no_link(&alias).await;
    }
    let r = app.post_json("/v1/links", &json!({"long_url": "http://[2001:db8::2]/"})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
}

/// An entry an earlier version stored in an IPv6 spelling of an IPv4 address
/// (`::ffff:10.0.0.1`, from before blocklist hosts were canonicalized) is read in canonical
/// form (`10.0.0.1`): it blocks new links to the address, is listed and deleted in that form,
/// and deleting it releases the link it held (the dataflow's feed: tests/analytics/blocklist_feed.rs).
async fn blocklist_entries_stored_in_an_old_spelling_are_read_canonically(b: Backend) {
    let app = with_token(b).await;
    let held = app.create_url("http://10.0.0.1/old").await;
    // Stored as the earlier version did: the raw spelling, holding the link it matched.
    let store = app.store.admin().expect("admin store");
    let (at, added) = crate::old_blocklist::store_old_spelling(store, Some("old")).await;
    assert!(added);
    let hold =
        sluice_connectors::LinkHold { source: "blocklist:::ffff:10.0.0.1".into(), reason: Some("old".into()), actor: "admin-token".into(), created_at: at };
    assert!(store.hold_link(&held, &hold, at, None).await.expect("hold the link").changed);

    for (i, target) in ["http://10.0.0.1/", "http://[::ffff:10.0.0.1]:8080/x"].into_iter().enumerate() {
        let alias = format!("old{i}");
        let err = app.post_json("/v1/links", &json!({"long_url": target, "custom_alias": alias})).await.assert_error(422, "policy_violation");
        assert_eq!(err["details"]["domain"], "10.0.0.1", "{target}");
        app.assert_no_link(&alias).await;
    }
    let list = admin(&app, Method::GET, "/v1/admin/blocklist", None).await.json();
    assert_eq!(list["items"], json!([{"pattern": "10.0.0.1", "reason": "old", "actor": "admin-token", "created_at": "2023-11-14T22:13:20Z"}]));
    let r = admin(&app, Method::POST, &format!("/v1/admin/links/{held}/enable"), None).await;
    assert_eq!(r.assert_error(409, "link_blocklisted")["details"]["patterns"], json!(["10.0.0.1"]));

    let r = admin(&app, Method::DELETE, "/v1/admin/blocklist/10.0.0.1", None).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let v = r.json();
    assert_eq!((&v["pattern"], codes(&v["released_links"])), (&json!("10.0.0.1"), vec![held.clone()]));
    assert_eq!(admin(&app, Method::GET, "/v1/admin/blocklist", None).await.json()["items"], json!([]));
    assert_eq!(app.get(&format!("/{held}")).await.location(), Some("http://10.0.0.1/old"));
    assert_eq!(app.post_json("/v1/links", &json!({"long_url": "http://10.0.0.1/"})).await.status, StatusCode::CREATED);
}

/// An IPv4 address on the blocklist (`[links] blocklist`, or at run time) is not bypassed by
/// its NAT64 spelling (RFC 6052 well-known prefix `64:ff9b::/96`, which reaches exactly that
/// host) nor by a 6to4 address of its site (RFC 3056 `2002:AABB:CCDD::/48`, routed through
/// that host), as it is not by the IPv4-mapped one: 422 `policy_violation` naming the entry,
/// no link; the local-use prefix `64:ff9b:1::/48` and other addresses are not the entry.
async fn nat64_spellings_of_a_blocklisted_ipv4_address_are_blocked(b: Backend) {
    let app = TestApp::start_with(b, |c| {
        c.admin.token = Some(sluice::config::Secret(TOKEN.into()));
        c.links.blocklist = vec!["203.0.113.9".into()];
    })
    .await;
    let r = admin(&app, Method::POST, "/v1/admin/blocklist", Some(json!({"pattern": "64:ff9b::198.51.100.7"}))).await;
    assert_eq!((r.status, &r.json()["entry"]["pattern"]), (StatusCode::CREATED, &json!("198.51.100.7")), "{:?}", r.body);
    for (i, (target, entry)) in [
        ("http://[64:ff9b::203.0.113.9]/", "203.0.113.9"),
        ("https://[64:ff9b::cb00:7109]:8443/x", "203.0.113.9"),
        ("http://[::ffff:203.0.113.9]/", "203.0.113.9"),
        ("http://[64:ff9b::198.51.100.7]/", "198.51.100.7"),
        ("http://[64:ff9b::c633:6407]/", "198.51.100.7"),
        ("http://198.51.100.7/", "198.51.100.7"),
        ("http://[2002:cb00:7109::1]/", "203.0.113.9"),
        ("https://[2002:cb00:7109:ffff::abcd]:8443/x", "203.0.113.9"),
    ]
    .into_iter()
    .enumerate()
    {
        let alias = format!("nat{i}");
        let err = app.post_json("/v1/links", &json!({"long_url": target, "custom_alias": alias})).await.assert_error(422, "policy_violation");
        assert_eq!(
            err,
            json!({"code": "policy_violation", "message": format!("destination domain \"{entry}\" is blocked"), "details": {"domain": entry}}),
            "{target}"
        );
        app.assert_no_link(&alias).await;
    }
    for target in [
        "http://[64:ff9b:1::cb00:7109]/",
        "http://[64:ff9b::203.0.113.10]/",
        "http://[64:ff9b::c633:6408]/",
        "http://[2002:cb00:710a::1]/",
        "http://[2003:cb00:7109::1]/",
    ] {
        let r = app.post_json("/v1/links", &json!({"long_url": target})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{target}: {:?}", r.body);
    }
}
