//! `Idempotency-Key` across processes: two API stacks, each with its own store connection
//! and its own per-key locks, on one link store (the same SQLite file; the same PostgreSQL
//! schema), as two `sluice serve --role api` on one data dir or one database.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use sluice_connectors::LinkStore;

use crate::backend_tests;
use crate::harness::{Backend, Resp, TestApp};

backend_tests!(one_key_and_one_alias_on_two_processes_is_one_link_and_one_answer);

/// Two stores on one database for `b`: `(first, second)`.
async fn two_stores(b: Backend, dir: &std::path::Path) -> (Arc<dyn LinkStore>, Arc<dyn LinkStore>) {
    match b {
        Backend::Sqlite => (
            Arc::new(sluice_connectors::SqliteLinkStore::open_dir(dir).await.expect("open sqlite store")),
            Arc::new(sluice_connectors::SqliteLinkStore::open_dir(dir).await.expect("open sqlite store again")),
        ),
        Backend::Postgres => {
            let url = std::env::var("SLUICE_POSTGRES_URL")
                .expect("feature integration-tests is on: SLUICE_POSTGRES_URL must name a PostgreSQL server (./infra/test starts one)");
            let schema = format!("idem_{}", uuid::Uuid::new_v4().simple());
            let first = sluice_connectors::PostgresLinkStore::connect_in_schema(&url, &schema).await.expect("open postgres store");
            let second = sluice_connectors::PostgresLinkStore::connect_in_schema(&url, &schema).await.expect("open postgres store again");
            (Arc::new(first), Arc::new(second))
        }
    }
}

async fn post(app: &TestApp, key: &str, body: &Value) -> Resp {
    app.request(Method::POST, "/v1/links", &[("content-type", "application/json"), ("idempotency-key", key)], Some(body.to_string())).await
}

/// Concurrent identical creates with one key and one custom alias, spread over two
/// processes: every answer is the same 201 (one original, the rest replays with its
/// headers), one link exists. The old order (link first, record second, the per-key lock
/// per process) answered some of them 409 `alias_conflict`. A different body with the key
/// is still 422 `idempotency_key_reused` (also with the same alias), another key with the
/// alias 409 `alias_conflict`.
async fn one_key_and_one_alias_on_two_processes_is_one_link_and_one_answer(b: Backend) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (first, second) = two_stores(b, dir.path()).await;
    let apps = [Arc::new(TestApp::over(first, |_| {})), Arc::new(TestApp::over(second, |_| {}))];
    for round in 0..3 {
        let key = format!("key-{round}");
        let alias = format!("two-procs-{round}");
        let body = json!({"long_url": "https://example.com/twice", "custom_alias": alias, "tags": ["t"]});
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let (app, key, body) = (Arc::clone(&apps[i % 2]), key.clone(), body.clone());
                tokio::spawn(async move { post(&app, &key, &body).await })
            })
            .collect();
        let mut answers = Vec::new();
        for t in tasks {
            answers.push(t.await.expect("join"));
        }
        let statuses: Vec<u16> = answers.iter().map(|r| r.status.as_u16()).collect();
        assert_eq!(statuses, vec![201; 16], "round {round}: {:?}", answers.iter().map(|r| String::from_utf8_lossy(&r.body).into_owned()).collect::<Vec<_>>());
        let originals: Vec<&Resp> = answers.iter().filter(|r| r.header("idempotent-replayed").is_none()).collect();
        assert_eq!(originals.len(), 1, "round {round}: one request created the link, the others replayed it");
        let original = originals[0];
        let v = original.json();
        assert_eq!(
            (v["code"].as_str(), v["long_url"].as_str(), &v["tags"], v["short_url"].as_str()),
            (Some(alias.as_str()), Some("https://example.com/twice"), &json!(["t"]), Some(format!("https://sho.rt.example/{alias}").as_str()))
        );
        for r in &answers {
            assert_eq!(r.body, original.body, "round {round}: byte-identical bodies");
            for h in ["etag", "location", "content-type", "cache-control"] {
                assert_eq!(r.header(h), original.header(h), "round {round}: {h}");
            }
        }
        for app in &apps {
            assert_eq!(app.get(&format!("/v1/links/{alias}")).await.json(), v, "round {round}: both processes read the one link");
            // A later retry on either process replays.
            let again = post(app, &key, &body).await;
            assert_eq!((again.status, again.header("idempotent-replayed"), &again.body), (StatusCode::CREATED, Some("true"), &original.body));
        }
        // Another body with the key: 422, with or without the alias.
        let changed = json!({"long_url": "https://example.com/other", "custom_alias": alias});
        let err = post(&apps[1], &key, &changed).await.assert_error(422, "idempotency_key_reused");
        assert_eq!(err, json!({"code": "idempotency_key_reused", "message": "Idempotency-Key was already used with a different request body"}));
        post(&apps[0], &key, &json!({"long_url": "https://example.com/other"})).await.assert_error(422, "idempotency_key_reused");
        // Another key with the taken alias: 409.
        let err = post(&apps[1], &format!("other-{round}"), &body).await.assert_error(409, "alias_conflict");
        assert_eq!(
            err,
            json!({"code": "alias_conflict", "message": format!("alias \"{alias}\" is already taken"), "details": {"alias": alias, "deleted": false, "retired": false}})
        );
    }
    let list = apps[0].get("/v1/links?limit=1000").await.json();
    let codes: BTreeSet<&str> = list["items"].as_array().expect("items").iter().map(|l| l["code"].as_str().expect("code")).collect();
    assert_eq!(codes, BTreeSet::from(["two-procs-0", "two-procs-1", "two-procs-2"]), "one link per key, nothing else");
}
