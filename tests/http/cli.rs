//! The `sluice` binary's command line through the real binary: refused flag values and
//! configuration errors (exit code and message), log output format, help texts.

use std::process::{Command, Output};

fn sluice(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
    cmd.args(args).env_remove("SLUICE_LOG").env_remove("NO_COLOR").env_remove("KAFKA_BROKERS");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run sluice")
}

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).expect("utf-8 stderr")
}

/// The usage tail clap appends to every usage error.
const USAGE_TAIL: &str = "\n\nUsage: sluice [OPTIONS] <COMMAND>\n\nFor more information, try '--help'.\n";

#[test]
fn negative_or_non_numeric_log_tail_counts_are_named_usage_errors() {
    for (flag, value) in [("--from", "-1"), ("-n", "-5"), ("--from", "x1"), ("-n", "18446744073709551616")] {
        let out = sluice(&["log", "tail", "--data-dir", "/nonexistent-sluice-dir", flag, value], &[]);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}");
        let name = if flag == "-n" { "--lines <N>" } else { "--from <OFFSET>" };
        let err = stderr(&out);
        assert!(
            err.starts_with(&format!("error: invalid value '{value}' for '{name}': expected a whole number from 0 to 18446744073709551615, got \"{value}\"\n")),
            "{flag} {value}: {err}"
        );
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn an_invalid_log_filter_is_a_usage_error_from_the_flag_and_from_the_env_var() {
    let out = sluice(&["--log", "[[[", "log", "tail", "--data-dir", "/nonexistent-sluice-dir"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stderr(&out), format!("error: invalid log filter \"[[[\" in --log: directive \"[[[\": invalid filter directive{USAGE_TAIL}"));
    assert!(out.stdout.is_empty());

    // one bad directive among good ones is named; the flag after the subcommand (global) too
    let out = sluice(&["log", "tail", "--log", "info,sluice=loud", "--data-dir", "/nonexistent-sluice-dir"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.starts_with("error: invalid log filter \"info,sluice=loud\" in --log: directive \"sluice=loud\": "), "{err}");

    let out = sluice(&["log", "tail", "--data-dir", "/nonexistent-sluice-dir"], &[("SLUICE_LOG", "[[[")]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        format!("error: invalid log filter \"[[[\" in the SLUICE_LOG environment variable: directive \"[[[\": invalid filter directive{USAGE_TAIL}")
    );

    // a valid filter gets past the check: the command itself runs (and fails on its own terms)
    let out = sluice(&["--log", "sluice=debug,warn", "log", "tail", "--data-dir", "/nonexistent-sluice-dir"], &[]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn config_errors_say_what_is_wrong_and_name_keys_as_written() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_str().expect("utf-8");
    // a wrong --config value is a usage error (exit code 2, as clap's own)
    let out = sluice(&["log", "tail", "--config", dir], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stderr(&out), format!("error: config file \"{dir}\" is a directory, not a TOML file\n"));

    let missing = tmp.path().join("nope.toml");
    let out = sluice(&["log", "tail", "--config", missing.to_str().expect("utf-8")], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stderr(&out), format!("error: config file \"{}\" does not exist\n", missing.display()));

    let file = tmp.path().join("sluice.toml");
    std::fs::write(&file, "[server]\nlisten = \"nope\"\n").expect("write");
    let out = sluice(&["log", "tail", "--config", file.to_str().expect("utf-8")], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out), format!("error: invalid configuration: server.listen in {}: invalid socket address syntax\n", file.display()));

    let out = sluice(&["log", "tail", "--data-dir", dir], &[("SLUICE__SERVER__LISTEN", "nope")]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out), "error: invalid configuration: SLUICE__SERVER__LISTEN (environment variable): invalid socket address syntax\n");

    let out = sluice(&["log", "tail", "--data-dir", dir], &[("SLUICE__VISITOR__SECRET", "abc")]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.starts_with("error: visitor.secret (SLUICE__VISITOR__SECRET) must be 64 hex characters, the 32-byte key"), "{err}");

    // The flag (serve and demo) says what it expects: an address, not a host name.
    for sub in ["serve", "demo"] {
        let out = sluice(&[sub, "--listen", "localhost:18492", "--data-dir", dir], &[]);
        assert_eq!(out.status.code(), Some(2), "{sub}");
        let err = stderr(&out);
        assert!(
            err.starts_with(
                "error: invalid value 'localhost:18492' for '--listen <ADDR>': expected IP:PORT, e.g. 127.0.0.1:8080 or [::1]:8080 (an address, not a host name), got \"localhost:18492\"\n"
            ),
            "{sub}: {err}"
        );
    }
}

/// `sluice --log debug migrate` logs "sqlite link store open" (a debug line) and exits 0.
fn migrate_with_debug_log(dir: &str) -> Vec<&str> {
    vec!["--log", "debug", "migrate", "--data-dir", dir]
}

#[test]
fn log_lines_are_coloured_only_on_a_terminal_and_never_with_no_color() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_str().expect("utf-8");
    // stderr a pipe: plain text
    let out = sluice(&migrate_with_debug_log(dir), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("sqlite link store open"), "{err}");
    assert!(!err.contains('\x1b'), "no escape codes into a pipe: {err:?}");
    // stderr a terminal (script(1) runs the command on a pseudo-terminal and copies it to stdout)
    let on_tty = |no_color: Option<&str>| {
        let line = format!("{} {}", env!("CARGO_BIN_EXE_sluice"), migrate_with_debug_log(dir).join(" "));
        let mut cmd = Command::new("script");
        cmd.args(["-qec", &line, "/dev/null"]).env_remove("SLUICE_LOG").env_remove("NO_COLOR");
        if let Some(v) = no_color {
            cmd.env("NO_COLOR", v);
        }
        let out = cmd.output().expect("script(1) from util-linux");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).expect("utf-8")
    };
    let tty = on_tty(None);
    assert!(tty.contains("sqlite link store open") && tty.contains("\x1b["), "colours on a terminal: {tty:?}");
    let tty = on_tty(Some("1"));
    assert!(tty.contains("sqlite link store open") && !tty.contains('\x1b'), "NO_COLOR: {tty:?}");
}

fn help(args: &[&str]) -> String {
    let out = sluice(args, &[]);
    assert_eq!(out.status.code(), Some(0), "{args:?}");
    String::from_utf8(out.stdout).expect("utf-8 help")
}

#[test]
fn log_tail_help_says_the_data_dir_is_read_only_and_a_missing_one_is_an_error() {
    let text = help(&["log", "tail", "--help"]);
    assert!(!text.contains("Created if missing"), "{text}");
    assert!(text.contains("Read only: a missing directory or log is an error, nothing is created"), "{text}");
    assert!(help(&["serve", "--help"]).contains("Created if missing"), "serve does create it");
    let tmp = tempfile::tempdir().expect("tempdir");
    let missing = tmp.path().join("typo");
    let out = sluice(&["log", "tail", "--data-dir", missing.to_str().expect("utf-8")], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out), format!("error: no data directory \"{}\": nothing to tail (check --data-dir or [server] data-dir)\n", missing.display()));
    assert!(!missing.exists(), "nothing created");
}

/// `sluice log reset` never creates the data directory (a typo would otherwise reset a new,
/// empty one), and its help says so instead of the shared "Created if missing".
#[test]
fn log_reset_help_says_a_missing_data_dir_is_an_error() {
    let text = help(&["log", "reset", "--help"]);
    assert!(!text.contains("Created if missing"), "{text}");
    assert!(
        text.contains(
            "Data directory whose click log (clicks.redb) and checkpoints to reset. It must exist: a missing directory is an error, nothing is created"
        ),
        "{text}"
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let missing = tmp.path().join("typo");
    let out = sluice(&["log", "reset", "--data-dir", missing.to_str().expect("utf-8")], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out), format!("error: no data directory \"{}\": nothing to reset (check --data-dir or [server] data-dir)\n", missing.display()));
    assert!(!missing.exists(), "nothing created");
}

/// Every help text, every subcommand: no references to tracker issues, work sessions or
/// other project-internal bookkeeping a user cannot look up.
#[test]
fn help_texts_describe_behaviour_not_internal_references() {
    let commands: &[&[&str]] = &[
        &[],
        &["serve"],
        &["migrate"],
        &["loadgen"],
        &["import"],
        &["demo"],
        &["log"],
        &["log", "tail"],
        &["bench"],
        &["bench", "dataflow"],
        &["bench", "redirect"],
        &["bench", "freshness"],
    ];
    for cmd in commands {
        let text = help(&[*cmd, &["--help"]].concat());
        let lower = text.to_lowercase();
        for word in ["issue ", "issue#", "session ", "helper", "coordinator"] {
            assert!(!lower.contains(word), "{cmd:?} --help mentions {word:?}: {text}");
        }
        // case ids like "C25" and pseudo-ids like "s12"
        let ids: Vec<&str> = text
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|w| w.len() >= 2 && (w.starts_with('C') || w.starts_with('s')) && w[1..].chars().all(|c| c.is_ascii_digit()))
            .collect();
        assert!(ids.is_empty(), "{cmd:?} --help has internal ids {ids:?}: {text}");
    }
    let text = help(&["loadgen", "--help"]);
    assert!(text.contains("--attack <SHAPE>") && text.contains("extra requests of this shape on top of the normal traffic"), "{text}");
}

/// `sluice import --data-dir` into a new directory generates the visitor secret without the
/// "lost secret" warning (the log it creates is not earlier data); the events are stored.
#[test]
fn import_into_a_new_data_dir_does_not_warn_of_a_lost_visitor_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("new");
    let file = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR (set by cargo test and nextest at run time)"))
        .join("ingest/tests/data/import/events.ndjson");
    let out = sluice(&["--log", "info", "import", "--data-dir", data.to_str().expect("utf-8"), file.to_str().expect("utf-8")], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("NEW visitor secret"), "{stderr}");
    assert!(stderr.contains("generated visitor secret"), "{stderr}");
    assert!(data.join("visitor_secret").exists() && data.join("clicks.redb").exists());
}

/// `sluice import` of a file none of whose lines can be read (random bytes) fails: exit 1
/// and a message, not a quiet "0 events". A file with one readable line among malformed
/// ones imports it and exits 0 (skipped lines are normal in an access log); an NDJSON line
/// that is no valid event among valid ones is exit 1 (the valid ones are stored).
#[test]
fn an_import_that_can_read_no_line_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let rnd = dir.path().join("rnd.log");
    // deterministic noise with newlines: every line malformed for the combined format
    let mut x: u32 = 12345;
    let bytes: Vec<u8> = (0..4096)
        .map(|i| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            if i % 97 == 96 { b'\n' } else { ((x >> 16) as u8).max(b'\n' + 1) }
        })
        .collect();
    std::fs::write(&rnd, &bytes).expect("write");
    let out = sluice(&["--log", "warn", "import", "--quiet", "--data-dir", data.to_str().expect("utf-8"), rnd.to_str().expect("utf-8")], &[]);
    let err = stderr_lossy(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("none of the 43 non-blank lines could be read (each is malformed), nothing was imported: is the file in the format given or guessed (--format ndjson|combined)?"),
        "{err}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("skipped lines: malformed 43"), "{stdout}");
    // The data dir this failed import created (visitor secret, empty log) is gone again.
    assert!(!data.exists(), "{:?}", std::fs::read_dir(&data).map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect::<Vec<_>>()));

    let mixed = dir.path().join("mixed.log");
    let good = "203.0.113.9 - - [10/Oct/2026:13:55:36 +0000] \"GET /abc123 HTTP/1.1\" 302 0 \"-\" \"Mozilla/5.0\"";
    std::fs::write(&mixed, format!("garbage\n{good}\n\x01\x02\n")).expect("write");
    let out = sluice(&["--log", "warn", "import", "--quiet", "--data-dir", data.to_str().expect("utf-8"), mixed.to_str().expect("utf-8")], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_lossy(&out));

    // Finding (attack, session 44): NDJSON with one invalid event among valid ones exited 0.
    // The valid ones are stored; the invalid line fails the import, as a rejected event does.
    let partial = dir.path().join("partial.ndjson");
    let ts = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() - 60_000;
    let valid = |id: &str| format!("{{\"event_id\":\"{id}\",\"code\":\"abc123\",\"ts\":{ts},\"ip\":\"192.0.2.1\",\"user_agent\":\"\"}}");
    std::fs::write(&partial, format!("{}\n{{\"event_id\":\"p2\",\"code\":\"abc123\"}}\n{}\n", valid("p1"), valid("p3"))).expect("write");
    let out = sluice(&["--log", "warn", "import", "--data-dir", data.to_str().expect("utf-8"), partial.to_str().expect("utf-8")], &[]);
    assert_eq!(
        (out.status.code(), stderr_lossy(&out)),
        (Some(1), "error: 1 of the 3 non-blank lines are not valid events (missing_field 1), not imported; 2 events stored\n".to_owned())
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(": 3 lines, 2 events parsed, 2 stored, 0 rejected in ") && stdout.contains("invalid lines: missing_field 1"), "{stdout}");
}

fn stderr_lossy(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `sluice demo` refuses traffic settings that cannot make a demo before it starts anything
/// (no server, no temporary data dir): exit code 2 and a message naming the demo's own flag.
#[test]
fn demo_refuses_empty_traffic_before_starting() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for (args, msg) in [
        (&["--duration", "0s"][..], "error: --duration must be positive, e.g. 20s\n"),
        (&["--rate", "1", "--duration", "500ms"][..], "error: --rate 1 × --duration 500ms plans no request; give a higher --rate or a longer --duration\n"),
        (&["--links", "0"][..], "error: --links must be at least 1\n"),
        (&["--links", "1000001"][..], "error: --links must be at most 1000000, got 1000001\n"),
    ] {
        let out = sluice(&[&["demo", "--listen", "127.0.0.1:0"][..], args].concat(), &[("TMPDIR", tmp.path().to_str().expect("utf-8"))]);
        assert_eq!((out.status.code(), stderr(&out).as_str()), (Some(2), msg), "{args:?}");
        assert_eq!(std::fs::read_dir(tmp.path()).expect("read tmp").count(), 0, "no temporary data dir for {args:?}");
    }
}

/// A worker count past 1024 (`--workers`, `--dataflow-workers`) is a usage error naming the
/// accepted range (exit 2, nothing started or created); the same value from the config file
/// or the environment is a configuration error naming the key (exit 1).
#[test]
fn worker_counts_past_the_bound_are_refused_before_anything_starts() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let data_arg = data.to_str().expect("utf-8");
    for (flag, range) in [("--workers", "0..=1024"), ("--dataflow-workers", "1..=1024")] {
        for bad in ["100000", "1025"] {
            let out = sluice(&["serve", "--data-dir", data_arg, "--listen", "127.0.0.1:0", flag, bad], &[]);
            assert_eq!(out.status.code(), Some(2), "{flag} {bad}");
            let err = stderr(&out);
            assert!(err.starts_with(&format!("error: invalid value '{bad}' for '{flag} <N>': {bad} is not in {range}\n")), "{err}");
        }
    }
    let out = sluice(&["serve", "--data-dir", data_arg, "--listen", "127.0.0.1:0", "--dataflow-workers", "0"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).starts_with("error: invalid value '0' for '--dataflow-workers <N>': 0 is not in 1..=1024\n"), "{}", stderr(&out));

    let file = tmp.path().join("sluice.toml");
    std::fs::write(&file, "[server]\nworkers = 100000\n").expect("write");
    let out = sluice(&["serve", "--data-dir", data_arg, "--config", file.to_str().expect("utf-8")], &[]);
    assert_eq!(
        (out.status.code(), stderr(&out)),
        (
            Some(1),
            format!(
                "error: server.workers must be between 0 (one per CPU) and 1024, got 100000 (configuration from \"{}\", SLUICE__* variables and flags)\n",
                file.display()
            )
        )
    );
    let out = sluice(&["serve", "--data-dir", data_arg], &[("SLUICE__SERVER__WORKERS", "5000")]);
    assert_eq!((out.status.code(), stderr(&out).as_str()), (Some(1), "error: server.workers must be between 0 (one per CPU) and 1024, got 5000\n"));
    let out = sluice(&["serve", "--data-dir", data_arg], &[("SLUICE__DATAFLOW__WORKERS", "100000")]);
    assert_eq!((out.status.code(), stderr(&out).as_str()), (Some(1), "error: dataflow.workers must be between 1 and 1024, got 100000\n"));
    assert!(!data.exists(), "nothing created");

    let text = help(&["serve", "--help"]);
    assert!(text.contains("Tokio worker threads, 0 to 1024 (server.workers; 0 = one per CPU, the built-in default)"), "{text}");
}

/// `sluice` run with its standard output a pipe whose reader is already gone.
fn sluice_into_closed_pipe(args: &[&str]) -> Output {
    sluice_into_closed_pipe_with(args, &[])
}

/// [`sluice_into_closed_pipe`] with `env` set.
fn sluice_into_closed_pipe_with(args: &[&str], env: &[(&str, &std::path::Path)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .args(args)
        .env_remove("SLUICE_LOG")
        .env_remove("KAFKA_BROKERS")
        .env_remove("SLUICE__STORE__URL")
        .env_remove("SLUICE__REDIS__URL")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn sluice");
    drop(child.stdout.take());
    child.wait_with_output().expect("wait for sluice")
}

/// The valid events of the import fixture `ingest/tests/data/import/events.ndjson` (its
/// `c19-…` lines; the others are invalid on purpose, which fails an import), written to
/// `dir/valid.ndjson`.
fn valid_events(dir: &std::path::Path) -> std::path::PathBuf {
    let fixture = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR (set by cargo test and nextest at run time)"))
        .join("ingest/tests/data/import/events.ndjson");
    let text = std::fs::read_to_string(fixture).expect("read the import fixture");
    let valid: Vec<&str> = text.lines().filter(|l| l.starts_with(r#"{"event_id":"c19-"#)).collect();
    assert_eq!(valid.len(), 3, "the fixture's valid lines");
    let path = dir.join("valid.ndjson");
    std::fs::write(&path, valid.join("\n") + "\n").expect("write valid.ndjson");
    path
}

/// A reader that closes the output early (`sluice log tail | head -1`) ends `log tail` and
/// `import` quietly with exit 0, not with "Broken pipe" and exit 1.
#[test]
fn a_closed_standard_output_ends_the_command_quietly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let data_arg = data.to_str().expect("utf-8");
    let file = valid_events(dir.path());
    let out = sluice_into_closed_pipe(&["--log", "warn", "import", "--data-dir", data_arg, file.to_str().expect("utf-8")]);
    assert_eq!((out.status.code(), stderr(&out).as_str()), (Some(0), ""), "import");
    let out = sluice(&["log", "tail", "--data-dir", data_arg, "--from", "0"], &[]);
    assert_eq!(out.status.code(), Some(0));
    let lines = String::from_utf8(out.stdout).expect("utf-8");
    assert!(lines.lines().count() > 1, "the import stored events: {lines}");
    assert!(lines.starts_with(r#"{"event":{"#) && lines.lines().all(|l| l.contains(r#"},"offset":"#)), "{lines}");
    let out = sluice_into_closed_pipe(&["log", "tail", "--data-dir", data_arg, "--from", "0"]);
    assert_eq!((out.status.code(), stderr(&out).as_str()), (Some(0), ""), "log tail");
}

/// `sluice demo` whose report nobody reads (`sluice demo | head -1`) stops its server and
/// ends quietly with exit 0, removing its temporary data dir, instead of panicking on the
/// closed output.
#[test]
fn a_closed_standard_output_ends_the_demo_quietly() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let out = sluice_into_closed_pipe_with(
        &["demo", "--listen", &listen, "--duration", "1s", "--rate", "1", "--links", "1", "--exit-after"],
        &[("TMPDIR", tmp.path())],
    );
    assert_eq!((out.status.code(), stderr(&out).as_str()), (Some(0), ""), "demo");
    let left: Vec<_> = std::fs::read_dir(tmp.path()).expect("read the temp dir").map(|e| e.expect("entry").file_name()).collect();
    assert!(left.is_empty(), "the demo's temporary data dir is removed: {left:?}");
}

/// `sluice bench dataflow` and `sluice bench freshness` whose report nobody reads end quietly
/// with exit 0 (the freshness benchmark skips its measurement and stops its server).
#[test]
fn a_closed_standard_output_ends_the_benchmarks_quietly() {
    let out = sluice_into_closed_pipe(&[
        "--log",
        "warn",
        "bench",
        "dataflow",
        "--events",
        "200",
        "--links",
        "5",
        "--visitors",
        "20",
        "--workers",
        "1",
        "--reference-events",
        "10",
        "--redis-events",
        "0",
    ]);
    assert_eq!((out.status.code(), stderr(&out).as_str()), (Some(0), ""), "bench dataflow");
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = sluice_into_closed_pipe_with(
        &["--log", "warn", "bench", "freshness", "--duration", "1s", "--rate", "1", "--probe-links", "1", "--load", "0"],
        &[("TMPDIR", tmp.path())],
    );
    assert_eq!((out.status.code(), stderr(&out).as_str()), (Some(0), ""), "bench freshness");
    let left: Vec<_> = std::fs::read_dir(tmp.path()).expect("read the temp dir").map(|e| e.expect("entry").file_name()).collect();
    assert!(left.is_empty(), "the benchmark's temporary data dir is removed: {left:?}");
}

/// `--short-domain` takes a bare host name and `--base-url` an http(s) origin (a usage error
/// otherwise, exit 2; from config or env, exit 1 naming the key); a file given
/// as `--data-dir` is "not a directory" (a usage error too, exit 2: `cli_data_dir.rs`); a PostgreSQL port with nothing listening is
/// "connection refused", at once; a `serve` that cannot bind its port creates no data dir.
#[test]
fn bad_short_domains_data_dirs_and_store_urls_say_what_is_wrong() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let data_arg = data.to_str().expect("utf-8");
    let hint = "give a bare host name such as sho.rt.example";
    for (bad, why) in [
        ("a b", "is not a host name (invalid international domain name)"),
        ("", "is empty"),
        ("sho.rt:80", "is not a host name (no scheme, port, path or userinfo)"),
    ] {
        let out = sluice(&["serve", "--data-dir", data_arg, "--listen", "127.0.0.1:0", "--short-domain", bad], &[]);
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        let err = stderr(&out);
        assert!(err.starts_with(&format!("error: invalid value '{bad}' for '--short-domain <HOST>': {bad:?} {why}: {hint}\n")), "{err}");
    }
    // Finding (attack, session 45): a refused --base-url was exit 1, unlike every other flag.
    for (bad, why) in [("ftp://x", "must be an http or https origin"), ("http://x.com/path", "must not have a path, query or fragment")] {
        let out = sluice(&["serve", "--data-dir", data_arg, "--listen", "127.0.0.1:0", "--base-url", bad], &[]);
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        let err = stderr(&out);
        assert!(err.starts_with(&format!("error: invalid value '{bad}' for '--base-url <URL>': \"{bad}\" {why}\n")), "{err}");
    }
    let out = sluice(&["serve", "--data-dir", data_arg], &[("SLUICE__SERVER__BASE_URL", "ftp://x")]);
    assert_eq!((out.status.code(), stderr(&out)), (Some(1), "error: server.base-url \"ftp://x\" must be an http or https origin\n".to_owned()));
    let out = sluice(&["serve", "--data-dir", data_arg], &[("SLUICE__SERVER__SHORT_DOMAINS", "[\"a b\"]")]);
    assert_eq!(
        (out.status.code(), stderr(&out)),
        (Some(1), format!("error: server.short-domains entry \"a b\" is not a host name (invalid international domain name): {hint}\n"))
    );
    assert!(!data.exists(), "nothing created");

    let file = tmp.path().join("a-file");
    std::fs::write(&file, "x").expect("write");
    let file_arg = file.to_str().expect("utf-8");
    let want = format!("error: data dir \"{file_arg}\" is not a directory (check --data-dir or [server] data-dir)\n");
    // A usage error, exit 2, as a file given as --store.
    let out = sluice(&["migrate", "--data-dir", file_arg], &[]);
    assert_eq!((out.status.code(), stderr(&out)), (Some(2), want.clone()), "migrate");
    let events = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR (set by cargo test and nextest at run time)"))
        .join("ingest/tests/data/import/events.ndjson");
    let out = sluice(&["--log", "warn", "import", "--data-dir", file_arg, events.to_str().expect("utf-8")], &[]);
    assert_eq!((out.status.code(), stderr(&out)), (Some(2), want.clone()), "import");
    let port = crate::child::free_port();
    let out = sluice(&["--log", "error", "serve", "--data-dir", file_arg, "--listen", &format!("127.0.0.1:{port}")], &[]);
    assert_eq!((out.status.code(), stderr(&out)), (Some(2), want), "serve");

    // Nothing listens on `port` (held free by the lock): refused at once, not a pool timeout.
    let started = std::time::Instant::now();
    let out = sluice(&["migrate", "--store", &format!("postgres://sluice:pw@127.0.0.1:{port}/sluice")], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    // The server named without its password, the cause said once.
    assert_eq!(
        err,
        format!(
            "error: migration failed: could not connect to the PostgreSQL server at postgres://sluice@127.0.0.1:{port}/sluice: error communicating with database: Connection refused (os error 111)\n"
        )
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "{:?}", started.elapsed());

    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let out = sluice(&["--log", "error", "serve", "--data-dir", data_arg, "--listen", &addr], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(&format!("error: could not listen on {addr}: Address already in use")), "{}", stderr(&out));
    assert!(!data.exists(), "the data dir is created only once the port is bound");
}

/// Finding (newcomer, session 18): `sluice log reset` on a healthy log that was never
/// served (no checkpoint) talked of "another log than the newest checkpoint's" and of
/// `.recovered-<time>` files. It says there is nothing to reset; the log is untouched.
/// Also (same review): an import whose lines are JSON but not objects (a JSON array of
/// events on one line) exits 1 with the way to fix the file.
#[test]
fn log_reset_without_a_checkpoint_has_nothing_to_reset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("d");
    let data_arg = data.to_str().expect("utf-8");
    let events = valid_events(dir.path());
    let out = sluice(&["--log", "warn", "import", "--quiet", "--data-dir", data_arg, events.to_str().expect("utf-8")], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_lossy(&out));
    let out = sluice(&["--log", "warn", "log", "reset", "--data-dir", data_arg], &[]);
    let err = stderr_lossy(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let head = err.split(" clicks, ").next().and_then(|s| s.rsplit(' ').next()).and_then(|n| n.parse::<u64>().ok());
    assert!(head.is_some_and(|n| n > 0), "{err}");
    assert!(
        err.ends_with(&format!(
            "opens and stores {} clicks, and there is no checkpoint: nothing to reset (`sluice serve` starts on it and counts them)\n",
            head.unwrap_or(0)
        )),
        "{err}"
    );
    assert!(!err.contains("recovered"), "{err}");
    // Nothing was reset: the same answer again, and the log still lists every click.
    let again = sluice(&["--log", "warn", "log", "reset", "--data-dir", data_arg], &[]);
    assert_eq!((again.status.code(), stderr_lossy(&again)), (Some(1), err.clone()));
    let tail = sluice(&["--log", "warn", "log", "tail", "--data-dir", data_arg, "--from", "0"], &[]);
    assert_eq!(String::from_utf8_lossy(&tail.stdout).lines().count() as u64, head.unwrap_or(0), "{}", stderr_lossy(&tail));

    let array = dir.path().join("array.json");
    let lines: Vec<String> = std::fs::read_to_string(&events).expect("events").lines().filter(|l| l.starts_with("{\"")).map(str::to_owned).collect();
    std::fs::write(&array, format!("[{}]\n", lines.join(","))).expect("write");
    let out = sluice(&["--log", "warn", "import", "--quiet", "--data-dir", data_arg, array.to_str().expect("utf-8")], &[]);
    let err = stderr_lossy(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    // A JSON array (the POST /v1/events body) is refused whole, naming the conversion.
    assert!(err.contains("holds a JSON array (line 1 starts with '['), the body shape of POST /v1/events"), "{err}");
    assert!(err.contains("jq -c '.[]'"), "{err}");
}
