//! The long-lived secret visitor-id salts are derived from (see `sluice_schemas::visitor`).
//! From the configuration when set; otherwise generated once (32 bytes from the OS CSPRNG)
//! into `DATA_DIR/visitor_secret` as 64 hex characters with mode 0600, and read back on
//! every later start, so visitor ids stay stable across restarts.
//!
//! Several processes may start on one fresh data dir at once (`sluice serve --role redirect`
//! and `--role api`): the file is written whole under a temporary name and then linked into
//! place, which fails if it exists, so a process never reads a half-written file and every
//! process ends up with the one secret that won.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::config::parse_secret;

/// File name inside the data directory.
pub const FILE_NAME: &str = "visitor_secret";

/// A short fingerprint of `secret` for logs: the first 6 bytes, in hex, of SHA-256 over a
/// fixed label and the secret (FIPS 180-4). It names which secret a process uses, so the
/// processes of a cluster (or split redirect processes) can be checked to share one, without
/// revealing it.
pub fn fingerprint(secret: &[u8; 32]) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::new().chain_update(b"sluice visitor secret fingerprint\0").chain_update(secret).finalize();
    hex::encode(&digest[..6])
}

/// The configured secret, or the one in `data_dir` (created when missing, see module docs).
/// A configured secret that differs from the data dir's file is used, with a warning.
///
/// Errors: a path that is no regular file (a directory, say: named as such, before any mode
/// is looked at), a file readable by group/others (mode not 0600: a chmod hint), a file
/// that cannot be read (permission denied: the owner and mode to check), a malformed file,
/// or a failure creating it.
pub fn load_or_create(configured: Option<&str>, data_dir: &Path) -> anyhow::Result<[u8; 32]> {
    let earlier_data = data_dir.join(sluice_connectors::click_log::CLICK_LOG_FILE_NAME).exists();
    load_or_create_after(configured, data_dir, earlier_data)
}

/// [`load_or_create`] where `earlier_data` says whether the data dir held a click log
/// before this start (`sluice serve` opens the log first and looks before it does): a
/// secret generated then is logged as a warning (visitor ids change).
///
/// Errors: as [`load_or_create`].
pub fn load_or_create_after(configured: Option<&str>, data_dir: &Path, earlier_data: bool) -> anyhow::Result<[u8; 32]> {
    let path = data_dir.join(FILE_NAME);
    if let Some(s) = configured {
        let secret = parse_secret(s)?;
        warn_if_the_file_differs(&path, &secret);
        return Ok(secret);
    }
    if !path.exists() {
        let mut secret = [0u8; 32];
        rand::fill(&mut secret);
        if create_whole(data_dir, &path, &secret)? {
            // A click log already there means earlier runs used a secret that is now gone:
            // every returning visitor gets a new id and counts as a new unique.
            if earlier_data {
                tracing::warn!(path = %path.display(), "generated a NEW visitor secret in a data dir that already holds data: visitor ids change, so returning visitors count as new uniques (restore the old visitor_secret file to avoid this)");
            } else {
                tracing::info!(path = %path.display(), "generated visitor secret");
            }
            return Ok(secret);
        }
        // Another process created it first: use its secret.
    }
    let meta = std::fs::metadata(&path).with_context(|| format!("could not stat \"{}\"", path.display()))?;
    // What the path is comes first: no mode makes a directory (or a socket, a FIFO) readable
    // as the secret, so a chmod hint would only lead to the next error.
    if !meta.is_file() {
        bail!(
            "\"{}\" is {}, not the visitor secret file: move it out of the data dir, then restore the secret file \
             from a backup to keep visitor ids stable, or start again to generate a new secret (visitor ids then \
             change, so returning visitors count as new uniques), or set [visitor] secret",
            path.display(),
            kind_of(&meta)
        );
    }
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        bail!("\"{}\" is accessible by other users (mode {:o}); chmod 600 it", path.display(), mode & 0o777);
    }
    let text = std::fs::read_to_string(&path).map_err(|e| read_error(&path, e))?;
    parse_secret(&text).with_context(|| {
        format!(
            "\"{}\" is not a valid secret (it must hold 64 hex characters, as sluice writes it): restore it from a \
             backup to keep visitor ids stable; or delete it, and the next start generates a new secret (visitor ids \
             then change, so returning visitors count as new uniques); or set [visitor] secret",
            path.display()
        )
    })
}

/// Warns when the data dir's secret file (what earlier starts without a configured secret
/// used) holds another secret than the configured one: visitor ids change with it (attack of
/// session 51: the configured secret silently won). The file is left as it is; one that is
/// unreadable or malformed is not the configured secret's concern and is passed over.
fn warn_if_the_file_differs(path: &Path, configured: &[u8; 32]) {
    let Some(file) = std::fs::read_to_string(path).ok().and_then(|t| parse_secret(&t).ok()) else { return };
    if &file != configured {
        tracing::warn!(
            path = %path.display(),
            configured = %fingerprint(configured),
            file = %fingerprint(&file),
            "the configured [visitor] secret is not the one in the data dir's visitor_secret file, which starts without a configured secret used: visitor ids change, so returning visitors count as new uniques (configure the file's secret to keep them, or delete the file once the configured one is meant to stay)"
        );
    }
}

/// What a path that is no regular file is, for messages: "a directory", "a socket", ...
fn kind_of(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else {
        "no regular file"
    }
}

/// The error of a secret file (a regular file of mode 0600) that could not be read: a
/// permissions problem names the owner and mode to check (the file belongs to another user
/// than the one sluice runs as); anything else is reported as it is.
fn read_error(path: &Path, e: std::io::Error) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::PermissionDenied {
        let owner = std::fs::metadata(path).map(|m| std::os::unix::fs::MetadataExt::uid(&m)).ok();
        let owner = owner.map_or_else(String::new, |uid| format!(" (owner uid {uid})"));
        return anyhow::Error::new(e).context(format!(
            "could not read \"{}\"{owner}: it must belong to the user sluice runs as (uid {}) with mode 600 (chown it to that \
             user, then chmod 600 it)",
            path.display(),
            rustix::process::getuid().as_raw()
        ));
    }
    anyhow::Error::new(e).context(format!("could not read \"{}\"", path.display()))
}

/// What [`write_back_if_deleted`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretFile {
    /// Something is at the path (the file, or whatever was put there: left alone).
    Present,
    /// The file and its directory are gone (`rm -rf` of the data dir): written back once the
    /// directory exists again.
    DirMissing,
    /// The file was missing and has been written back from memory (mode 0600, atomically).
    WrittenBack,
}

/// Writes `secret` back to `DATA_DIR/visitor_secret` when the file is missing and the
/// directory exists, the way it was created (whole, mode 0600, fsync'd, linked into place
/// only while the path is free, the directory fsync'd): a secret deleted while `serve` runs
/// would otherwise be generated anew at the next start, changing every visitor id.
///
/// Errors: the file could not be written (the cause; tried again at the next call).
pub fn write_back_if_deleted(data_dir: &Path, secret: &[u8; 32]) -> anyhow::Result<SecretFile> {
    let path = data_dir.join(FILE_NAME);
    match std::fs::symlink_metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        _ => return Ok(SecretFile::Present),
    }
    if !data_dir.is_dir() {
        return Ok(SecretFile::DirMissing);
    }
    Ok(if create_whole(data_dir, &path, secret)? { SecretFile::WrittenBack } else { SecretFile::Present })
}

/// Spawns a task that runs [`write_back_if_deleted`] every `every` (the link store's check
/// period), logging an error when the file is found deleted and a warning when it is
/// written back. Ends when `alive` (the server's link store) is dropped.
pub fn watch(data_dir: PathBuf, secret: [u8; 32], alive: std::sync::Weak<dyn sluice_connectors::LinkStore>, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let path = data_dir.join(FILE_NAME);
        // The latest failure logged (logged once, not at every tick).
        let mut logged: Option<String> = None;
        loop {
            tick.tick().await;
            if alive.strong_count() == 0 {
                return;
            }
            let found = match write_back_if_deleted(&data_dir, &secret) {
                Ok(SecretFile::Present) => continue,
                Ok(SecretFile::WrittenBack) => {
                    tracing::warn!(path = %path.display(), "the visitor secret file was deleted while in use; written back from memory (visitor ids stay the same)");
                    logged = None;
                    continue;
                }
                Ok(SecretFile::DirMissing) => format!("its directory \"{}\" was removed too; written back once it exists again", data_dir.display()),
                Err(e) => format!("{e:#}"),
            };
            if logged.as_deref() != Some(found.as_str()) {
                tracing::error!(path = %path.display(), problem = %found, "the visitor secret file was deleted while in use; sluice writes it back from memory (if it stops before, the next start generates a new secret and visitor ids change)");
                logged = Some(found);
            }
        }
    })
}

/// Writes `secret` to a temporary file (mode 0600, fsync'd) and links it to `path`; returns
/// whether this call created `path` (`false`: it already existed, e.g. another process won).
fn create_whole(data_dir: &Path, path: &Path, secret: &[u8; 32]) -> anyhow::Result<bool> {
    let tmp = data_dir.join(format!(".{FILE_NAME}.{}.{:016x}.tmp", std::process::id(), rand::random::<u64>()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(hex::encode(secret).as_bytes()).and_then(|()| f.sync_all()))
        .with_context(|| format!("could not write \"{}\"", tmp.display()));
    let linked = written.and_then(|()| match std::fs::hard_link(&tmp, path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e).with_context(|| format!("could not create \"{}\"", path.display())),
    });
    let _ = std::fs::remove_file(&tmp);
    if linked? {
        // The new directory entry survives a crash.
        std::fs::File::open(data_dir).and_then(|d| d.sync_all()).with_context(|| format!("could not sync \"{}\"", data_dir.display()))?;
        return Ok(true);
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_sha256_of_the_label_and_the_secret() {
        // Expected values from Python: hashlib.sha256(b"sluice visitor secret fingerprint\x00" + secret).hexdigest()[:12]
        assert_eq!(fingerprint(&[0x5e; 32]), "a51acaa56cd6");
        assert_eq!(fingerprint(&[0; 32]), "153651a10096");
    }

    #[test]
    fn generated_once_with_0600_and_stable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = load_or_create(None, dir.path()).expect("create");
        let mode = std::fs::metadata(dir.path().join(FILE_NAME)).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let b = load_or_create(None, dir.path()).expect("read back");
        assert_eq!(a, b);
        assert_ne!(a, [0u8; 32]);
        let other = tempfile::tempdir().expect("tempdir");
        assert_ne!(load_or_create(None, other.path()).expect("create"), a, "fresh random per data dir");
        let configured = "11".repeat(32);
        assert_eq!(load_or_create(Some(&configured), dir.path()).expect("configured"), [0x11; 32]);
    }

    /// A damaged secret file is refused with a message naming the file, the expected form and
    /// the ways out (restore it, delete it and lose stable visitor ids, or configure one).
    #[test]
    fn a_damaged_secret_says_how_to_recover() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(FILE_NAME);
        std::fs::write(&path, "short").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let e = format!("{:#}", load_or_create(None, dir.path()).expect_err("damaged"));
        for part in [path.display().to_string().as_str(), "64 hex characters", "restore it", "delete it", "new uniques", "[visitor] secret"] {
            assert!(e.contains(part), "{part:?} missing from: {e}");
        }
    }

    /// Two processes starting on one fresh data dir (`--role redirect` and `--role api`) both
    /// load the secret at once: each must get the one secret, never a half-written file.
    #[test]
    fn concurrent_first_starts_agree_on_one_complete_secret() {
        for round in 0..200 {
            let dir = tempfile::tempdir().expect("tempdir");
            let barrier = std::sync::Barrier::new(4);
            let got: Vec<anyhow::Result<[u8; 32]>> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..4)
                    .map(|_| {
                        s.spawn(|| {
                            barrier.wait();
                            load_or_create(None, dir.path())
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().expect("thread")).collect()
            });
            let secrets: Vec<[u8; 32]> = got.into_iter().map(|r| r.unwrap_or_else(|e| panic!("round {round}: {e:#}"))).collect();
            assert!(secrets.iter().all(|s| *s == secrets[0]), "round {round}: one secret for all");
            assert_eq!(load_or_create(None, dir.path()).expect("read back"), secrets[0]);
            let names: Vec<String> = std::fs::read_dir(dir.path()).expect("ls").map(|e| e.expect("entry").file_name().to_string_lossy().into_owned()).collect();
            assert_eq!(names, vec![FILE_NAME.to_owned()], "round {round}: no temporary file left behind");
        }
    }

    /// A directory (or a socket) where the secret file belongs is named as what it is, whatever
    /// its mode: no chmod hint that would only lead to "Is a directory".
    #[test]
    fn a_directory_or_socket_in_place_of_the_file_is_named_as_such() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(FILE_NAME);
        std::fs::create_dir(&path).expect("mkdir");
        let tail = ", not the visitor secret file: move it out of the data dir, then restore the secret file from a backup to keep \
                    visitor ids stable, or start again to generate a new secret (visitor ids then change, so returning visitors \
                    count as new uniques), or set [visitor] secret";
        let want = format!("\"{}\" is a directory{tail}", path.display());
        for mode in [0o755, 0o700, 0o600] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
            assert_eq!(format!("{:#}", load_or_create(None, dir.path()).expect_err("a directory")), want, "mode {mode:o}");
        }
        std::fs::remove_dir(&path).expect("rmdir");
        let _socket = std::os::unix::net::UnixListener::bind(&path).expect("bind a socket");
        let want = format!("\"{}\" is a socket{tail}", path.display());
        assert_eq!(format!("{:#}", load_or_create(None, dir.path()).expect_err("a socket")), want);
    }

    /// A secret file that cannot be read for its permissions (it belongs to another user:
    /// root reads any file, so the error is made here) names the owner and what to do.
    #[test]
    fn a_permission_denied_read_names_owner_and_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(FILE_NAME);
        std::fs::write(&path, "ab".repeat(32)).expect("write");
        let denied = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let uid = rustix::process::getuid().as_raw();
        assert_eq!(
            format!("{:#}", read_error(&path, denied)),
            format!(
                "could not read \"{}\" (owner uid {uid}): it must belong to the user sluice runs as (uid {uid}) with mode 600 (chown it \
                 to that user, then chmod 600 it): permission denied",
                path.display()
            )
        );
        let other = std::io::Error::from(std::io::ErrorKind::InvalidData);
        assert_eq!(format!("{:#}", read_error(&path, other)), format!("could not read \"{}\": invalid data", path.display()));
    }

    /// A secret file deleted while serving is written back from memory with mode 0600 (the
    /// same bytes, as 64 hex characters); with its directory gone it waits for the directory;
    /// another file at the path is left alone.
    #[test]
    fn a_deleted_secret_is_written_back_from_memory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        std::fs::create_dir(&data).expect("mkdir");
        let secret = load_or_create(None, &data).expect("create");
        let path = data.join(FILE_NAME);
        assert_eq!(write_back_if_deleted(&data, &secret).expect("check"), SecretFile::Present);
        std::fs::remove_dir_all(&data).expect("rm -rf");
        assert_eq!(write_back_if_deleted(&data, &secret).expect("check"), SecretFile::DirMissing);
        assert!(!data.exists(), "the directory is not created again");
        std::fs::create_dir_all(&data).expect("mkdir -p");
        assert_eq!(write_back_if_deleted(&data, &secret).expect("check"), SecretFile::WrittenBack);
        assert_eq!(std::fs::read_to_string(&path).expect("read"), hex::encode(secret));
        assert_eq!(std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777, 0o600);
        assert_eq!(load_or_create(None, &data).expect("read back"), secret);
        std::fs::remove_file(&path).expect("rm");
        std::fs::write(&path, "other").expect("another file");
        assert_eq!(write_back_if_deleted(&data, &secret).expect("check"), SecretFile::Present);
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "other", "left alone");
        let names: Vec<String> = std::fs::read_dir(&data).expect("ls").map(|e| e.expect("entry").file_name().to_string_lossy().into_owned()).collect();
        assert_eq!(names, vec![FILE_NAME.to_owned()], "no temporary file left behind");
    }

    #[test]
    fn refuses_world_readable_or_malformed_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(FILE_NAME);
        std::fs::write(&path, "ab".repeat(32)).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert_eq!(
            format!("{:#}", load_or_create(None, dir.path()).expect_err("mode 644")),
            format!("\"{}\" is accessible by other users (mode 644); chmod 600 it", path.display())
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert_eq!(load_or_create(None, dir.path()).expect("valid"), [0xab; 32]);
        std::fs::write(&path, "not hex").expect("write");
        assert!(load_or_create(None, dir.path()).is_err());
    }
}
