//! Cluster settings given through the config file or `SLUICE__…` environment variables
//! (finding of session 57): a cluster that cannot start is a usage error (exit code 2,
//! `error: <message>`) as the same values given as `--processes`, `--process-id` or
//! `--hostfile` are (`cli_messages.rs`), and the message names where each value came from.
//! They exited 1 before. The flags now apply before the configuration is checked, so a
//! cluster configured in a shared file takes each process's `--process-id` from its flag.

use crate::cli_messages::{run, utf8};
use crate::cli_run::text;

/// `(flags after serve's own, environment, message)`.
type Case = (Vec<String>, Vec<(&'static str, String)>, String);

#[test]
fn cluster_settings_from_the_config_file_or_the_environment_are_usage_errors_naming_their_source() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("new-data");
    let hosts = tmp.path().join("hosts.txt");
    std::fs::write(&hosts, "127.0.0.1:2101\n127.0.0.1:2102\n").expect("write");
    let missing = tmp.path().join("nonexistent");
    // Each case its own file, named in the message (absolute, as the binary names it).
    let file = |name: &str, toml: String| {
        let path = tmp.path().join(name);
        std::fs::write(&path, toml).expect("write config");
        utf8(&path).to_string()
    };
    let secret = format!("[visitor]\nsecret = \"{}\"\n", "5e".repeat(32));
    let (a, b, d, e, f) = (
        file("a.toml", format!("{secret}[dataflow]\nprocesses = 2\nhostfile = \"{}\"\n", utf8(&hosts))),
        file("b.toml", "[dataflow]\nprocesses = 0\n".into()),
        file("d.toml", format!("[dataflow]\nhostfile = \"{}\"\n", utf8(&hosts))),
        file("e.toml", format!("{secret}[dataflow]\nprocesses = 2\nhostfile = \"{}\"\n", utf8(&hosts))),
        file("f.toml", "[dataflow]\nprocesses = 2\n".into()),
    );
    let cases: Vec<Case> = vec![
        // The file alone.
        (
            vec!["--config".into(), a.clone()],
            vec![],
            format!(
                "dataflow.processes = 2 needs dataflow.process-id (--process-id): this process's line in the hostfile, 0 to 1 (from dataflow.processes in \
                 {a}, dataflow.hostfile in {a})"
            ),
        ),
        (vec!["--config".into(), b.clone()], vec![], format!("dataflow.processes must be at least 1 (from dataflow.processes in {b})")),
        (
            vec!["--config".into(), d.clone()],
            vec![],
            format!(
                "dataflow.hostfile (--hostfile) \"{}\" needs dataflow.processes (--processes) 2 or more, got 1 (from dataflow.hostfile in {d})",
                hosts.display()
            ),
        ),
        // The environment alone.
        (
            vec![],
            vec![
                ("SLUICE__DATAFLOW__PROCESSES", "2".into()),
                ("SLUICE__DATAFLOW__PROCESS_ID", "1".into()),
                ("SLUICE__DATAFLOW__HOSTFILE", utf8(&missing).into()),
            ],
            format!(
                "dataflow.hostfile (--hostfile) \"{}\" does not exist (from SLUICE__DATAFLOW__PROCESSES (environment variable), \
                 SLUICE__DATAFLOW__PROCESS_ID (environment variable), SLUICE__DATAFLOW__HOSTFILE (environment variable))",
                missing.display()
            ),
        ),
        // File and flag: the flag applies before the check (it used to be checked without
        // it: "needs dataflow.process-id"), and names itself.
        (
            vec!["--config".into(), e.clone(), "--process-id".into(), "2".into()],
            vec![],
            format!("dataflow.process-id 2 is out of range for 2 processes (from dataflow.processes in {e}, dataflow.hostfile in {e})"),
        ),
        // A flag wins over the file, and only the file's keys are named.
        (
            vec!["--config".into(), f, "--processes".into(), "3".into(), "--process-id".into(), "0".into()],
            vec![],
            "dataflow.processes = 3 needs dataflow.hostfile (--hostfile)".to_string(),
        ),
    ];
    for (extra, env, msg) in cases {
        let mut args = vec!["serve", "--listen", "127.0.0.1:0", "--data-dir", utf8(&data)];
        args.extend(extra.iter().map(String::as_str));
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let out = run(&args, &env);
        assert_eq!((out.status.code(), text(&out.stderr)), (Some(2), format!("error: {msg}\n")), "{extra:?} {env:?}");
        assert!(!data.exists(), "{extra:?}: no data dir created");
    }
}
