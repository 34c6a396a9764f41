//! The visitor secret file of a data dir through the real binary: a directory where the file
//! belongs is named as a directory (exit 1, one line), whatever its mode; a secret file
//! readable by others gets the chmod hint.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};

fn sluice(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice")).args(args).env_remove("SLUICE_LOG").env_remove("NO_COLOR").output().expect("run sluice")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Finding: a `visitor_secret` directory got "is accessible by other users (mode 755); chmod
/// 600 it", and after that chmod "could not read ...: Is a directory (os error 21)".
#[test]
fn a_directory_in_place_of_the_visitor_secret_is_named_as_a_directory() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let secret = data.join("visitor_secret");
    std::fs::create_dir_all(&secret).expect("mkdir");
    let events = tmp.path().join("e.ndjson");
    std::fs::write(&events, "{\"event_id\":\"a\",\"code\":\"abc\",\"ts\":1710052200000,\"ip\":\"192.0.2.1\",\"user_agent\":\"\"}\n").expect("write");
    let (data_arg, events_arg) = (data.to_str().expect("utf-8"), events.to_str().expect("utf-8"));
    let want = format!(
        "error: \"{}\" is a directory, not the visitor secret file: move it out of the data dir, then restore the secret file from a \
         backup to keep visitor ids stable, or start again to generate a new secret (visitor ids then change, so returning visitors \
         count as new uniques), or set [visitor] secret\n",
        secret.display()
    );
    for mode in [0o755, 0o700] {
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(mode)).expect("chmod");
        let out = sluice(&["--log", "warn", "import", "--quiet", "--data-dir", data_arg, events_arg]);
        assert_eq!((out.status.code(), stderr(&out)), (Some(1), want.clone()), "import, mode {mode:o}");
        let listen = format!("127.0.0.1:{}", crate::child::free_port());
        let out = sluice(&["--log", "error", "serve", "--listen", &listen, "--data-dir", data_arg]);
        assert_eq!((out.status.code(), stderr(&out)), (Some(1), want.clone()), "serve, mode {mode:o}");
    }
    assert!(secret.is_dir(), "left as it was");

    // A secret file that others can read: the permissions are the problem, and chmod the fix.
    std::fs::remove_dir(&secret).expect("rmdir");
    std::fs::write(&secret, "ab".repeat(32)).expect("write");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = sluice(&["--log", "warn", "import", "--quiet", "--data-dir", data_arg, events_arg]);
    assert_eq!(
        (out.status.code(), stderr(&out)),
        (Some(1), format!("error: \"{}\" is accessible by other users (mode 644); chmod 600 it\n", secret.display()))
    );
}
