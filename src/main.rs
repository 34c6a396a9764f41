//! The `sluice` binary: CLI, configuration and wiring.
fn main() {}
