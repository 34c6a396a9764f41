//! `sluice migrate`: which link store it migrates, checked before anything is created.
//!
//! A store named explicitly (`--store`, or `[store] url` in the configuration) is there to
//! migrate: no directory is created for it, and a missing one is a usage error (exit 2)
//! naming it. The data directory (`--data-dir`, `[server] data-dir`) is created if missing,
//! as every command that writes into it does; a regular file given as it is a usage error
//! too.

use std::path::Path;

use crate::cli::MigrateArgs;
use crate::config::{Config, check_store_flag, check_store_location, create_data_dir};

/// Where `sluice migrate` finds the link store: `--store`, else `cfg`'s `[store] url`, else
/// the data directory of `cfg` (created if missing). `cfg` is the configuration loaded with
/// `args`' `--config` and `--data-dir`; `--store` was checked before it was loaded
/// ([`check_store_flag`], so that nothing is read first).
///
/// Errors: a usage error ([`crate::bench::BenchError::Usage`], exit 2) for a `[store] url` that
/// [`check_store_location`] refuses (a missing directory, named), and for a data directory
/// that is a file; the I/O error of a data directory that cannot be created.
pub fn store_location(args: &MigrateArgs, cfg: &Config) -> anyhow::Result<String> {
    let usage = crate::bench::usage_error;
    if let Some(store) = &args.store {
        return Ok(store.clone());
    }
    let url = cfg.store.url.trim();
    if !url.is_empty() {
        check_store_location(url, "[store] url").map_err(usage)?;
        return Ok(url.to_owned());
    }
    let dir = cfg.store_location();
    let dir = Path::new(dir.trim());
    // A file given as the data dir is a usage error (exit 2), as for every subcommand.
    create_data_dir(dir)?;
    Ok(dir.to_string_lossy().into_owned())
}

/// Checks `--store` before the configuration is read ([`check_store_flag`]).
///
/// Errors: [`crate::bench::BenchError::Usage`] (exit 2) with [`check_store_flag`]'s message.
pub fn check_store_arg(args: &MigrateArgs) -> anyhow::Result<()> {
    match &args.store {
        Some(store) => check_store_flag(store).map_err(crate::bench::usage_error),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::ConfigArgs;
    use crate::config::FlagOverrides;

    fn args(data_dir: &Path, store: Option<&str>) -> MigrateArgs {
        MigrateArgs { common: ConfigArgs { config: None, data_dir: Some(data_dir.to_path_buf()) }, store: store.map(str::to_owned) }
    }

    fn config(data_dir: &Path, store_url: &str) -> Config {
        let mut cfg = Config::load(None, &FlagOverrides { data_dir: Some(data_dir.to_path_buf()), ..FlagOverrides::default() }).expect("config");
        cfg.store.url = store_url.to_owned();
        cfg
    }

    fn refusal(e: anyhow::Error) -> (u8, String) {
        (crate::bench::exit_code(&e), format!("{e:#}"))
    }

    /// Finding: a `[store] url` in the configuration created the missing directories of its
    /// sqlite: file while `--store` refused them; `--data-dir <a file>` exited 1 while
    /// `--store <a file>` exited 2. Both named stores now create nothing and are refused with
    /// exit 2 naming the missing directory; a data dir that is a file is exit 2 too.
    #[test]
    fn a_configured_store_url_creates_no_directory_and_a_file_as_data_dir_is_a_usage_error() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data = tmp.path().join("data");
        let missing = tmp.path().join("nonexistent/dir");
        let url = format!("sqlite:{}/x.db", missing.display());
        let e = store_location(&args(&data, None), &config(&data, &url)).expect_err("missing directory");
        assert_eq!(
            refusal(e),
            (
                2,
                format!(
                    "[store] url \"{url}\": directory \"{}\" does not exist (the database file is created if missing, its directory is not)",
                    missing.display()
                )
            )
        );
        let host = "SQLITE://db.example/x.db";
        let e = store_location(&args(&data, None), &config(&data, host)).expect_err("a host");
        assert_eq!(
            refusal(e),
            (
                2,
                format!(
                    "[store] url: invalid configuration: link store URL \"{host}\" names the host \"db.example\": a sqlite: URL names a file on this \
                     machine; write sqlite:///<absolute path> (or sqlite://localhost/<absolute path>), or sqlite:<relative path>"
                )
            )
        );
        assert_eq!(std::fs::read_dir(tmp.path()).expect("ls").count(), 0, "nothing created");

        let file = tmp.path().join("afile");
        std::fs::write(&file, "").expect("write");
        let e = store_location(&args(&file, None), &config(&file, "")).expect_err("a file");
        assert_eq!(refusal(e), (2, format!("data dir \"{}\" is not a directory (check --data-dir or [server] data-dir)", file.display())));

        // What is fine: an existing directory's file (any scheme case), a missing data dir
        // (created), --store as given (checked before).
        let upper = format!("SQLITE:{}/x.db", tmp.path().display());
        assert_eq!(store_location(&args(&data, None), &config(&data, &upper)).expect("upper case"), upper);
        assert!(!data.exists());
        assert_eq!(store_location(&args(&data, None), &config(&data, "")).expect("data dir"), data.display().to_string());
        assert!(data.is_dir(), "the data dir is created");
        assert_eq!(store_location(&args(&data, Some("postgres://h/db")), &config(&data, &url)).expect("--store"), "postgres://h/db");
    }

    #[test]
    fn the_store_flag_is_checked_as_a_usage_error() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let e = check_store_arg(&args(tmp.path(), Some("sqlite:x.db?mode=bogus"))).expect_err("bad query");
        assert_eq!(
            refusal(e),
            (
                2,
                "--store: invalid configuration: link store URL \"sqlite:x.db?mode=bogus\" is not a valid sqlite: URL: unknown value \"bogus\" for `mode`"
                    .to_owned()
            )
        );
        check_store_arg(&args(tmp.path(), None)).expect("no --store");
    }
}
