//! The long-lived secret visitor-id salts are derived from (see `sluice_schemas::visitor`).
//! From the configuration when set; otherwise generated once (32 bytes from the OS CSPRNG)
//! into `DATA_DIR/visitor_secret` as 64 hex characters with mode 0600, and read back on
//! every later start, so visitor ids stay stable across restarts.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, bail};

use crate::config::parse_secret;

/// File name inside the data directory.
pub const FILE_NAME: &str = "visitor_secret";

/// The configured secret, or the one in `data_dir` (created when missing).
///
/// Errors: unreadable or malformed file, a file readable by group/others (mode not 0600),
/// or a failure creating it.
pub fn load_or_create(configured: Option<&str>, data_dir: &Path) -> anyhow::Result<[u8; 32]> {
    if let Some(s) = configured {
        return parse_secret(s);
    }
    let path = data_dir.join(FILE_NAME);
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path) {
        Ok(mut f) => {
            let mut secret = [0u8; 32];
            rand::fill(&mut secret);
            f.write_all(hex::encode(secret).as_bytes()).and_then(|()| f.sync_all()).with_context(|| format!("could not write \"{}\"", path.display()))?;
            // A click log already there means earlier runs used a secret that is now gone:
            // every returning visitor gets a new id and counts as a new unique.
            let earlier_data = data_dir.join(sluice_connectors::click_log::CLICK_LOG_FILE_NAME).exists();
            if earlier_data {
                tracing::warn!(path = %path.display(), "generated a NEW visitor secret in a data dir that already holds data: visitor ids change, so returning visitors count as new uniques (restore the old visitor_secret file to avoid this)");
            } else {
                tracing::info!(path = %path.display(), "generated visitor secret");
            }
            Ok(secret)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let mode = std::fs::metadata(&path).with_context(|| format!("could not stat \"{}\"", path.display()))?.permissions().mode();
            if mode & 0o077 != 0 {
                bail!("\"{}\" is accessible by other users (mode {:o}); chmod 600 it", path.display(), mode & 0o777);
            }
            let text = std::fs::read_to_string(&path).with_context(|| format!("could not read \"{}\"", path.display()))?;
            parse_secret(&text).with_context(|| format!("\"{}\" is not a valid secret", path.display()))
        }
        Err(e) => Err(e).with_context(|| format!("could not create \"{}\"", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn refuses_world_readable_or_malformed_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(FILE_NAME);
        std::fs::write(&path, "ab".repeat(32)).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(load_or_create(None, dir.path()).is_err());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert_eq!(load_or_create(None, dir.path()).expect("valid"), [0xab; 32]);
        std::fs::write(&path, "not hex").expect("write");
        assert!(load_or_create(None, dir.path()).is_err());
    }
}
