//! A look at an existing SQLite link store file before SQLite opens it for the store.
//! SQLite takes a 0-byte file for a new, empty database and writes one into it: a
//! `links.db` truncated to 0 bytes would start as an empty store, every link lost without a
//! word. A file that is there must start with SQLite's header ([`check_header`]).
//! [`StoreTarget::check_existing_file`] also runs the store's full check (`PRAGMA
//! quick_check`) without writing, for `sluice serve` to run before it opens the click log.

use std::io::Read;
use std::path::{Path, PathBuf};

use sqlx::ConnectOptions;
use sqlx::sqlite::SqliteConnectOptions;

use super::StoreTarget;
use super::sqlite::{LINK_STORE_LOSES, check_integrity, lock_dir_of, open_error};
use crate::{Error, Result};

/// The first 16 bytes of every SQLite database file (the magic string of its header).
const MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// [`Error::StoreDamaged`]'s detail for a 0-byte file.
pub(super) const EMPTY_FILE: &str = "the file is empty (0 bytes): it holds no database, not even SQLite's header; if no link store was meant to be \
                                     there yet, remove the empty file and start again";

/// [`Error::StoreDamaged`]'s detail for a file that does not start with [`MAGIC`].
pub(super) const NOT_SQLITE: &str = "the file does not start with SQLite's header (\"SQLite format 3\"): it holds no SQLite database";

/// Refuses the link store file at `path` when it is there but cannot be a SQLite database:
/// 0 bytes, or not starting with SQLite's header. Reads at most 16 bytes and writes
/// nothing. A missing path passes (SQLite creates the file), and so do one that is no
/// regular file and one that cannot be read (the open names those).
///
/// Errors: [`Error::StoreDamaged`] naming the file.
pub(super) fn check_header(path: &Path) -> Result<()> {
    let Ok(meta) = std::fs::metadata(path) else { return Ok(()) };
    if !meta.is_file() {
        return Ok(());
    }
    let detail = if meta.len() == 0 {
        EMPTY_FILE
    } else {
        let mut head = Vec::with_capacity(MAGIC.len());
        let Ok(f) = std::fs::File::open(path) else { return Ok(()) };
        if f.take(MAGIC.len() as u64).read_to_end(&mut head).is_err() || head == MAGIC {
            return Ok(());
        }
        NOT_SQLITE
    };
    Err(Error::StoreDamaged { store: "link store", path: path.display().to_string(), detail: detail.to_owned(), loses: LINK_STORE_LOSES })
}

impl StoreTarget {
    /// Refuses this target's existing SQLite file when it is damaged: [`check_header`], then
    /// SQLite's `PRAGMA quick_check` (the store's own check at open, reading the whole file
    /// once) on a read-only connection of its own, under the lock every SQLite open of its
    /// directory takes (so a store another process is creating is looked at once it is
    /// written). Nothing for PostgreSQL or a missing file. Writes nothing to the file: `sluice
    /// serve` runs it before it opens the click log, so that a start refused for a damaged
    /// `links.db` leaves `clicks.redb` as it was (its open and close commit to it).
    ///
    /// Returns what was checked, for [`super::open_store_checked`] (which then does not read
    /// the whole file a second time when nothing changed since); `None` when nothing was (no
    /// SQLite file, or one the check could not open: the store's open reports why).
    ///
    /// Errors: [`Error::StoreDamaged`]; [`Error::Config`] when the directory cannot be
    /// locked, or for a `sqlite:` URL sqlx does not parse.
    pub async fn check_existing_file(&self) -> Result<Option<CheckedStoreFile>> {
        let Some(file) = self.sqlite_file()? else { return Ok(None) };
        if !file.is_file() {
            return Ok(None);
        }
        let _lock = lock_dir_of(&file).await?;
        check_header(&file)?;
        let opts = match self {
            StoreTarget::SqliteUrl(url) => <SqliteConnectOptions as std::str::FromStr>::from_str(url)?,
            _ => SqliteConnectOptions::new().filename(&file),
        };
        let before = FileStamp::of(&file);
        // A read-only connection may create the `-wal` and `-shm` files and cannot remove them
        // (only a writer's last close does): those it created are removed again, so that a
        // start refused later leaves the data dir as it found it. Safe: they were missing, so
        // no connection had the file open, and no store opens it while the lock is held.
        let companions: Vec<PathBuf> = ["-wal", "-shm"]
            .iter()
            .map(|suffix| {
                let mut p = file.as_os_str().to_owned();
                p.push(suffix);
                PathBuf::from(p)
            })
            .filter(|p| !p.exists())
            .collect();
        let checked = quick_check_read_only(opts, &file).await;
        for created in &companions {
            if let Err(e) = std::fs::remove_file(created)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::debug!(path = %created.display(), error = %e, "could not remove what the link store's check created");
            }
        }
        match checked? {
            false => Ok(None),
            // Not changed by anyone since, as far as its stamp tells.
            true => Ok(before.filter(|b| FileStamp::of(&file).as_ref() == Some(b)).map(|stamp| CheckedStoreFile { path: file, stamp })),
        }
    }
}

/// `PRAGMA quick_check` of the SQLite file `file` on a read-only connection of its own
/// (`opts`, never creating the file): `Ok(true)` when it passed, `Ok(false)` when it could
/// not run (the store's open reports why).
///
/// Errors: [`Error::StoreDamaged`].
async fn quick_check_read_only(opts: SqliteConnectOptions, file: &Path) -> Result<bool> {
    let opts = opts.create_if_missing(false).read_only(true).busy_timeout(std::time::Duration::from_secs(10));
    let checked = match opts.connect().await {
        Ok(mut conn) => {
            let checked = check_integrity(&mut conn, file).await;
            drop(sqlx::Connection::close(conn).await);
            checked
        }
        Err(e) => Err(open_error(file, e)),
    };
    match checked {
        Ok(()) => Ok(true),
        Err(damaged @ Error::StoreDamaged { .. }) => Err(damaged),
        Err(_) => Ok(false),
    }
}

/// An existing SQLite link store file that passed [`StoreTarget::check_existing_file`], and
/// how it was then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedStoreFile {
    path: PathBuf,
    stamp: FileStamp,
}

impl CheckedStoreFile {
    /// Whether the file at `path` is the one checked, unchanged since (its stamp).
    pub(super) fn is_current(&self, path: &Path) -> bool {
        self.path == path && FileStamp::of(path).as_ref() == Some(&self.stamp)
    }
}

/// What tells a SQLite file changed: its device, inode, length and modification time, and
/// the length and modification time of its `-wal` file (`None` when there is none or it is
/// empty).
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    id: crate::file_id::FileId,
    len: u64,
    modified: std::time::SystemTime,
    wal: Option<(u64, std::time::SystemTime)>,
}

impl FileStamp {
    /// The stamp of the file at `path` (`None` when it cannot be read).
    fn of(path: &Path) -> Option<FileStamp> {
        let meta = std::fs::metadata(path).ok()?;
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        let wal = match std::fs::metadata(PathBuf::from(wal)) {
            // An empty `-wal` holds nothing (a read-only connection may create one).
            Ok(m) if m.len() == 0 => None,
            Ok(m) => Some((m.len(), m.modified().ok()?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(_) => return None,
        };
        Some(FileStamp { id: crate::file_id::id_of(&meta), len: meta.len(), modified: meta.modified().ok()?, wal })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 0-byte `links.db` and one that does not start with SQLite's header are refused
    /// by every open (`sluice migrate` too), naming the file and what to do, and left as they
    /// were; a missing one is created.
    /// Finding: a `links.db` damaged in the middle (its header intact) was refused only by
    /// the store's open, after `sluice serve` had opened the click log. The look before the
    /// open runs `PRAGMA quick_check` too, refusing it as the open does, and leaves it as it was.
    #[tokio::test]
    async fn a_store_file_damaged_mid_file_is_refused_by_the_look_before_the_open() {
        use super::super::LinkStore as _;
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = super::super::SqliteLinkStore::open_dir(tmp.path()).await.expect("created");
        for i in 0..300 {
            store.insert(&super::super::sqlite::tests::link(&format!("mid-{i}"))).await.expect("insert");
        }
        store.close().await;
        let path = tmp.path().join("links.db");
        let mut bytes = std::fs::read(&path).expect("read");
        let mid = bytes.len() / 2;
        bytes[mid..mid + (16 << 10)].iter_mut().enumerate().for_each(|(i, b)| *b = (i * 31 + 7) as u8);
        std::fs::write(&path, &bytes).expect("write");
        let target = StoreTarget::parse(tmp.path().to_str().expect("utf-8")).expect("target");
        let looked = target.check_existing_file().await.expect_err("damaged").to_string();
        let opened = super::super::SqliteLinkStore::open_dir(tmp.path()).await.err().map(|e| e.to_string());
        assert!(looked.contains("PRAGMA quick_check found: "), "{looked}");
        assert_eq!(Some(looked), opened, "refused as the open refuses it");
        assert!(std::fs::read(&path).expect("read") == bytes, "left as it was");
    }

    #[tokio::test]
    async fn an_empty_or_headerless_store_file_is_damaged_not_new() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("links.db");
        for (content, detail) in [(&b""[..], EMPTY_FILE), (&b"garbage\n"[..], NOT_SQLITE)] {
            std::fs::write(&path, content).expect("write");
            let want = format!(
                "link store \"{p}\" is damaged and could not be repaired ({detail}); sluice will not start on it. Stop every process using this \
                 data dir, move the file aside (e.g. to {p}.damaged) and restore it from a backup, or start without it: {LINK_STORE_LOSES}",
                p = path.display()
            );
            let target = StoreTarget::parse(tmp.path().to_str().expect("utf-8")).expect("target");
            assert_eq!(target.check_existing_file().await.expect_err("damaged").to_string(), want);
            let opened = super::super::SqliteLinkStore::open_dir(tmp.path()).await;
            assert_eq!(opened.err().map(|e| e.to_string()), Some(want.clone()));
            let migrated = super::super::migrate(tmp.path().to_str().expect("utf-8")).await;
            assert_eq!(migrated.err().map(|e| e.to_string()), Some(want));
            assert_eq!(std::fs::read(&path).expect("read"), content, "left as it was");
        }
        std::fs::remove_file(&path).expect("remove");
        let target = StoreTarget::parse(tmp.path().to_str().expect("utf-8")).expect("target");
        target.check_existing_file().await.expect("a missing file is no damage");
        super::super::SqliteLinkStore::open_dir(tmp.path()).await.expect("created").close().await;
        let checked = target.check_existing_file().await.expect("a store it created").expect("checked");
        // The check writes nothing: the store's open that follows finds the file as checked.
        assert!(checked.is_current(&path), "{checked:?}");
        for companion in ["links.db-wal", "links.db-shm"] {
            assert!(!tmp.path().join(companion).exists(), "{companion} left behind by the check");
        }
        // `sluice migrate` of a new data dir creates the file and migrates it (its look at
        // what was applied must not leave a 0-byte file for the open to refuse).
        let new = tmp.path().join("new");
        let report = super::super::migrate(new.to_str().expect("utf-8")).await.expect("a new store");
        assert_eq!((report.before, report.after.is_empty()), (Vec::<i64>::new(), false));
    }
}
