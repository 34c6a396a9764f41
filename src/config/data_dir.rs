//! The data directory on the command line: created by the commands that write into it,
//! required to exist by the ones that only read or change what is there.

use std::path::Path;

use anyhow::{Context, bail};

/// Where a data directory comes from when no other flag names it.
const DATA_DIR_SOURCES: &str = "--data-dir or [server] data-dir";

/// Creates the data directory `dir` (and missing parents) unless it exists.
///
/// Errors: `dir` exists but is not a directory (a file given as `--data-dir`: the usage
/// error of [`refuse_non_directory`], exit 2), or it cannot be created (the I/O error as the
/// cause).
pub fn create_data_dir(dir: &Path) -> anyhow::Result<()> {
    refuse_non_directory(dir)?;
    std::fs::create_dir_all(dir).with_context(|| format!("could not create data dir \"{}\"", dir.display()))
}

/// Checks that the data directory `dir` exists for a command that has `nothing_to` do
/// without it (`"tail"`, `"reset"`), creating nothing.
///
/// Errors: `dir` is not a directory (the usage error of [`refuse_non_directory`], exit 2),
/// or it does not exist.
pub fn existing_data_dir(dir: &Path, nothing_to: &str) -> anyhow::Result<()> {
    refuse_non_directory(dir)?;
    if !dir.is_dir() {
        bail!("no data directory \"{}\": nothing to {nothing_to} (check {DATA_DIR_SOURCES})", dir.display());
    }
    Ok(())
}

/// Checks a `sluice migrate --store` value before anything is read or created: `--store`
/// names a link store that is there to migrate, so unlike `--data-dir` (created if missing)
/// it creates no directory. Accepted: a `postgres://` / `postgresql://` URL; an existing
/// directory (its `links.db` is created if missing); a `sqlite:` URL whose file's directory
/// exists (the file is created if missing). Schemes in any case (`SQLITE:`).
///
/// Errors: as [`check_store_location`], the message naming `--store`.
pub fn check_store_flag(store: &str) -> Result<(), String> {
    check_store_location(store, "--store")
}

/// [`check_store_flag`] for a link store location `named` elsewhere (`"--store"`, or
/// `"[store] url"` for the configuration's): whatever names the store explicitly creates no
/// directory.
///
/// Errors (the message for a usage error naming `named` and the path): a URL of another
/// scheme (never echoed: it may hold a password), a location [`StoreTarget::parse`] refuses
/// (empty, in-memory, no file, a host other than localhost, a query sqlx refuses: saying
/// why), a directory that does not exist, a file given as the directory, a `sqlite:` URL
/// whose directory does not exist or is not a directory, or that names a directory.
pub fn check_store_location(store: &str, named: &str) -> Result<(), String> {
    use sluice_connectors::StoreTarget;
    if let Some((scheme, _)) = store.split_once("://")
        && !StoreTarget::is_url(store)
    {
        return Err(format!("{named} must be a data directory, a sqlite: URL or a postgres:// URL (got a URL with scheme {scheme:?})"));
    }
    let target = StoreTarget::parse(store).map_err(|e| format!("{named}: {e}"))?;
    let file = match (&target, target.sqlite_file()) {
        (StoreTarget::Postgres(_), _) => return Ok(()),
        (StoreTarget::SqliteDir(dir), _) if dir.is_dir() => return Ok(()),
        (StoreTarget::SqliteDir(dir), _) if dir.exists() => return Err(format!("data dir \"{}\" is not a directory (check {named})", dir.display())),
        (StoreTarget::SqliteDir(_), _) => {
            return Err(format!(
                "{named} \"{store}\": no such directory (a data directory given as {named} must exist, nothing is created: check the path, \
                 or give --data-dir, which creates a missing one)"
            ));
        }
        (StoreTarget::SqliteUrl(_), Ok(file)) => file.unwrap_or_default(),
        (StoreTarget::SqliteUrl(_), Err(e)) => return Err(format!("{named}: {e}")),
    };
    if file.is_dir() {
        return Err(format!("{named} \"{store}\": \"{}\" is a directory; name the database file in it, or give the directory without sqlite:", file.display()));
    }
    let parent = file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !parent.is_dir() {
        let what = if parent.exists() { "is not a directory" } else { "does not exist" };
        return Err(format!("{named} \"{store}\": directory \"{}\" {what} (the database file is created if missing, its directory is not)", parent.display()));
    }
    Ok(())
}

/// Checks that the data directory `dir` is not something else than a directory (it may be
/// missing): the message of [`refuse_non_directory`].
///
/// Errors: `dir` exists but is not a directory: `data dir "<dir>" is not a directory (check
/// --data-dir or [server] data-dir)`; `dir` is empty (from a config file or the
/// environment): `the data dir is empty: …`.
pub fn check_data_dir_flag(dir: &Path) -> Result<(), String> {
    if dir.as_os_str().is_empty() {
        // `--data-dir ""` is refused by clap; the same from a config file or the environment.
        return Err(format!("the data dir is empty: give a directory (check {DATA_DIR_SOURCES} or SLUICE__SERVER__DATA_DIR)"));
    }
    if dir.exists() && !dir.is_dir() {
        return Err(format!("data dir \"{}\" is not a directory (check {DATA_DIR_SOURCES})", dir.display()));
    }
    Ok(())
}

/// Refuses a data directory `dir` that exists but is not a directory (a regular file given as
/// `--data-dir`, `[server] data-dir` or `SLUICE__SERVER__DATA_DIR`) as a usage error, the
/// same for every subcommand that takes one (`serve`, `migrate`, `import`, `log tail`, `log
/// reset`, `demo`): each calls it before anything starts (no listener, no file created), and
/// [`create_data_dir`] and [`existing_data_dir`] call it too. A missing `dir` is fine here.
///
/// Errors: [`crate::bench::BenchError::Usage`] (exit code 2, as clap's own argument errors) with
/// [`check_data_dir_flag`]'s message naming `dir`.
pub fn refuse_non_directory(dir: &Path) -> anyhow::Result<()> {
    check_data_dir_flag(dir).map_err(crate::bench::usage_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Finding: `migrate --store sqlite:/nonexistent/dir/x.db` created the missing
    /// directories and `--store garbage` created `./garbage/links.db`. Both are refused now,
    /// naming the path, and nothing is created.
    #[test]
    fn a_store_flag_naming_a_missing_directory_is_refused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().display().to_string();
        let file = tmp.path().join("afile");
        std::fs::write(&file, "").expect("write");
        let f = file.display().to_string();
        let ok = [
            dir.clone(),
            format!("sqlite:{dir}/x.db"),
            format!("sqlite://{dir}/x.db"),
            format!("SQLITE:{dir}/x.db"),
            format!("sqlite://localhost{dir}/x.db"),
            format!("{dir}/"),
            "postgres://u:secret@h/db".to_owned(),
            "POSTGRES://u:secret@h/db".to_owned(),
        ];
        for store in &ok {
            assert_eq!(check_store_flag(store), Ok(()), "{store}");
        }
        let refused = [
            (format!("{dir}/garbage"), format!("--store \"{dir}/garbage\": no such directory (a data directory given as --store must exist, nothing is created: check the path, or give --data-dir, which creates a missing one)")),
            (format!("sqlite:{dir}/nonexistent/dir/x.db"), format!("--store \"sqlite:{dir}/nonexistent/dir/x.db\": directory \"{dir}/nonexistent/dir\" does not exist (the database file is created if missing, its directory is not)")),
            (format!("sqlite:{f}/x.db"), format!("--store \"sqlite:{f}/x.db\": directory \"{f}\" is not a directory (the database file is created if missing, its directory is not)")),
            (format!("sqlite:{dir}"), format!("--store \"sqlite:{dir}\": \"{dir}\" is a directory; name the database file in it, or give the directory without sqlite:")),
            (f.clone(), format!("data dir \"{f}\" is not a directory (check --store)")),
            (format!("SQLITE:{dir}/nonexistent/x.db"), format!("--store \"SQLITE:{dir}/nonexistent/x.db\": directory \"{dir}/nonexistent\" does not exist (the database file is created if missing, its directory is not)")),
            ("mysql://u:secret@h/db".to_owned(), "--store must be a data directory, a sqlite: URL or a postgres:// URL (got a URL with scheme \"mysql\")".to_owned()),
            ("sqlite::memory:".to_owned(), "--store: invalid configuration: link store URL \"sqlite::memory:\" is an in-memory SQLite database, which keeps no link past the process: name a database file, e.g. sqlite:///var/lib/sluice/links.db".to_owned()),
        ];
        for (store, message) in &refused {
            assert_eq!(check_store_flag(store).as_ref(), Err(message), "{store}");
        }
        assert_eq!(std::fs::read_dir(tmp.path()).expect("ls").count(), 1, "nothing created");
    }

    /// Finding: a file given as the data dir was a usage error (exit 2) of `migrate` only;
    /// `serve`, `import` and `log tail`/`reset` exited 1. The one check they all call, and
    /// the two that create or require the directory, give the same usage error.
    #[test]
    fn a_file_as_the_data_dir_is_the_same_usage_error_everywhere() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let file = tmp.path().join("afile");
        std::fs::write(&file, "").expect("write");
        let message = format!("data dir \"{}\" is not a directory (check --data-dir or [server] data-dir)", file.display());
        let refusal = |e: anyhow::Error| (crate::bench::exit_code(&e), format!("{e:#}"));
        assert_eq!(refusal(refuse_non_directory(&file).expect_err("a file")), (2, message.clone()));
        assert_eq!(refusal(create_data_dir(&file).expect_err("a file")), (2, message.clone()));
        assert_eq!(refusal(existing_data_dir(&file, "tail").expect_err("a file")), (2, message.clone()));
        assert_eq!(check_data_dir_flag(&file), Err(message));
        // Finding (attack, session 45): an empty data dir from the config or the environment
        // created the click log in the working directory, then failed on the link store.
        let empty = "the data dir is empty: give a directory (check --data-dir or [server] data-dir or SLUICE__SERVER__DATA_DIR)";
        assert_eq!(refusal(refuse_non_directory(Path::new("")).expect_err("empty")), (2, empty.to_owned()));
        assert_eq!(refusal(create_data_dir(Path::new("")).expect_err("empty")), (2, empty.to_owned()));
        // A directory, or a missing one, is no refusal here.
        refuse_non_directory(tmp.path()).expect("a directory");
        refuse_non_directory(&tmp.path().join("missing")).expect("missing");
        // A missing one is refused where it must exist, but not as a usage error.
        let missing = tmp.path().join("missing");
        assert_eq!(
            refusal(existing_data_dir(&missing, "tail").expect_err("missing")),
            (1, format!("no data directory \"{}\": nothing to tail (check --data-dir or [server] data-dir)", missing.display()))
        );
    }
}
