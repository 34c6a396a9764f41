//! The data directory on the command line: created by the commands that write into it,
//! required to exist by the ones that only read or change what is there.

use std::path::Path;

use anyhow::{Context, bail};

/// Where a data directory comes from when no other flag names it.
const DATA_DIR_SOURCES: &str = "--data-dir or [server] data-dir";

/// Creates the data directory `dir` (and missing parents) unless it exists.
///
/// Errors: `dir` exists but is not a directory (a file given as `--data-dir`), or it
/// cannot be created (the I/O error as the cause).
pub fn create_data_dir(dir: &Path) -> anyhow::Result<()> {
    create_data_dir_named(dir, DATA_DIR_SOURCES)
}

/// [`create_data_dir`] for a directory `named` elsewhere (`"--store"`): the error says
/// `check <named>`.
pub fn create_data_dir_named(dir: &Path, named: &str) -> anyhow::Result<()> {
    if dir.exists() && !dir.is_dir() {
        bail!("data dir \"{}\" is not a directory (check {named})", dir.display());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("could not create data dir \"{}\"", dir.display()))
}

/// Checks that the data directory `dir` exists for a command that has `nothing_to` do
/// without it (`"tail"`, `"reset"`), creating nothing.
///
/// Errors: `dir` is not a directory (the message [`create_data_dir`] gives), or it does
/// not exist.
pub fn existing_data_dir(dir: &Path, nothing_to: &str) -> anyhow::Result<()> {
    if dir.exists() && !dir.is_dir() {
        bail!("data dir \"{}\" is not a directory (check {DATA_DIR_SOURCES})", dir.display());
    }
    if !dir.is_dir() {
        bail!("no data directory \"{}\": nothing to {nothing_to} (check {DATA_DIR_SOURCES})", dir.display());
    }
    Ok(())
}
