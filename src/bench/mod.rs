//! Benchmarks run by `sluice bench ...`.

pub mod dataflow;
pub mod redirect;
