//! sluice-dataflows (see README.md of this crate).
#![deny(missing_docs)]
