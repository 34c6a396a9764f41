//! Connectors: everything in Sluice that talks to storage or another service.
//!
//! | module | what |
//! |---|---|
//! | [`link_store`] | the [`LinkStore`] trait and its SQLite (embedded default) and PostgreSQL implementations |
//! | [`click_log`] | the embedded append-only click log in `--data-dir` |
//! | `kafka` (feature `kafka`) | Kafka producer with local spill, consumer source, Avro values, topic admin |
//!
//! Nothing here depends on `sluice-dataflows`.
#![deny(missing_docs)]

pub mod click_log;
pub mod error;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod link_store;

pub use error::{Error, Result};
pub use link_store::{
    migrate, open_store, IdempotencyRecord, LinkChange, LinkPatch, LinkStore, ListQuery, MigrationReport,
    PostgresLinkStore, SqliteLinkStore, StoreTarget,
};
