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
    if let Err(not_a_dir) = check_data_dir_flag(dir) {
        bail!(not_a_dir);
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

/// Checks, for a command that creates a missing data directory (`sluice migrate`), that
/// `dir` is not something else: a refusal is a usage error, before anything is created.
///
/// Errors: `dir` exists but is not a directory (the message [`create_data_dir`] gives).
pub fn check_data_dir_flag(dir: &Path) -> Result<(), String> {
    if dir.exists() && !dir.is_dir() {
        return Err(format!("data dir \"{}\" is not a directory (check {DATA_DIR_SOURCES})", dir.display()));
    }
    Ok(())
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
}
