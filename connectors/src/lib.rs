//! Connectors: everything in Sluice that talks to storage or another service.
//!
//! | module | what |
//! |---|---|
//! | [`link_store`] | the [`LinkStore`] trait and its SQLite (embedded default) and PostgreSQL implementations |
//! | [`anomaly_store`] | the embedded anomaly store (event sequence, latest states, webhooks) in `--data-dir` |
//! | [`click_log`] | the embedded append-only click log in `--data-dir` |
//! | `kafka` (feature `kafka`) | Kafka producer with local spill, consumer source, Avro values, topic admin |
//! | [`redb_open`] | opening an embedded redb file with the integrity check on (damaged files refused at open) |
//! | [`link_cache`] | the [`LinkCacheL2`] trait: second-level link cache of the redirect path |
//! | `redis` (feature `redis`) | Redis L2 link cache with cross-process invalidation, hot-view sink |
//! | `clickhouse` (feature `clickhouse-sink`) | ClickHouse migrations, rollup/event/anomaly sink, rollup queries |
//! | `test_fs` (tests; feature `test-support`) | test helpers: a small tmpfs to fill, a `tracing` log capture |
//!
//! Nothing here depends on `sluice-dataflows`.
#![deny(missing_docs)]

pub mod anomaly_store;
#[cfg(any(feature = "redis", feature = "clickhouse-sink"))]
mod backoff;
pub mod click_log;
#[cfg(feature = "clickhouse-sink")]
pub mod clickhouse;
pub mod error;
pub mod file_id;
mod io_episode;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod link_cache;
pub mod link_store;
pub mod redb_open;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(any(test, feature = "test-support"))]
pub mod test_fs;

pub use error::{Error, Result};
pub use link_cache::{Invalidation, L2Lookup, LinkCacheL2};
pub use link_store::{
    AdminStore, AuditQuery, AuditRecord, BlocklistEntry, CheckedStoreFile, DEFAULT_ACQUIRE_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, HOLD_ADMIN, HoldOutcome,
    IdempotencyRecord, LIVE_CODES_CHUNK, LinkChange, LinkHold, LinkPatch, LinkStore, ListQuery, MigrationReport, PostgresLinkStore, SqliteLinkStore,
    StoreTarget, StoreTimeouts, UpdateOutcome, as_inserted, migrate, migrate_within, open_store, open_store_checked, open_store_within,
};
