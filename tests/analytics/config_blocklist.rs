//! `[links] blocklist` holds the links created before an entry was configured, from the
//! start that configures it on, exactly as a run-time entry (`POST /v1/admin/blocklist`)
//! does; a start without the entry releases them. On both link stores, through complete
//! in-process servers ([`sluice::job::system::System`]) restarted on one data dir.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{BROWSER_UA, Server};

/// A server on `dir` (and the PostgreSQL database `store_url`, else SQLite in `dir`) with
/// `blocklist` as `[links] blocklist`.
async fn start(dir: &std::path::Path, store_url: Option<&str>, blocklist: &[&str]) -> Server {
    let (url, list) = (store_url.unwrap_or_default().to_owned(), blocklist.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>());
    Server::start_in(dir, move |c| {
        c.store.url = url;
        c.links.blocklist = list;
        c.dataflow.meta_poll_interval = Duration::from_millis(100);
    })
    .await
}

/// A request with an optional JSON body: status and JSON body (`null` when there is none).
async fn call(s: &Server, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let mut req = s.http.request(method, s.path(path));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.expect("request");
    let status = r.status();
    let text = r.text().await.expect("body");
    (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).expect("json body") })
}

/// `GET /{code}`: status and `Location`.
async fn follow(s: &Server, code: &str) -> (u16, Option<String>) {
    let r = s.http.get(s.path(code)).header("user-agent", BROWSER_UA).send().await.expect("redirect");
    (r.status().as_u16(), r.headers().get("location").map(|v| v.to_str().expect("ascii").to_owned()))
}

/// The audit log, newest first, as `[action, actor, target, reason, origin_ip, details]`.
async fn audit(s: &Server) -> Vec<Value> {
    let (status, log) = call(s, Method::GET, "/v1/admin/audit", None).await;
    assert_eq!(status, StatusCode::OK, "{log}");
    log["items"].as_array().expect("items").iter().map(|e| json!([e["action"], e["actor"], e["target"], e["reason"], e["origin_ip"], e["details"]])).collect()
}

/// Waits until the dataflow's blocklist is `want`.
async fn feed_is(s: &Server, want: &[&str]) {
    let feed = s.system.job().and_then(sluice::job::DataflowJob::blocklist).expect("the dataflow's blocklist");
    let t0 = Instant::now();
    while feed.entries() != want {
        assert!(t0.elapsed() < Duration::from_secs(10), "the dataflow's blocklist becomes {want:?}: {:?}", feed.entries());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn configured_entries_hold_existing_links(store_url: Option<&str>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = start(dir.path(), store_url, &[]).await;
    for (alias, url) in [
        ("cb-a", "https://evil.example/a"),
        ("cb-b", "https://cdn.evil.example/b?x=1"),
        ("cb-ok", "https://notevil.example/ok"),
        ("cb-off", "https://evil.example/off"),
    ] {
        let (status, body) = call(&s, Method::POST, "/v1/links", Some(json!({"long_url": url, "custom_alias": alias}))).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    // cb-off is disabled by its owner.
    assert_eq!(call(&s, Method::PATCH, "/v1/links/cb-off", Some(json!({"enabled": false}))).await.0, StatusCode::OK);
    assert_eq!(follow(&s, "cb-a").await, (302, Some("https://evil.example/a".into())));
    s.stop().await;

    // Configured (in another spelling): from the first request on, the covered links are held.
    let s = start(dir.path(), store_url, &["Evil.Example."]).await;
    for code in ["cb-a", "cb-b", "cb-off"] {
        let (status, body) = call(&s, Method::GET, &format!("/{code}"), None).await;
        assert_eq!((status, &body["error"]["code"]), (StatusCode::NOT_FOUND, &json!("not_found")), "{code}: {body}");
        assert_eq!(follow(&s, code).await, (404, None), "{code}");
    }
    assert_eq!(follow(&s, "cb-ok").await, (302, Some("https://notevil.example/ok".into())));
    let (_, link) = call(&s, Method::GET, "/v1/links/cb-a", None).await;
    assert_eq!(link["enabled"], false, "{link}");
    // As under a run-time entry: a tags-only PATCH is applied and the link stays disabled;
    // the owner cannot re-enable it; an administrator cannot either.
    let (status, patched) = call(&s, Method::PATCH, "/v1/links/cb-a", Some(json!({"tags": ["kept"]}))).await;
    assert_eq!((status, &patched["tags"], &patched["enabled"]), (StatusCode::OK, &json!(["kept"]), &json!(false)), "{patched}");
    assert_eq!(follow(&s, "cb-a").await, (404, None));
    let (status, err) = call(&s, Method::PATCH, "/v1/links/cb-a", Some(json!({"enabled": true}))).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        err,
        json!({"error": {"code": "link_held", "message": "the link was disabled by an administrator and cannot be re-enabled by its owner", "details": {"code": "cb-a", "holds": ["blocklist:evil.example"]}}})
    );
    let (status, err) = call(&s, Method::POST, "/v1/admin/links/cb-b/enable", None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        err,
        json!({"error": {"code": "link_blocklisted", "message": "the link's target is blocklisted; remove the blocklist entry instead", "details": {"code": "cb-b", "patterns": ["evil.example"]}}})
    );
    // Listed as the configuration's, not as a run-time entry, and not removable at run time.
    assert_eq!(call(&s, Method::GET, "/v1/admin/blocklist", None).await, (StatusCode::OK, json!({"items": [], "config": ["evil.example"]})));
    let (status, err) = call(&s, Method::DELETE, "/v1/admin/blocklist/EVIL.example", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        err,
        json!({"error": {"code": "not_found", "message": "\"evil.example\" is in the configuration's [links] blocklist, not on the run-time blocklist: remove it from the configuration and restart the processes that serve the API", "details": {"pattern": "evil.example", "config": true}}})
    );
    // Adding it at run time finds it present, with the links it holds.
    let (status, added) = call(&s, Method::POST, "/v1/admin/blocklist", Some(json!({"pattern": "evil.example"}))).await;
    assert_eq!((status, &added["added"], &added["entry"]["actor"]), (StatusCode::OK, &json!(false), &json!("config")), "{added}");
    let held: Vec<&Value> = added["affected_links"].as_array().expect("affected_links").iter().map(|l| &l["code"]).collect();
    assert_eq!(held, [&json!("cb-a"), &json!("cb-b"), &json!("cb-off")]);
    // New links to it are still refused.
    let (status, err) = call(&s, Method::POST, "/v1/links", Some(json!({"long_url": "https://x.evil.example/"}))).await;
    assert_eq!((status, &err["error"]["code"]), (StatusCode::UNPROCESSABLE_ENTITY, &json!("policy_violation")), "{err}");
    // One audit record, by the configuration; the dataflow's detector gets the entry.
    let added_record = json!(["blocklist.add", "config", "evil.example", "listed in [links] blocklist", null, {"affected": ["cb-a", "cb-b", "cb-off"]}]);
    assert_eq!(audit(&s).await, std::slice::from_ref(&added_record));
    feed_is(&s, &["evil.example"]).await;
    s.stop().await;

    // The same configuration again: nothing new.
    let s = start(dir.path(), store_url, &["evil.example"]).await;
    assert_eq!(follow(&s, "cb-a").await, (404, None));
    assert_eq!(audit(&s).await, std::slice::from_ref(&added_record));
    s.stop().await;

    // Dropped from the configuration: released, each link as its owner left it.
    let s = start(dir.path(), store_url, &[]).await;
    assert_eq!(follow(&s, "cb-a").await, (302, Some("https://evil.example/a".into())));
    assert_eq!(follow(&s, "cb-b").await, (302, Some("https://cdn.evil.example/b?x=1".into())));
    assert_eq!(follow(&s, "cb-off").await, (404, None));
    let (_, link) = call(&s, Method::GET, "/v1/links/cb-a", None).await;
    assert_eq!((&link["enabled"], &link["tags"]), (&json!(true), &json!(["kept"])), "{link}");
    let (_, link) = call(&s, Method::GET, "/v1/links/cb-off", None).await;
    assert_eq!(link["enabled"], false, "{link}");
    assert_eq!(call(&s, Method::GET, "/v1/admin/blocklist", None).await, (StatusCode::OK, json!({"items": [], "config": []})));
    assert_eq!(
        audit(&s).await,
        [
            json!(["blocklist.remove", "config", "evil.example", "no longer listed in [links] blocklist", null, {"affected": ["cb-a", "cb-b", "cb-off"]}]),
            added_record
        ]
    );
    feed_is(&s, &[]).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_entries_hold_existing_links_sqlite() {
    configured_entries_hold_existing_links(None).await;
}

#[cfg(feature = "integration-tests")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_entries_hold_existing_links_postgres() {
    let db = crate::pg::FreshDb::create("cfgblock").await;
    configured_entries_hold_existing_links(Some(&db.url)).await;
    db.drop_now().await;
}

/// An administrator's entry for a domain the configuration lists too stays the
/// administrator's: the start adds nothing, `DELETE` refuses while the configuration lists
/// it, and once the configuration drops it the entry (and its holds) remain until removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_administrators_entry_outlives_the_configuration() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = start(dir.path(), None, &[]).await;
    assert_eq!(call(&s, Method::POST, "/v1/links", Some(json!({"long_url": "https://evil.example/a", "custom_alias": "ad-a"}))).await.0, StatusCode::CREATED);
    let (status, added) = call(&s, Method::POST, "/v1/admin/blocklist", Some(json!({"pattern": "evil.example", "reason": "phishing"}))).await;
    assert_eq!(status, StatusCode::CREATED, "{added}");
    s.stop().await;

    let s = start(dir.path(), None, &["evil.example"]).await;
    let (_, list) = call(&s, Method::GET, "/v1/admin/blocklist", None).await;
    assert_eq!((&list["items"][0]["actor"], &list["config"]), (&json!("loopback"), &json!(["evil.example"])), "{list}");
    let (status, refused) = call(&s, Method::DELETE, "/v1/admin/blocklist/evil.example", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Listed under `items`, so the message does not say it is not on the run-time blocklist.
    assert_eq!(
        refused,
        json!({"error": {"code": "not_found", "message": "\"evil.example\" is on the run-time blocklist and also in the configuration's [links] blocklist, which keeps it in force: remove it from the configuration and restart the processes that serve the API, then delete it here", "details": {"pattern": "evil.example", "config": true}}})
    );
    assert_eq!(audit(&s).await.len(), 1, "only the administrator's record");
    s.stop().await;

    let s = start(dir.path(), None, &[]).await;
    assert_eq!(follow(&s, "ad-a").await, (404, None));
    let (status, removed) = call(&s, Method::DELETE, "/v1/admin/blocklist/evil.example", None).await;
    assert_eq!(status, StatusCode::OK, "{removed}");
    assert_eq!(follow(&s, "ad-a").await, (302, Some("https://evil.example/a".into())));
    s.stop().await;
}
