//! What the configuration is read from, through the real binary: a `--config` that is no
//! regular file (a FIFO, `/dev/stdin`, a process substitution `<(...)`) is read once and
//! applied; a `[server] data-dir` of the configuration that is a regular file stops `sluice
//! import` as a usage error whatever the destination.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::child::free_port;
use crate::cli_run::{import, text};

const BIN: &str = env!("CARGO_BIN_EXE_sluice");

/// `sluice --log warn log tail --config <config>` in `cwd` with `stdin`, no configuration
/// from the environment.
fn log_tail(cwd: &Path, config: &str, stdin: Stdio) -> std::process::Child {
    Command::new(BIN)
        .args(["--log", "warn", "log", "tail", "--config", config])
        .current_dir(cwd)
        .env_remove("SLUICE_LOG")
        .env_remove("KAFKA_BROKERS")
        .env_remove("SLUICE__SERVER__DATA_DIR")
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sluice log tail")
}

/// A configuration naming the data dir `dir` (missing: `log tail` says it names it), and
/// what `log tail` then answers: exit code 1 and the line naming `dir`. Without the file
/// applied it names the default, `./data-dir`.
fn configured(dir: &Path) -> (String, (Option<i32>, String)) {
    let toml = format!("[server]\ndata-dir = \"{}\"\n", dir.display());
    let want = format!("error: no data directory \"{}\": nothing to tail (check --data-dir or [server] data-dir)\n", dir.display());
    (toml, (Some(1), want))
}

fn outcome(out: &Output) -> (Option<i32>, String) {
    (out.status.code(), text(&out.stderr))
}

/// Finding: `--config` given a FIFO, a process substitution or `/dev/stdin` was silently
/// ignored (figment's file layer skips every path that is no regular file), so the start
/// ran on the defaults. Each is read now, and the configuration applied.
#[test]
fn a_config_from_a_fifo_a_pipe_or_standard_input_is_read_and_applied() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (toml, want) = configured(&tmp.path().join("configured"));

    // A FIFO written by another thread (its open waits for the reader).
    let fifo = tmp.path().join("sluice.fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().expect("mkfifo").success());
    let writer = {
        let (fifo, toml) = (fifo.clone(), toml.clone());
        std::thread::spawn(move || std::fs::OpenOptions::new().write(true).open(&fifo).and_then(|mut f| f.write_all(toml.as_bytes())))
    };
    let out = log_tail(tmp.path(), fifo.to_str().expect("utf-8"), Stdio::null()).wait_with_output().expect("output");
    if !writer.is_finished() {
        // Not read: let the writer go (its open waits for a reader), then fail below.
        let _ = std::fs::File::open(&fifo).and_then(|mut f| f.read_to_end(&mut Vec::new()));
    }
    writer.join().expect("writer thread").expect("write the FIFO");
    assert_eq!(outcome(&out), want, "FIFO");

    // Standard input, a pipe.
    let mut child = log_tail(tmp.path(), "/dev/stdin", Stdio::piped());
    child.stdin.take().expect("stdin").write_all(toml.as_bytes()).expect("write stdin");
    assert_eq!(outcome(&child.wait_with_output().expect("output")), want, "/dev/stdin");

    // A process substitution of bash: a pipe at /dev/fd/N.
    let out = Command::new("bash")
        .args(["-c", "exec \"$0\" --log warn log tail --config <(printf '%s' \"$1\")", BIN, &toml])
        .current_dir(tmp.path())
        .env_remove("SLUICE_LOG")
        .env_remove("KAFKA_BROKERS")
        .env_remove("SLUICE__SERVER__DATA_DIR")
        .output()
        .expect("run bash");
    assert_eq!(outcome(&out), want, "<(...)");
}

/// Finding: `sluice import --config F`, F's `[server] data-dir` a regular file, went on to
/// send the events to the server of F's listen address (which cannot have started on that
/// configuration) instead of saying what is wrong. It is refused as every other command
/// refuses it: a usage error (exit code 2) naming the file, before anything is read or sent.
#[test]
fn an_import_refuses_a_configured_data_dir_that_is_a_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("afile");
    std::fs::write(&file, "not a directory\n").expect("write");
    let config = tmp.path().join("sluice.toml");
    std::fs::write(&config, format!("[server]\ndata-dir = \"{}\"\nlisten = \"127.0.0.1:{}\"\n", file.display(), free_port())).expect("config");
    let input = tmp.path().join("events.ndjson");
    std::fs::write(&input, "{\"event_id\":\"cfg-1\",\"code\":\"cfg\",\"ts\":1767225600000,\"ip\":\"203.0.113.9\",\"user_agent\":\"Mozilla/5.0\"}\n")
        .expect("input");
    let out = import(&["--config", config.to_str().expect("utf-8"), "--retry-for", "0s", input.to_str().expect("utf-8")]);
    let want = format!("error: data dir \"{}\" is not a directory (check --data-dir or [server] data-dir)\n", file.display());
    assert_eq!((out.status.code(), text(&out.stderr), text(&out.stdout)), (Some(2), want, String::new()));
    assert_eq!(std::fs::read_to_string(&file).expect("read"), "not a directory\n", "the file is left as it was");
}
