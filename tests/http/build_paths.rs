//! Tests find the repository's files at run time, never through a path compiled into them.
//!
//! `./infra/test` builds every clone in one shared build directory, and cargo reuses a
//! crate's compiled tests for an identical crate in another directory (its fingerprints are
//! relative to the workspace). A path that `env!("CARGO_MANIFEST_DIR")` compiled in then
//! names the clone that built them, which may be gone (session 52: a CI clone's fixture
//! path failed a later run of the working copy). `std::env::var("CARGO_MANIFEST_DIR")`,
//! set by cargo test and nextest when they run a test, names the clone being tested.

use super::doc_links::{files_ending, repo};

/// Files that may compile the path in, and why: they are not tests.
const NOT_TESTS: [(&str, &str); 4] = [
    ("src/bench/dataflow.rs", "the bench's default corpus of a binary built in the clone"),
    ("dataflows/benches/", "cargo bench in the clone that built it"),
    ("dataflows/examples/", "cargo run --example in the clone that built it"),
    ("tests/http/build_paths.rs", "this file names the macro"),
];

#[test]
fn tests_read_the_manifest_dir_at_run_time() {
    let repo = repo();
    let mut files = Vec::new();
    files_ending(&repo, ".rs", &mut files);
    assert!(files.len() > 100, "found the sources: {}", files.len());
    let compiled_in = concat!("env!(\"CARGO_", "MANIFEST_DIR\")");
    let found: Vec<String> = files
        .iter()
        .map(|f| f.strip_prefix(&repo).expect("in repo").to_string_lossy().into_owned())
        .filter(|rel| !NOT_TESTS.iter().any(|(p, _)| rel.starts_with(p)))
        .filter(|rel| std::fs::read_to_string(repo.join(rel)).expect("read source").contains(compiled_in))
        .collect();
    assert!(found.is_empty(), "use std::env::var(\"CARGO_MANIFEST_DIR\") in {found:?}");
}
