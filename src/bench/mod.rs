//! Benchmarks run by `sluice bench ...`.

pub mod dataflow;
pub mod freshness;
pub mod redirect;
