//! A regular file given as the data dir, through the real binary: every subcommand that
//! takes one refuses it as a usage error (exit code 2, one line naming the path), before
//! anything starts, whether it came from `--data-dir`, `[server] data-dir` of `--config` or
//! `SLUICE__SERVER__DATA_DIR`.

use std::net::TcpListener;
use std::path::Path;

use crate::cli_messages::{run, run_in, utf8};
use crate::cli_run::text;

/// The one line every subcommand prints for `file` given as the data dir.
fn not_a_directory(file: &Path) -> String {
    format!("error: data dir \"{}\" is not a directory (check --data-dir or [server] data-dir)\n", file.display())
}

/// A temporary directory holding the regular file `afile` and an empty event file for
/// `import`.
struct Files {
    tmp: tempfile::TempDir,
}

impl Files {
    fn new() -> Files {
        let tmp = tempfile::tempdir().expect("tempdir");
        std::fs::write(tmp.path().join("afile"), "x").expect("write afile");
        std::fs::write(tmp.path().join("events.ndjson"), "").expect("write events.ndjson");
        Files { tmp }
    }

    fn file(&self) -> std::path::PathBuf {
        self.tmp.path().join("afile")
    }

    fn events(&self) -> std::path::PathBuf {
        self.tmp.path().join("events.ndjson")
    }

    /// What the temporary directory holds, sorted: nothing is created by a refused command.
    fn entries(&self) -> Vec<String> {
        let mut names: Vec<String> =
            std::fs::read_dir(self.tmp.path()).expect("ls").map(|e| e.expect("entry").file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    }
}

/// Finding: `serve`, `import`, `log tail` and `log reset` exited 1 for `--data-dir <a
/// file>` while `migrate` exited 2 (a usage error). All of them, and `demo`, now exit 2 with
/// the same one line naming the path; `serve` and `demo` before they bind their port (a
/// taken `--listen` port is not what they report).
#[test]
fn a_regular_file_as_data_dir_flag_is_a_usage_error_of_every_subcommand() {
    let files = Files::new();
    let (file, events) = (files.file(), files.events());
    // Held by the test: a command that bound its port first would report it as taken.
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let listen = taken.local_addr().expect("addr").to_string();
    let cases: [(&str, Vec<&str>); 6] = [
        ("serve", vec!["serve", "--data-dir", utf8(&file), "--listen", &listen]),
        ("migrate", vec!["migrate", "--data-dir", utf8(&file)]),
        ("import", vec!["import", utf8(&events), "--data-dir", utf8(&file)]),
        ("log tail", vec!["log", "tail", "--data-dir", utf8(&file)]),
        ("log reset", vec!["log", "reset", "--data-dir", utf8(&file)]),
        ("demo", vec!["demo", "--data-dir", utf8(&file), "--listen", &listen, "--exit-after"]),
    ];
    for (name, args) in cases {
        let out = run(&args, &[]);
        assert_eq!((out.status.code(), text(&out.stderr), text(&out.stdout)), (Some(2), not_a_directory(&file), String::new()), "{name}");
    }
    assert_eq!(files.entries(), ["afile", "events.ndjson"], "nothing created");
    assert_eq!(std::fs::read(&file).expect("read afile"), b"x", "the file is left as it was");
}

/// The data dir of the configuration (`[server] data-dir` in `--config`, or
/// `SLUICE__SERVER__DATA_DIR`) is refused the same way by the subcommands that use it.
/// (`import` and `demo` use only their own `--data-dir`: `import` without it sends to a
/// server, `demo` without it runs in a temporary directory.)
#[test]
fn a_regular_file_as_the_configured_data_dir_is_a_usage_error_too() {
    let files = Files::new();
    let file = files.file();
    let config = files.tmp.path().join("sluice.toml");
    std::fs::write(&config, format!("[server]\ndata-dir = {:?}\n", utf8(&file))).expect("write config");
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let listen = taken.local_addr().expect("addr").to_string();
    let subcommands: [(&str, Vec<&str>); 4] =
        [("serve", vec!["serve", "--listen", &listen]), ("migrate", vec!["migrate"]), ("log tail", vec!["log", "tail"]), ("log reset", vec!["log", "reset"])];
    for (name, args) in &subcommands {
        let mut with_config = args.clone();
        with_config.extend(["--config", utf8(&config)]);
        let out = run(&with_config, &[]);
        assert_eq!((out.status.code(), text(&out.stderr)), (Some(2), not_a_directory(&file)), "{name} --config");
        let out = run(args, &[("SLUICE__SERVER__DATA_DIR", utf8(&file))]);
        assert_eq!((out.status.code(), text(&out.stderr)), (Some(2), not_a_directory(&file)), "{name} SLUICE__SERVER__DATA_DIR");
    }
    assert_eq!(files.entries(), ["afile", "events.ndjson", "sluice.toml"], "nothing created");
}

/// Finding (attack, session 45): an empty data dir from the configuration or the
/// environment (`--data-dir ""` is refused by clap) created the click log in the working
/// directory, then failed on the link store (exit 1). Now a usage error before anything
/// starts, as a file is.
#[test]
fn an_empty_configured_data_dir_is_a_usage_error() {
    let files = Files::new();
    let config = files.tmp.path().join("sluice.toml");
    std::fs::write(&config, "[server]\ndata-dir = \"\"\n").expect("write config");
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let listen = taken.local_addr().expect("addr").to_string();
    let want = "error: the data dir is empty: give a directory (check --data-dir or [server] data-dir or SLUICE__SERVER__DATA_DIR)\n";
    let subcommands: [(&str, Vec<&str>); 4] =
        [("serve", vec!["serve", "--listen", &listen]), ("migrate", vec!["migrate"]), ("log tail", vec!["log", "tail"]), ("log reset", vec!["log", "reset"])];
    for (name, args) in &subcommands {
        let mut with_config = args.clone();
        with_config.extend(["--config", utf8(&config)]);
        let out = run_in(Some(files.tmp.path()), &with_config, &[]);
        assert_eq!((out.status.code(), text(&out.stderr)), (Some(2), want.to_owned()), "{name} --config");
        let out = run_in(Some(files.tmp.path()), args, &[("SLUICE__SERVER__DATA_DIR", "")]);
        assert_eq!((out.status.code(), text(&out.stderr)), (Some(2), want.to_owned()), "{name} SLUICE__SERVER__DATA_DIR");
    }
    assert_eq!(files.entries(), ["afile", "events.ndjson", "sluice.toml"], "nothing created in the working directory");
}

/// What stays as it was: a file given as `migrate --store` is a usage error of `--store`
/// (exit 2), and a missing data dir where nothing may be created is no usage error (exit 1,
/// "no data directory").
#[test]
fn a_file_as_store_and_a_missing_data_dir_keep_their_messages() {
    let files = Files::new();
    let file = files.file();
    let out = run(&["migrate", "--store", utf8(&file)], &[]);
    assert_eq!((out.status.code(), text(&out.stderr)), (Some(2), format!("error: data dir \"{}\" is not a directory (check --store)\n", file.display())));
    let missing = files.tmp.path().join("missing");
    for (verb, args) in [("tail", ["log", "tail", "--data-dir", utf8(&missing)]), ("reset", ["log", "reset", "--data-dir", utf8(&missing)])] {
        let out = run(&args, &[]);
        assert_eq!(
            (out.status.code(), text(&out.stderr)),
            (Some(1), format!("error: no data directory \"{}\": nothing to {verb} (check --data-dir or [server] data-dir)\n", missing.display())),
            "log {verb}"
        );
    }
    assert!(!missing.exists());
}
