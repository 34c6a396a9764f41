//! sluice-dataflows: the incrementally maintained click-analytics graph (see README.md).
#![deny(missing_docs)]

pub mod error;
pub mod hash;
pub mod sketch;

pub use error::{Error, ErrorKind, Result};
