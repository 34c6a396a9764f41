//! `GET /v1/stats/summary?org=` over organisations set through the link API: `org` of
//! `POST /v1/links`, changed and removed by `PATCH /v1/links/{code}`; each click counts
//! under the organisation its link had when it was made. On both link stores.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::Server;

async fn create(s: &Server, alias: &str, org: Option<&str>) {
    let r = s
        .http
        .post(s.path("/v1/links"))
        .json(&json!({"long_url": format!("https://example.com/{alias}"), "custom_alias": alias, "org": org}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().await.unwrap_or_default());
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["org"], json!(org));
}

async fn set_org(s: &Server, code: &str, org: Option<&str>) {
    let r = s.http.patch(s.path(&format!("/v1/links/{code}"))).json(&json!({ "org": org })).send().await.expect("patch");
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap_or_default());
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["org"], json!(org));
}

async fn org_filtered_summaries_count_the_clicks_of_each_organisation(store_url: Option<&str>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = store_url.unwrap_or_default().to_owned();
    let s = Server::start_in(dir.path(), move |c| c.store.url = url).await;
    create(&s, "og-a", Some("acme")).await;
    create(&s, "og-b", Some("acme")).await;
    create(&s, "og-c", Some("beta")).await;
    create(&s, "og-d", None).await;
    s.click_n("og-a", 3).await;
    s.click_n("og-b", 2).await;
    s.click_n("og-c", 4).await;
    s.click_n("og-d", 1).await;
    // og-b moves to beta, og-a leaves acme, og-d joins acme: later clicks count there.
    set_org(&s, "og-b", Some("beta")).await;
    set_org(&s, "og-a", None).await;
    set_org(&s, "og-d", Some("acme")).await;
    s.click_n("og-b", 5).await;
    s.click_n("og-a", 1).await;
    s.click_n("og-d", 1).await;
    s.sync().await;

    let acme = (3 + 2 + 1, vec![("og-a".to_string(), 3), ("og-b".to_string(), 2), ("og-d".to_string(), 1)]);
    let beta = (4 + 5, vec![("og-b".to_string(), 5), ("og-c".to_string(), 4)]);
    assert_eq!(s.summary_top("?org=acme").await, acme);
    assert_eq!(s.summary_top("?org=beta").await, beta);
    assert_eq!(s.summary_top("?org=ACME").await, (0, vec![]), "organisations are case-sensitive");
    assert_eq!(s.summary_top("?org=gamma").await, (0, vec![]));
    assert_eq!(s.summary_top("").await.0, 3 + 2 + 4 + 1 + 5 + 1 + 1);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn org_filtered_summaries_count_the_clicks_of_each_organisation_sqlite() {
    org_filtered_summaries_count_the_clicks_of_each_organisation(None).await;
}

#[cfg(feature = "integration-tests")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn org_filtered_summaries_count_the_clicks_of_each_organisation_postgres() {
    let db = crate::pg::FreshDb::create("orgsum").await;
    org_filtered_summaries_count_the_clicks_of_each_organisation(Some(&db.url)).await;
    db.drop_now().await;
}
