//! What a refused start leaves in the data dir: nothing it created. Start-up checks that can
//! refuse run at several points of [`super::system::System::start`], some after the link
//! store (`links.db`), the visitor secret, the click log or the anomaly store were created
//! (a Kafka, sink, webhook or anomaly-store refusal; a link-store check). A first start
//! refused there would leave a data dir that looks used — a `visitor_secret` that is not the
//! one a fixed configuration names, a `links.db` the next start takes as the store — so the
//! start notes which entries the data dir held before ([`Before::look`]) and, when it is
//! refused, removes the ones it added ([`Before::remove_added`]), then the data dir itself
//! when the start created it and it is empty again.
//!
//! Only entries sluice's start creates are removed (`ADDED_BY_START`), and only while this
//! start holds the data dir: for roles `all` and `redirect`, the click log's exclusive lock
//! (a start refused before it holds the log removes nothing, since another process may be
//! using the dir). Role `api` takes no lock, so it removes nothing: a redirect process
//! sharing the dir may have created the same files after this start looked.
//!
//! `sluice import --data-dir` uses the same mechanism for an import that stores nothing
//! (`crate::import`): it holds the click log's lock while it removes what it added.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Entries of the data dir a start may create.
const ADDED_BY_START: &[&str] =
    &["clicks.redb", "links.db", "links.db-wal", "links.db-shm", "links.db-journal", "visitor_secret", "anomalies.redb", "exports", "checkpoints", "spill"];

/// The data dir's entries before a start (or an import).
#[derive(Debug)]
pub(crate) struct Before {
    dir: PathBuf,
    /// `None`: the data dir did not exist.
    names: Option<BTreeSet<String>>,
    /// The missing ancestors of a data dir that did not exist, nearest first: created with
    /// it (`create_dir_all`), removed with it.
    missing_parents: Vec<PathBuf>,
}

impl Before {
    /// Looks at `dir` before anything is created in it.
    pub(crate) fn look(dir: &Path) -> Before {
        let names = std::fs::read_dir(dir).ok().map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect());
        let missing_parents = if names.is_none() && std::fs::symlink_metadata(dir).is_err() {
            dir.ancestors().skip(1).take_while(|d| !d.as_os_str().is_empty() && std::fs::symlink_metadata(d).is_err()).map(Path::to_path_buf).collect()
        } else {
            Vec::new()
        };
        Before { dir: dir.to_path_buf(), names, missing_parents }
    }

    /// Whether the data dir existed when [`Self::look`] looked.
    pub(crate) fn existed(&self) -> bool {
        self.names.is_some()
    }

    /// Removes the entries of `ADDED_BY_START` that were not in the dir before, then the dir
    /// if it did not exist before and is empty now, and so its missing ancestors, nearest
    /// first, each while it is empty; returns the names removed. Failures are logged (the
    /// refusal's own error is what the caller reports).
    pub(crate) fn remove_added(&self) -> Vec<String> {
        let mut removed = Vec::new();
        for name in ADDED_BY_START {
            let path = self.dir.join(name);
            let was_there = self.names.as_ref().is_some_and(|n| n.contains(*name));
            let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
            if was_there {
                continue;
            }
            let gone = if meta.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
            match gone {
                Ok(()) => removed.push((*name).to_owned()),
                Err(e) => tracing::warn!(path = %path.display(), error = %e, "could not remove what the refused start created"),
            }
        }
        if self.names.is_none() {
            // Only when empty: anything else in it is not this start's.
            for d in std::iter::once(&self.dir).chain(&self.missing_parents) {
                if std::fs::remove_dir(d).is_err() {
                    break;
                }
            }
        }
        if !removed.is_empty() {
            tracing::info!(data_dir = %self.dir.display(), removed = ?removed, "removed what this run had created in the data dir");
        }
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut n: Vec<String> = std::fs::read_dir(dir).expect("read dir").map(|e| e.expect("entry").file_name().to_string_lossy().into_owned()).collect();
        n.sort();
        n
    }

    /// What was there stays (also a name sluice creates); what the start added goes; a file
    /// sluice never creates is left alone.
    #[test]
    fn only_entries_the_start_added_are_removed() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        std::fs::write(dir.join("anomalies.redb"), b"kept").expect("write");
        std::fs::write(dir.join("notes.txt"), b"kept").expect("write");
        let before = Before::look(dir);
        for f in ["links.db", "links.db-wal", "visitor_secret", "clicks.redb", "unknown.bin"] {
            std::fs::write(dir.join(f), b"new").expect("write");
        }
        std::fs::create_dir_all(dir.join("exports/x")).expect("mkdir");
        assert_eq!(before.remove_added(), vec!["clicks.redb", "links.db", "links.db-wal", "visitor_secret", "exports"]);
        assert_eq!(names(dir), vec!["anomalies.redb", "notes.txt", "unknown.bin"]);
        assert_eq!(std::fs::read(dir.join("anomalies.redb")).expect("read"), b"kept");
    }

    /// A data dir the start created is removed when it is empty again, kept otherwise.
    #[test]
    fn a_data_dir_the_start_created_goes_when_empty() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("data");
        let before = Before::look(&dir);
        std::fs::create_dir(&dir).expect("mkdir");
        std::fs::write(dir.join("links.db"), b"new").expect("write");
        assert_eq!(before.remove_added(), vec!["links.db"]);
        assert!(!dir.exists());
        std::fs::create_dir(&dir).expect("mkdir");
        std::fs::write(dir.join("other"), b"x").expect("write");
        assert_eq!(before.remove_added(), Vec::<String>::new());
        assert_eq!(names(&dir), vec!["other"]);
    }

    /// The missing parents created with the data dir go with it, nearest first, each while
    /// empty: the first that holds something else stays, and so do its ancestors.
    #[test]
    fn missing_parents_created_with_the_data_dir_go_with_it() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("a/b/c");
        let before = Before::look(&dir);
        assert!(!before.existed());
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("visitor_secret"), b"new").expect("write");
        assert_eq!(before.remove_added(), vec!["visitor_secret"]);
        assert_eq!(names(tmp.path()), Vec::<String>::new());
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(tmp.path().join("a/kept"), b"x").expect("write");
        assert_eq!(before.remove_added(), Vec::<String>::new());
        assert_eq!(names(&tmp.path().join("a")), vec!["kept"]);
        // A data dir that existed: nothing above it is touched, and it stays.
        let before = Before::look(&tmp.path().join("a"));
        assert!(before.existed());
        assert_eq!(before.remove_added(), Vec::<String>::new());
        assert_eq!(names(tmp.path()), vec!["a"]);
    }
}
