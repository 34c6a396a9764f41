//! A look at the first bytes of an existing SQLite link store file before SQLite opens it.
//! SQLite takes a 0-byte file for a new, empty database and writes one into it: a
//! `links.db` truncated to 0 bytes would start as an empty store, every link lost without a
//! word. A file that is there must start with SQLite's header.

use std::io::Read;
use std::path::Path;

use super::StoreTarget;
use super::sqlite::{LINK_STORE_LOSES, lock_dir_of};
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
    /// [`check_header`] of this target's SQLite file when it exists, under the lock every
    /// SQLite open of its directory takes (so a store another process is creating is looked
    /// at once its header is written); nothing for PostgreSQL. Writes nothing: `sluice serve`
    /// runs it before it opens the click log, so that a start refused for a damaged
    /// `links.db` leaves `clicks.redb` as it was (its open and close commit to it).
    ///
    /// Errors: [`Error::StoreDamaged`]; [`Error::Config`] when the directory cannot be
    /// locked, or for a `sqlite:` URL sqlx does not parse.
    pub async fn check_existing_file(&self) -> Result<()> {
        let Some(file) = self.sqlite_file()? else { return Ok(()) };
        if !file.is_file() {
            return Ok(());
        }
        let _lock = lock_dir_of(&file).await?;
        check_header(&file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 0-byte `links.db` and one that does not start with SQLite's header are refused
    /// by every open (`sluice migrate` too), naming the file and what to do, and left as they
    /// were; a missing one is created.
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
        target.check_existing_file().await.expect("a store it created");
        // `sluice migrate` of a new data dir creates the file and migrates it (its look at
        // what was applied must not leave a 0-byte file for the open to refuse).
        let new = tmp.path().join("new");
        let report = super::super::migrate(new.to_str().expect("utf-8")).await.expect("a new store");
        assert_eq!((report.before, report.after.is_empty()), (Vec::<i64>::new(), false));
    }
}
