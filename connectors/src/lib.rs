//! Connectors: everything in Sluice that talks to storage or another service.
//!
//! | module | what |
//! |---|---|
//! | [`link_store`] | the [`LinkStore`] trait and its SQLite (embedded default) and PostgreSQL implementations |
//! | [`click_log`] | the embedded append-only click log in `--data-dir` |
//!
//! Nothing here depends on `sluice-dataflows`.
#![deny(missing_docs)]

pub mod click_log;
pub mod error;
pub mod link_store;

pub use error::{Error, Result};
pub use link_store::{LinkStore, ListQuery, LinkPatch, IdempotencyRecord, LinkChange};
