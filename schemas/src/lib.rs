//! Shared contracts of Sluice: the domain types every other crate exchanges.
//!
//! This crate is the leaf of the workspace (see `../shared/DESIGN.md`): it holds the
//! event and link types, the Avro schema files under `schemas/avro/` (the source of truth
//! for wire encoding) and the visitor-id derivation. It does no I/O.
//!
//! Time values in events are **milliseconds since the Unix epoch, UTC** (`i64`).
#![deny(missing_docs)]

pub mod anomaly;
pub mod avro;
pub mod avro_wire;
pub mod click;
pub mod client_address;
pub mod error;
pub mod field_value;
pub mod form;
pub mod link;
pub mod media_type;
pub mod rfc3339;
pub mod rollup;
pub mod strict_json;
pub mod visitor;

pub use anomaly::{Anomaly, AnomalyKind, AnomalyStatus, Evidence, Severity, Tally};
pub use click::{ClickEvent, EnrichedClick};
pub use error::{Error, Result};
pub use link::{Link, LinkMeta, RedirectType};
pub use visitor::{VisitorSalt, truncate_ip, visitor_id};
