//! Shared by the redirect crate's integration tests: a probe link store and a link builder.
// Each test binary compiles this module and uses a different part of it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use sluice_connectors::{Error, IdempotencyRecord, LinkChange, LinkPatch, LinkStore, ListQuery, Result, UpdateOutcome};
use sluice_schemas::{Link, RedirectType};

/// A store that only answers `get`, counts reads and can hold reads until released.
#[derive(Default)]
pub struct ProbeStore {
    pub links: Mutex<HashMap<String, Link>>,
    pub reads: AtomicUsize,
    pub gate: Mutex<Option<Arc<tokio::sync::Semaphore>>>,
}

fn unsupported<T>() -> Result<T> {
    Err(Error::Config("operation not offered by the cache-test store".into()))
}

#[async_trait]
impl LinkStore for ProbeStore {
    fn backend(&self) -> &'static str {
        "probe"
    }
    async fn insert(&self, _link: &Link) -> Result<Link> {
        unsupported()
    }
    async fn get(&self, code: &str) -> Result<Option<Link>> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        let snapshot = self.links.lock().get(code).cloned();
        let gate = self.gate.lock().clone();
        if let Some(g) = gate {
            let _permit = g.acquire().await.expect("gate open");
        }
        Ok(snapshot)
    }
    async fn update(&self, _c: &str, _p: &LinkPatch, _v: Option<i64>, _n: DateTime<Utc>) -> Result<UpdateOutcome> {
        unsupported()
    }
    async fn delete(&self, _c: &str, _v: Option<i64>, _n: DateTime<Utc>) -> Result<Link> {
        unsupported()
    }
    async fn list(&self, _q: &ListQuery) -> Result<Vec<(i64, Link)>> {
        unsupported()
    }
    async fn changes_since(&self, _a: i64, _l: u32) -> Result<Vec<(i64, LinkChange)>> {
        unsupported()
    }
    async fn idempotency_get(&self, _k: &str, _n: DateTime<Utc>) -> Result<Option<IdempotencyRecord>> {
        unsupported()
    }
    async fn idempotency_put(&self, _r: &IdempotencyRecord) -> Result<()> {
        unsupported()
    }
}

/// An enabled 302 link from `code` to `url`, created now, version 1.
pub fn link(code: &str, url: &str) -> Link {
    let now = Utc::now();
    Link {
        code: code.into(),
        long_url: url.into(),
        domain: None,
        expires_at: None,
        enabled: true,
        tags: vec![],
        redirect_type: RedirectType::Found,
        org: None,
        created_at: now,
        updated_at: now,
        version: 1,
    }
}
