//! The visitor secret file of a data dir through the real binary: a directory where the file
//! belongs is named as a directory (exit 1, one line), whatever its mode; a secret file
//! readable by others gets the chmod hint; a configured secret other than the file's is used
//! with a warning.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};

fn sluice(args: &[&str]) -> Output {
    sluice_env(args, &[])
}

fn sluice_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .env_remove("SLUICE_LOG")
        .env_remove("KAFKA_BROKERS")
        .env_remove("NO_COLOR")
        .envs(env.iter().copied())
        .output()
        .expect("run sluice")
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

/// Attack of session 51: a configured `[visitor] secret` silently replaced the data dir's
/// `visitor_secret` file that earlier starts had used. It still wins (a cluster configures
/// one), but a different one is warned about, naming both fingerprints; the file stays.
#[test]
fn a_configured_secret_other_than_the_files_is_used_with_a_warning() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let events = tmp.path().join("e.ndjson");
    std::fs::write(&events, "{\"event_id\":\"a\",\"code\":\"abc\",\"ts\":1710052200000,\"ip\":\"192.0.2.1\",\"user_agent\":\"\"}\n").expect("write");
    let (data_arg, events_arg) = (data.to_str().expect("utf-8"), events.to_str().expect("utf-8"));
    let import = |env: &[(&str, &str)]| {
        let out = sluice_env(&["--log", "warn", "import", "--quiet", "--data-dir", data_arg, events_arg], env);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        stderr(&out)
    };
    let warning = "the configured [visitor] secret is not the one in the data dir's visitor_secret file";
    // The first import generates the file; the same secret configured is no news.
    assert!(!import(&[]).contains(warning));
    let file = std::fs::read_to_string(data.join("visitor_secret")).expect("secret file");
    assert!(!import(&[("SLUICE__VISITOR__SECRET", &file)]).contains(warning));
    // Another one: used, and warned about with both fingerprints.
    let other = if file.starts_with('a') { "b" } else { "a" }.repeat(64);
    let err = import(&[("SLUICE__VISITOR__SECRET", &other)]);
    let fp = |hex: &str| {
        let mut b = [0u8; 32];
        hex::decode_to_slice(hex.trim(), &mut b).expect("hex");
        sluice::visitor_secret::fingerprint(&b)
    };
    let line = err.lines().find(|l| l.contains(warning)).unwrap_or_else(|| panic!("warned: {err}"));
    assert!(line.contains(&format!("configured={}", fp(&other))) && line.contains(&format!("file={}", fp(&file))), "{line}");
    assert_eq!(std::fs::read_to_string(data.join("visitor_secret")).expect("secret file"), file, "the file stays");
}
