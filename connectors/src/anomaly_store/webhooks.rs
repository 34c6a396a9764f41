//! Webhook subscriptions and their delivery records, in the anomaly store's file.
//!
//! A subscription keeps a **cursor**: the last anomaly event id the dispatcher has turned
//! into deliveries for it (set to the store's head when it is created, so a new webhook gets
//! events from then on). [`AnomalyStore::enqueue_deliveries`] creates the deliveries of a
//! range of events and advances the cursor in one transaction, so after a crash every event
//! is either enqueued once or not at all (and enqueued again from the cursor). Each delivery
//! keeps the request body it was created with ([`DeliveryRecord::body`]), so every attempt,
//! before and after a restart, sends the same bytes under one delivery id. A delivery
//! stays `pending` until an attempt succeeds or the attempts are exhausted; pending
//! deliveries are resumed at start-up ([`AnomalyStore::pending_deliveries`]). Delivery is at
//! least once: a crash between a successful attempt and its record repeats it.
//!
//! Tables: `webhooks` (id → [`WebhookRecord`] JSON), `deliveries` (webhook id ‖ delivery id
//! big-endian → [`DeliveryRecord`] JSON), `pending_deliveries` (same key → ()), `counters`
//! (`"delivery_id"` → last delivery id).

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};
use sluice_schemas::{AnomalyKind, Severity};

use super::{AnomalyStore, decode, encode, store_err};
use crate::error::Result;

pub(super) const WEBHOOKS: TableDefinition<&str, &[u8]> = TableDefinition::new("webhooks");
pub(super) const DELIVERIES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("deliveries");
pub(super) const PENDING: TableDefinition<&[u8], ()> = TableDefinition::new("pending_deliveries");
pub(super) const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");

pub(super) fn create_tables(txn: &WriteTransaction) -> Result<()> {
    txn.open_table(WEBHOOKS).map_err(|e| store_err("open", e))?;
    txn.open_table(DELIVERIES).map_err(|e| store_err("open", e))?;
    txn.open_table(PENDING).map_err(|e| store_err("open", e))?;
    txn.open_table(COUNTERS).map_err(|e| store_err("open", e))?;
    Ok(())
}

/// One webhook subscription as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookRecord {
    /// Id (UUIDv7, hyphenated lowercase; sorts by creation time).
    pub id: String,
    /// Where deliveries are POSTed (validated by the API before it is stored).
    pub url: String,
    /// Kinds delivered; empty = every kind.
    pub kinds: Vec<AnomalyKind>,
    /// Events below this severity are not delivered.
    pub min_severity: Severity,
    /// HMAC-SHA256 key of the signature header.
    pub secret: String,
    /// Creation time, ms since the epoch UTC.
    pub created_at_ms: i64,
    /// Last anomaly event id turned into deliveries (module docs).
    pub cursor: u64,
}

/// State of a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Not delivered yet; another attempt is due.
    Pending,
    /// An attempt got a 2xx answer.
    Succeeded,
    /// Every attempt failed (or the webhook was deleted meanwhile).
    Failed,
}

/// One attempt of a delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryAttempt {
    /// 1 for the first attempt.
    pub attempt: u32,
    /// When it started, ms since the epoch UTC.
    pub at_ms: i64,
    /// How long it took, ms.
    pub duration_ms: u64,
    /// HTTP status answered, if any.
    pub status_code: Option<u16>,
    /// Why it failed without an HTTP answer (connection refused, timeout, blocked address).
    pub error: Option<String>,
}

/// One delivery: one anomaly event to one webhook, with every attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    /// Delivery id (store-wide, monotonic from 1).
    pub delivery_id: u64,
    /// The webhook.
    pub webhook_id: String,
    /// The anomaly event delivered.
    pub event_id: u64,
    /// State.
    pub state: DeliveryState,
    /// When it was enqueued, ms since the epoch UTC.
    pub created_at_ms: i64,
    /// When the next attempt is due (pending deliveries), ms since the epoch UTC.
    pub next_attempt_at_ms: Option<i64>,
    /// Attempts so far, oldest first.
    pub attempts: Vec<DeliveryAttempt>,
    /// The request body every attempt sends, fixed when the delivery is created (`None` in
    /// records written before bodies were kept: the dispatcher builds it at the next attempt
    /// and keeps it from then on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

fn delivery_key(webhook_id: &str, delivery_id: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(webhook_id.len() + 9);
    k.extend_from_slice(webhook_id.as_bytes());
    k.push(0);
    k.extend_from_slice(&delivery_id.to_be_bytes());
    k
}

fn prefix_bounds(webhook_id: &str) -> (Vec<u8>, Vec<u8>) {
    let mut lo = webhook_id.as_bytes().to_vec();
    lo.push(0);
    let mut hi = webhook_id.as_bytes().to_vec();
    hi.push(1);
    (lo, hi)
}

impl AnomalyStore {
    /// Stores a new subscription with its cursor at the current head (returned in the
    /// record), unless `max` subscriptions exist already: then `None` and nothing is stored.
    /// The count and the insert are one write transaction (redb runs one at a time), so
    /// concurrent creates never store more than `max`.
    ///
    /// Errors: [`crate::Error::AnomalyStore`].
    pub fn create_webhook(&self, mut rec: WebhookRecord, max: usize) -> Result<Option<WebhookRecord>> {
        self.with_db_write(|db| {
            let txn = db.begin_write().map_err(|e| store_err("create a webhook", e))?;
            {
                let events = txn.open_table(super::EVENTS).map_err(|e| store_err("create a webhook", e))?;
                rec.cursor = events.last().map_err(|e| store_err("create a webhook", e))?.map_or(0, |(k, _)| k.value());
                let mut t = txn.open_table(WEBHOOKS).map_err(|e| store_err("create a webhook", e))?;
                let count = t.len().map_err(|e| store_err("create a webhook", e))?;
                if usize::try_from(count).unwrap_or(usize::MAX) >= max {
                    return Ok(None);
                }
                t.insert(rec.id.as_str(), encode(&rec)?.as_slice()).map_err(|e| store_err("create a webhook", e))?;
            }
            txn.commit().map_err(|e| store_err("create a webhook", e))?;
            Ok(Some(rec))
        })
    }

    /// Every subscription, oldest first (ids sort by creation time).
    ///
    /// Errors: [`crate::Error::AnomalyStore`], [`crate::Error::Corrupt`].
    pub fn webhooks(&self) -> Result<Vec<WebhookRecord>> {
        self.with_db(|db| {
            let txn = db.begin_read().map_err(|e| store_err("read webhooks", e))?;
            let t = txn.open_table(WEBHOOKS).map_err(|e| store_err("read webhooks", e))?;
            let mut out = Vec::new();
            for entry in t.iter().map_err(|e| store_err("read webhooks", e))? {
                let (_, v) = entry.map_err(|e| store_err("read webhooks", e))?;
                out.push(decode("webhook", v.value())?);
            }
            Ok(out)
        })
    }

    /// The subscription `id`, if any.
    ///
    /// Errors: [`crate::Error::AnomalyStore`], [`crate::Error::Corrupt`].
    pub fn webhook(&self, id: &str) -> Result<Option<WebhookRecord>> {
        self.with_db(|db| {
            let txn = db.begin_read().map_err(|e| store_err("read webhooks", e))?;
            let t = txn.open_table(WEBHOOKS).map_err(|e| store_err("read webhooks", e))?;
            match t.get(id).map_err(|e| store_err("read webhooks", e))? {
                Some(v) => Ok(Some(decode("webhook", v.value())?)),
                None => Ok(None),
            }
        })
    }

    /// Removes the subscription `id` and its pending deliveries (their records stay, marked
    /// failed only if an attempt was running; see the dispatcher). Returns whether it existed.
    ///
    /// Errors: [`crate::Error::AnomalyStore`].
    pub fn delete_webhook(&self, id: &str) -> Result<bool> {
        self.with_db_write(|db| {
            let txn = db.begin_write().map_err(|e| store_err("delete a webhook", e))?;
            let existed = {
                let mut t = txn.open_table(WEBHOOKS).map_err(|e| store_err("delete a webhook", e))?;
                let existed = t.remove(id).map_err(|e| store_err("delete a webhook", e))?.is_some();
                let mut pending = txn.open_table(PENDING).map_err(|e| store_err("delete a webhook", e))?;
                let (lo, hi) = prefix_bounds(id);
                pending.retain_in::<&[u8], _>(lo.as_slice()..hi.as_slice(), |_, _| false).map_err(|e| store_err("delete a webhook", e))?;
                existed
            };
            txn.commit().map_err(|e| store_err("delete a webhook", e))?;
            Ok(existed)
        })
    }

    /// Creates one pending delivery per `(event id, request body)` of `events` for webhook
    /// `webhook_id` (first attempt due at `now_ms`; the body is what every attempt sends) and
    /// sets its cursor to `cursor`, in one transaction.
    /// Returns the deliveries, or `None` when the webhook no longer exists or its cursor is
    /// already at or past `cursor` (another dispatcher got there first).
    ///
    /// Errors: [`crate::Error::AnomalyStore`], [`crate::Error::Corrupt`].
    pub fn enqueue_deliveries(&self, webhook_id: &str, events: &[(u64, String)], cursor: u64, now_ms: i64) -> Result<Option<Vec<DeliveryRecord>>> {
        self.with_db_write(|db| {
            let txn = db.begin_write().map_err(|e| store_err("enqueue webhook deliveries", e))?;
            let out = {
                let mut hooks = txn.open_table(WEBHOOKS).map_err(|e| store_err("enqueue webhook deliveries", e))?;
                let mut rec: WebhookRecord = match hooks.get(webhook_id).map_err(|e| store_err("enqueue webhook deliveries", e))? {
                    Some(v) => decode("webhook", v.value())?,
                    None => return Ok(None),
                };
                if rec.cursor >= cursor {
                    return Ok(None);
                }
                rec.cursor = cursor;
                hooks.insert(webhook_id, encode(&rec)?.as_slice()).map_err(|e| store_err("enqueue webhook deliveries", e))?;
                let mut counters = txn.open_table(COUNTERS).map_err(|e| store_err("enqueue webhook deliveries", e))?;
                let mut next = counters.get("delivery_id").map_err(|e| store_err("enqueue webhook deliveries", e))?.map_or(0, |v| v.value());
                let mut deliveries = txn.open_table(DELIVERIES).map_err(|e| store_err("enqueue webhook deliveries", e))?;
                let mut pending = txn.open_table(PENDING).map_err(|e| store_err("enqueue webhook deliveries", e))?;
                let mut out = Vec::with_capacity(events.len());
                for (event_id, body) in events {
                    next += 1;
                    let d = DeliveryRecord {
                        delivery_id: next,
                        webhook_id: webhook_id.to_string(),
                        event_id: *event_id,
                        state: DeliveryState::Pending,
                        created_at_ms: now_ms,
                        next_attempt_at_ms: Some(now_ms),
                        attempts: Vec::new(),
                        body: Some(body.clone()),
                    };
                    let k = delivery_key(webhook_id, next);
                    deliveries.insert(k.as_slice(), encode(&d)?.as_slice()).map_err(|e| store_err("enqueue webhook deliveries", e))?;
                    pending.insert(k.as_slice(), ()).map_err(|e| store_err("enqueue webhook deliveries", e))?;
                    out.push(d);
                }
                counters.insert("delivery_id", next).map_err(|e| store_err("enqueue webhook deliveries", e))?;
                out
            };
            txn.commit().map_err(|e| store_err("enqueue webhook deliveries", e))?;
            Ok(Some(out))
        })
    }

    /// Replaces a delivery's record (after an attempt); removes it from the pending set
    /// unless its state is pending. A delivery of a deleted webhook is still recorded.
    ///
    /// Errors: [`crate::Error::AnomalyStore`], [`crate::Error::Corrupt`].
    pub fn update_delivery(&self, d: &DeliveryRecord) -> Result<()> {
        self.with_db_write(|db| {
            let txn = db.begin_write().map_err(|e| store_err("record a webhook delivery", e))?;
            {
                let k = delivery_key(&d.webhook_id, d.delivery_id);
                let mut deliveries = txn.open_table(DELIVERIES).map_err(|e| store_err("record a webhook delivery", e))?;
                deliveries.insert(k.as_slice(), encode(d)?.as_slice()).map_err(|e| store_err("record a webhook delivery", e))?;
                if d.state != DeliveryState::Pending {
                    let mut pending = txn.open_table(PENDING).map_err(|e| store_err("record a webhook delivery", e))?;
                    pending.remove(k.as_slice()).map_err(|e| store_err("record a webhook delivery", e))?;
                }
            }
            txn.commit().map_err(|e| store_err("record a webhook delivery", e))
        })
    }

    /// Every pending delivery (to resume after a restart), by webhook then delivery id.
    ///
    /// Errors: [`crate::Error::AnomalyStore`], [`crate::Error::Corrupt`].
    pub fn pending_deliveries(&self) -> Result<Vec<DeliveryRecord>> {
        self.with_db(|db| {
            let txn = db.begin_read().map_err(|e| store_err("read webhook deliveries", e))?;
            let pending = txn.open_table(PENDING).map_err(|e| store_err("read webhook deliveries", e))?;
            let deliveries = txn.open_table(DELIVERIES).map_err(|e| store_err("read webhook deliveries", e))?;
            let mut out = Vec::new();
            for entry in pending.iter().map_err(|e| store_err("read webhook deliveries", e))? {
                let (k, _) = entry.map_err(|e| store_err("read webhook deliveries", e))?;
                if let Some(v) = deliveries.get(k.value()).map_err(|e| store_err("read webhook deliveries", e))? {
                    out.push(decode("webhook delivery", v.value())?);
                }
            }
            Ok(out)
        })
    }

    /// Deliveries of webhook `webhook_id`, newest first, with a delivery id below `before`
    /// when given; at most `limit`. Returns the page and whether more follow.
    ///
    /// Errors: [`crate::Error::AnomalyStore`], [`crate::Error::Corrupt`].
    pub fn deliveries(&self, webhook_id: &str, before: Option<u64>, limit: usize) -> Result<(Vec<DeliveryRecord>, bool)> {
        self.with_db(|db| {
            let txn = db.begin_read().map_err(|e| store_err("read webhook deliveries", e))?;
            let deliveries = txn.open_table(DELIVERIES).map_err(|e| store_err("read webhook deliveries", e))?;
            let (lo, hi) = prefix_bounds(webhook_id);
            let hi = match before {
                Some(b) => delivery_key(webhook_id, b),
                None => hi,
            };
            let mut out = Vec::new();
            for entry in deliveries.range::<&[u8]>(lo.as_slice()..hi.as_slice()).map_err(|e| store_err("read webhook deliveries", e))?.rev() {
                let (_, v) = entry.map_err(|e| store_err("read webhook deliveries", e))?;
                if out.len() == limit {
                    return Ok((out, true));
                }
                out.push(decode("webhook delivery", v.value())?);
            }
            Ok((out, false))
        })
    }
}
