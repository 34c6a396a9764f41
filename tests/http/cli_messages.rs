//! Messages and exit codes of the real binary for values refused before anything starts:
//! durations past their maximum (`config::bounds`), a regular file given as the data dir,
//! an import that stored nothing, refused `loadgen` flags.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::cli_run::{sluice_quiet, text};

/// Runs `sluice --log warn <args>` with `env` and no configuration from the environment;
/// kills it after 60 s (a start that is not refused would serve forever).
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
    cmd.args(["--log", "warn"]).args(args).env_remove("SLUICE_LOG").env_remove("KAFKA_BROKERS").env_remove("SLUICE__STORE__URL");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn sluice");
    let started = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > Duration::from_secs(60) {
            child.kill().expect("kill");
            panic!("sluice {args:?} {env:?} was not refused within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

fn utf8(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Finding: huge durations panicked the click writer, every connection, or the start
/// (moka), leaving the new data dir's files behind. Now the start is refused, exit 1, and
/// the data dir is not created.
#[test]
fn serve_refuses_a_duration_past_its_maximum_naming_the_key_and_creates_no_data_dir() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("new-data");
    let cases = [
        ("SLUICE__REDIRECT__CLICK_LOG_LINGER", "18446744073709551615s", "redirect.click-log-linger must be at most 1s, e.g. \"20ms\""),
        ("SLUICE__SERVER__HEADER_READ_TIMEOUT", "18446744073709551615s", "server.header-read-timeout must be at most 1h, e.g. \"30s\""),
        ("SLUICE__REDIRECT__CACHE_TTL", "2000years", "redirect.cache-ttl must be at most 365days, e.g. \"60s\""),
        ("SLUICE__REDIRECT__CACHE_TTL", "18446744073709551615s", "redirect.cache-ttl must be at most 365days, e.g. \"60s\""),
        ("SLUICE__REDIRECT__NEGATIVE_TTL", "18446744073709551615s", "redirect.negative-ttl must be at most 1day, e.g. \"5s\""),
        ("SLUICE__SERVER__WORKER_SLICE", "10s", "server.worker-slice must be at most 100ms, e.g. \"100us\""),
    ];
    for (var, value, msg) in cases {
        let out = run(&["serve", "--listen", "127.0.0.1:0", "--data-dir", utf8(&data)], &[(var, value)]);
        assert_eq!((out.status.code(), text(&out.stderr)), (Some(1), format!("error: {msg}\n")), "{var}={value}");
        assert!(!data.exists(), "{var}={value}: no data dir created");
    }
    // From a file: the message says where the configuration came from.
    let file = tmp.path().join("sluice.toml");
    for (toml, msg) in [
        ("[stats]\ncache-max-age = \"18446744073709551615s\"\n", "stats.cache-max-age must be at most 1day, e.g. \"2s\""),
        ("[links]\npermanent-max-age = \"18446744073709551615s\"\n", "links.permanent-max-age must be at most 365days, e.g. \"1h\""),
    ] {
        std::fs::write(&file, toml).expect("write config");
        let out = run(&["serve", "--config", utf8(&file), "--listen", "127.0.0.1:0", "--data-dir", utf8(&data)], &[]);
        let want = format!("error: {msg} (configuration from \"{}\", SLUICE__* variables and flags)\n", file.display());
        assert_eq!((out.status.code(), text(&out.stderr)), (Some(1), want), "{toml}");
        assert!(!data.exists(), "{toml}: no data dir created");
    }
}

/// Finding: `log tail --data-dir <a file>` said `no data directory`; `migrate --store <a
/// file>` pointed at --data-dir.
#[test]
fn a_regular_file_as_the_data_dir_is_named_as_not_a_directory_by_every_subcommand() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let f = tmp.path().join("afile");
    std::fs::write(&f, "").expect("write");
    let input = tmp.path().join("events.ndjson");
    std::fs::write(&input, "").expect("write");
    let not_dir = format!("error: data dir \"{}\" is not a directory (check --data-dir or [server] data-dir)\n", f.display());
    for args in [
        vec!["log", "tail", "--data-dir", utf8(&f)],
        vec!["log", "reset", "--data-dir", utf8(&f)],
        vec!["migrate", "--data-dir", utf8(&f)],
        vec!["import", utf8(&input), "--data-dir", utf8(&f)],
    ] {
        let out = run(&args, &[]);
        assert_eq!((out.status.code(), text(&out.stderr)), (Some(1), not_dir.clone()), "{args:?}");
    }
    let out = run(&["migrate", "--store", utf8(&f)], &[]);
    assert_eq!((out.status.code(), text(&out.stderr)), (Some(1), format!("error: data dir \"{}\" is not a directory (check --store)\n", f.display())));
    // A missing one is still "no data directory" where nothing may be created.
    let missing = tmp.path().join("missing");
    let out = run(&["log", "tail", "--data-dir", utf8(&missing)], &[]);
    assert_eq!(
        (out.status.code(), text(&out.stderr)),
        (Some(1), format!("error: no data directory \"{}\": nothing to tail (check --data-dir or [server] data-dir)\n", missing.display()))
    );
}

/// Finding: importing an empty file named `D/clicks.redb` as where the events went, then
/// removed D.
#[test]
fn an_import_that_stores_nothing_says_so_instead_of_naming_the_removed_log() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let input = tmp.path().join("empty.ndjson");
    std::fs::write(&input, "").expect("write");
    let fresh = tmp.path().join("D");
    let existing = tmp.path().join("E");
    std::fs::create_dir(&existing).expect("mkdir");
    for (dir, fate) in [(&fresh, "not created"), (&existing, "left as it was")] {
        let out = sluice_quiet("import", &[utf8(&input), "--data-dir", utf8(dir)]);
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert_eq!((out.status.code(), stderr.as_str()), (Some(0), ""), "{stdout}");
        let head = format!("imported \"{}\": 0 lines, 0 events parsed, 0 stored, 0 rejected in ", input.display());
        let tail = format!(" (0 events/s); nothing stored, \"{}\" {fate}\n", dir.display());
        assert!(stdout.starts_with(&head) && stdout.ends_with(&tail) && !stdout.contains("clicks.redb"), "{stdout}");
    }
    assert!(!fresh.exists());
    assert_eq!(std::fs::read_dir(&existing).expect("ls").count(), 0, "nothing left in the existing dir");
}

/// Finding: `loadgen --rate 0` exited 1 while `demo --rate 0` exits 2; `--target ftp://x`
/// failed at the first request with reqwest's "builder error".
#[test]
fn loadgen_refuses_invalid_flags_as_usage_errors_before_sending() {
    for (args, msg) in [
        (vec!["--rate", "0"], "--rate must be a positive number of requests per second, got 0"),
        (vec!["--bot-share", "2"], "--bot-share must be between 0 and 1, got 2"),
        (vec!["--target", "ftp://x"], "--target must be an http:// or https:// URL, got ftp://x/"),
        (vec!["--api", "file:///tmp/x"], "--api must be an http:// or https:// URL, got file:///tmp/x"),
        (vec!["--salt-period", "2d"], "--salt-period: salt period must be 1d, 7d, 30d or never, got \"2d\""),
    ] {
        let mut full = vec!["loadgen"];
        full.extend(&args);
        let out = run(&full, &[]);
        assert_eq!((out.status.code(), text(&out.stderr)), (Some(2), format!("error: {msg}\n")), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

/// Finding: `loadgen --duration 2000years` (and `--attack-duration`, `--timeout`) overflowed
/// the run's clock arithmetic (a panic); every duration flag of `loadgen` and `demo` now has a
/// maximum, refused by clap (exit 2) before anything starts.
#[test]
fn duration_flags_past_their_maximum_are_usage_errors() {
    for (args, flag, value, max) in [
        (vec!["loadgen", "--duration", "2000years"], "--duration <D>", "2000years", "1day"),
        (vec!["loadgen", "--timeout", "18446744073709551615s"], "--timeout <D>", "18446744073709551615s", "1h"),
        (vec!["loadgen", "--max-lateness", "401days"], "--max-lateness <D>", "401days", "400days"),
        (vec!["loadgen", "--attack", "burst", "--attack-duration", "24h 1s"], "--attack-duration <D>", "24h 1s", "1day"),
        (vec!["demo", "--duration", "1day 1ms"], "--duration <D>", "1day 1ms", "1day"),
    ] {
        let out = run(&args, &[]);
        let want = format!("error: invalid value '{value}' for '{flag}': at most {max}, got {value}\n\nFor more information, try '--help'.\n");
        assert_eq!((out.status.code(), text(&out.stderr)), (Some(2), want), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}
