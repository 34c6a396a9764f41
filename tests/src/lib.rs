//! Helpers shared by the end-to-end tests: spawning the real `sluice` binary, polling.
