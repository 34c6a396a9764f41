//! Link metadata is versioned by event time: tag- and organisation-filtered summaries are the
//! same after a restart that replays the whole click log (no checkpoint) as they were live,
//! also for a deleted link and for a tag set that comes back.

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::Server;

async fn create(s: &Server, alias: &str, tags: &[&str]) {
    let r = s
        .http
        .post(s.path("/v1/links"))
        .json(&json!({"long_url": format!("https://example.com/{alias}"), "custom_alias": alias, "tags": tags}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().await.unwrap_or_default());
}

async fn retag(s: &Server, code: &str, tags: &[&str]) {
    let r = s.http.patch(s.path(&format!("/v1/links/{code}"))).json(&json!({ "tags": tags })).send().await.expect("patch");
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap_or_default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_filtered_summaries_survive_a_replay_without_checkpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let no_checkpoints = |c: &mut sluice::config::Config| c.dataflow.checkpoint_interval = std::time::Duration::ZERO;
    let s = Server::start_in(dir.path(), no_checkpoints).await;
    create(&s, "th-a", &["spring"]).await;
    create(&s, "th-gone", &["spring"]).await;
    s.click_n("th-a", 3).await;
    s.click_n("th-gone", 2).await;
    retag(&s, "th-a", &["autumn"]).await;
    s.click_n("th-a", 4).await;
    retag(&s, "th-a", &["spring"]).await;
    s.click_n("th-a", 1).await;
    let r = s.http.delete(s.path("/v1/links/th-gone")).send().await.expect("delete");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    s.sync().await;
    // Independently: th-a made 3 + 1 clicks under spring and 4 under autumn; th-gone 2 under
    // spring before it was deleted (in the totals, not listed).
    let want_spring = (6, vec![("th-a".to_string(), 4)]);
    let want_autumn = (4, vec![("th-a".to_string(), 4)]);
    assert_eq!(s.summary_top("?tag=spring").await, want_spring, "live");
    assert_eq!(s.summary_top("?tag=autumn").await, want_autumn, "live");
    s.stop().await;
    assert!(
        !dir.path().join("checkpoints").exists() || std::fs::read_dir(dir.path().join("checkpoints")).expect("dir").next().is_none(),
        "no checkpoint: the restart replays"
    );

    let s = Server::start_in(dir.path(), no_checkpoints).await;
    s.sync().await;
    assert_eq!(s.summary_top("?tag=spring").await, want_spring, "after the replay");
    assert_eq!(s.summary_top("?tag=autumn").await, want_autumn, "after the replay");
    assert_eq!(s.summary_top("?tag=winter").await, (0, vec![]));
    s.stop().await;
}
