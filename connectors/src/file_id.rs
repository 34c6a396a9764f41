//! Which file is at a path: device and inode, so a store that keeps a file open can notice
//! the file was deleted or replaced behind it (the click log, the SQLite link store, the
//! export job table).

use std::path::Path;

/// Device and inode of a file (`(0, 0)` where inodes are not available).
pub type FileId = (u64, u64);

/// Device and inode of the file at `path`.
///
/// Errors: the `std::io::Error` of reading its metadata (e.g. `NotFound` once deleted).
#[cfg(unix)]
pub fn file_id(path: &Path) -> std::io::Result<FileId> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path)?;
    Ok((m.dev(), m.ino()))
}

/// The directory of `path` when it no longer exists (`rm -rf` of the data dir), for the
/// messages of a store whose file was removed with its directory.
pub(crate) fn missing_dir(path: &Path) -> Option<String> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty())?;
    matches!(std::fs::symlink_metadata(dir), Err(e) if e.kind() == std::io::ErrorKind::NotFound).then(|| dir.display().to_string())
}

/// Device and inode of a file from its metadata (e.g. of an open descriptor).
#[cfg(unix)]
pub fn id_of(m: &std::fs::Metadata) -> FileId {
    use std::os::unix::fs::MetadataExt;
    (m.dev(), m.ino())
}

/// Where inodes are not available: `(0, 0)`.
#[cfg(not(unix))]
pub fn id_of(_m: &std::fs::Metadata) -> FileId {
    (0, 0)
}

/// Where inodes are not available, only the presence of the file is checked.
#[cfg(not(unix))]
pub fn file_id(path: &Path) -> std::io::Result<FileId> {
    std::fs::metadata(path).map(|_| (0, 0))
}
