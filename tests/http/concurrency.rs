//! Atomic alias uniqueness under concurrent creates.

use std::sync::Arc;

use axum::http::StatusCode;
use serde_json::json;

use crate::backend_tests;
use crate::harness::{Backend, TestApp};

backend_tests!(two_hundred_concurrent_creates_of_one_alias_give_one_201);

async fn two_hundred_concurrent_creates_of_one_alias_give_one_201(b: Backend) {
    let app = Arc::new(TestApp::start(b).await);
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let app = app.clone();
            tokio::spawn(async move {
                let r = app.post_json("/v1/links", &json!({"long_url": format!("https://example.com/race/{i}"), "custom_alias": "race"})).await;
                (r.status, if r.status == StatusCode::CREATED { r.json()["long_url"].as_str().map(str::to_owned) } else { None })
            })
        })
        .collect();
    let mut created = Vec::new();
    let mut conflicts = 0;
    for t in tasks {
        let (status, url) = t.await.expect("join");
        match status {
            StatusCode::CREATED => created.push(url.expect("url")),
            StatusCode::CONFLICT => conflicts += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(created.len(), 1, "exactly one 201");
    assert_eq!(conflicts, 199);
    let stored = app.get("/v1/links/race").await.json();
    assert_eq!(stored["long_url"].as_str(), Some(created[0].as_str()), "the winner's target is stored");
    assert_eq!(app.get("/race").await.location(), Some(created[0].as_str()));
}
