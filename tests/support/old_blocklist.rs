//! A blocklist entry as an earlier version stored it: `::ffff:10.0.0.1`, the IPv6 spelling
//! of an IPv4 address (today's entries are stored canonically, as `10.0.0.1`). Shared by the
//! admin API's and the dataflow feed's tests of reading such entries.

use chrono::{DateTime, Utc};
use serde_json::json;
use sluice_connectors::{AdminStore, AuditRecord, BlocklistEntry};

/// The stored spelling.
pub const OLD_PATTERN: &str = "::ffff:10.0.0.1";

/// Stores [`OLD_PATTERN`] with `reason` straight into `store` (bypassing the API's
/// normalization), holding no link; returns its creation instant and whether it was added.
pub async fn store_old_spelling(store: &dyn AdminStore, reason: Option<&str>) -> (DateTime<Utc>, bool) {
    let at = DateTime::from_timestamp_micros(1_700_000_000_000_000).expect("instant");
    let reason = reason.map(str::to_owned);
    let entry = BlocklistEntry { pattern: OLD_PATTERN.into(), reason: reason.clone(), actor: "admin-token".into(), created_at: at };
    let audit = AuditRecord {
        seq: 0,
        at,
        actor: "admin-token".into(),
        action: "blocklist.add".into(),
        target: OLD_PATTERN.into(),
        reason,
        origin_ip: None,
        details: json!({}),
    };
    let none = |_: &sluice_schemas::Link| false;
    let added = store.blocklist_add(&entry, &none, &audit).await.expect("store the old entry").added;
    (at, added)
}
