//! Benchmarks run by `sluice bench ...`.

pub mod dataflow;
pub mod error;
pub mod freshness;
pub mod redirect;

pub use error::{BenchError, exit_code, usage_error};
