//! `Idempotency-Key` of `POST /v1/reports/export` across failures: the job and its key are
//! one write of the job table, so a retry with the same key after a failure (a link store
//! that stopped answering, a job table that could not be written, a crash) answers the one
//! job, never a second.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sluice_connectors::{IdempotencyRecord, LinkChange, LinkPatch, LinkStore, ListQuery, Result, UpdateOutcome};
use sluice_dataflows::clock::ManualClock;
use sluice_schemas::Link;

use super::JobsConfig;
use super::store::{JobRecord, JobStore, KeyRecord, KeyedPut};
use crate::reports::ReportsState;
use crate::reports::test_harness::*;
use crate::testing::MemoryLinkStore;

const NOW: &str = "2024-06-02T00:00:00Z";
const BODY: &str = r#"{"codes": ["ab"], "from": "2024-06-01T00:00:00Z", "to": "2024-06-02T00:00:00Z", "bucket": "day"}"#;

/// The memory link store, except that `idempotency_put` never returns while `stall` is set
/// (a database that stopped answering in the middle of a request).
#[derive(Default)]
struct StallingPuts {
    inner: MemoryLinkStore,
    stall: AtomicBool,
}

#[async_trait]
impl LinkStore for StallingPuts {
    fn backend(&self) -> &'static str {
        "stalling"
    }
    async fn insert(&self, link: &Link) -> Result<Link> {
        self.inner.insert(link).await
    }
    async fn get(&self, code: &str) -> Result<Option<Link>> {
        self.inner.get(code).await
    }
    async fn update(&self, code: &str, patch: &LinkPatch, expected_version: Option<i64>, now: DateTime<Utc>) -> Result<UpdateOutcome> {
        self.inner.update(code, patch, expected_version, now).await
    }
    async fn delete(&self, code: &str, expected_version: Option<i64>, now: DateTime<Utc>) -> Result<Link> {
        self.inner.delete(code, expected_version, now).await
    }
    async fn list(&self, query: &ListQuery) -> Result<Vec<(i64, Link)>> {
        self.inner.list(query).await
    }
    async fn changes_since(&self, after: i64, limit: u32) -> Result<Vec<(i64, LinkChange)>> {
        self.inner.changes_since(after, limit).await
    }
    async fn idempotency_get(&self, key: &str, now: DateTime<Utc>) -> Result<Option<IdempotencyRecord>> {
        self.inner.idempotency_get(key, now).await
    }
    async fn idempotency_put(&self, record: &IdempotencyRecord) -> Result<()> {
        if self.stall.load(Ordering::Acquire) {
            std::future::pending::<()>().await;
        }
        self.inner.idempotency_put(record).await
    }
}

async fn post(state: &ReportsState, key: &str) -> (StatusCode, Option<String>, Value) {
    let (st, h, b) = send_with(state, "POST", "/v1/reports/export", &[("idempotency-key", key)], Some(("application/json", BODY))).await;
    let replayed = h.get("idempotent-replayed").map(|v| v.to_str().expect("ascii").to_owned());
    (st, replayed, serde_json::from_slice(&b).expect("json body"))
}

fn job_ids(state: &ReportsState) -> Vec<String> {
    state.jobs().expect("runner").records().expect("records").into_iter().map(|r| r.job_id).collect()
}

/// The finding: a request cut off after its job was stored but before its key was (here the
/// link store, where the key used to go, stops answering and the client gives up) left a
/// job without a key, and the retry created a second one. The key now goes with the job:
/// the link store is not on the path, the first request answers, and the retries replay it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_a_request_cut_off_mid_way_answers_the_one_job() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(ms(NOW)));
    let mut h = Harness::pipeline(&[], clock.clone(), clock).await;
    let store = Arc::new(StallingPuts::default());
    insert_link(store.as_ref(), "ab").await;
    h.store = Arc::clone(&store) as Arc<dyn LinkStore>;
    let state = h.reports(dir.path(), JobsConfig::default());
    store.stall.store(true, Ordering::Release);
    let first = tokio::time::timeout(Duration::from_secs(5), post(&state, "k-cut")).await;
    store.stall.store(false, Ordering::Release);
    let (st, replayed, v) = first.expect("the first request answers (the link store is not on its path)");
    assert_eq!((st, replayed), (StatusCode::ACCEPTED, None), "{v}");
    let ids = job_ids(&state);
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(v["job_id"].as_str(), Some(ids[0].as_str()));
    for _ in 0..2 {
        let (st, replayed, again) = post(&state, "k-cut").await;
        assert_eq!((st, replayed.as_deref(), again["job_id"].as_str()), (StatusCode::ACCEPTED, Some("true"), Some(ids[0].as_str())));
    }
    assert_eq!(job_ids(&state), ids, "exactly one job");
}

/// The job table cannot be written (its file moved away while the server runs: 503): no job
/// and no key are stored, so the retry once it works creates the job, and the next retry
/// replays it — one job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_a_failed_write_creates_the_job_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = Harness::at(&["ab"], ms(NOW), dir.path()).await;
    let state = h.state();
    let table = dir.path().join(super::store::JOBS_FILE_NAME);
    let aside = dir.path().join("jobs.redb.aside");
    std::fs::rename(&table, &aside).expect("move the job table away");
    let (st, replayed, v) = post(state, "k-fail").await;
    assert_eq!((st, replayed, v["error"]["code"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, None, Some("jobs_store_unavailable")));
    std::fs::rename(&aside, &table).expect("put it back");
    assert_eq!(job_ids(state), Vec::<String>::new(), "nothing stored by the failed request");
    let (st, replayed, created) = post(state, "k-fail").await;
    assert_eq!((st, replayed), (StatusCode::ACCEPTED, None), "{created}");
    let (st, replayed, again) = post(state, "k-fail").await;
    assert_eq!((st, replayed.as_deref(), &again["job_id"]), (StatusCode::ACCEPTED, Some("true"), &created["job_id"]));
    assert_eq!(job_ids(state), vec![created["job_id"].as_str().expect("id").to_owned()], "exactly one job");
}

fn record(id: &str, created_at_ms: i64) -> JobRecord {
    JobRecord::queued(id.to_owned(), created_at_ms, super::file_check_tests::body_spec())
}

/// The table level: a job with a key is stored with its key or not at all; a key still
/// alive refuses another job (nothing written), survives a reopen (a crash after the
/// commit), and counts for exactly its time to live.
#[test]
fn a_keyed_job_and_its_key_are_one_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    const TTL: i64 = 86_400_000;
    let t0 = ms(NOW);
    let first = record("0190a6e0-0000-7000-8000-00000000000a", t0);
    let key = KeyRecord { request_hash: "h1".into(), job_id: first.job_id.clone(), created_at_ms: t0 };
    {
        let table = JobStore::open(dir.path()).expect("open");
        assert_eq!(table.put_keyed(&first, "k", "h1", TTL).expect("put"), KeyedPut::Stored);
        let second = record("0190a6e0-0000-7000-8000-00000000000b", t0 + 1000);
        assert_eq!(table.put_keyed(&second, "k", "h2", TTL).expect("put"), KeyedPut::KeyTaken(key.clone()));
        assert_eq!(table.get(&second.job_id).expect("get"), None, "the refused job is not stored");
    }
    let table = JobStore::open(dir.path()).expect("reopen");
    assert_eq!(table.all().expect("all"), vec![first.clone()]);
    assert_eq!(table.key("k", t0 + TTL - 1, TTL).expect("key"), Some(key));
    assert_eq!(table.key("k", t0 + TTL, TTL).expect("key"), None, "24 h later the key no longer counts");
    let later = record("0190a6e0-0000-7000-8000-00000000000c", t0 + TTL);
    assert_eq!(table.put_keyed(&later, "k", "h3", TTL).expect("put"), KeyedPut::Stored, "an expired key is taken over");
    table.expire_keys(t0 + TTL - 1).expect("expire");
    assert_eq!(table.key("k", t0 + TTL, TTL).expect("key").map(|k| k.job_id), Some(later.job_id.clone()), "a key stored after the cutoff stays");
    table.expire_keys(t0 + TTL).expect("expire");
    assert_eq!(table.key("k", t0, i64::MAX).expect("key"), None, "a key stored at or before the cutoff is deleted");
}
