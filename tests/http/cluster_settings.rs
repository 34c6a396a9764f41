//! Settings the processes of a cluster must share (finding of session 50: two processes
//! with different visitor secrets ran, and one visitor clicking through both counted as two
//! uniques; nothing said so). The dataflow now compares them at start and both processes
//! stop with exit code 1, naming the setting: no worker panics (session 52: one process's
//! panic left its peer reporting a lost connection, with a backtrace).

use std::time::{Duration, Instant};

use crate::child::{free_port, serve_embedded};

#[test]
fn processes_of_a_cluster_with_different_visitor_secrets_stop_naming_the_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hostfile = dir.path().join("hosts");
    std::fs::write(&hostfile, format!("127.0.0.1:{}\n127.0.0.1:{}\n", free_port(), free_port())).expect("hostfile");
    let hostfile = hostfile.to_str().expect("utf-8");
    // Fingerprints from Python: hashlib.sha256(b"sluice visitor secret fingerprint\x00" + secret).hexdigest()[:12]
    let (secrets, fingerprints) = (["5e".repeat(32), "00".repeat(32)], ["a51acaa56cd6", "153651a10096"]);
    let mut children: Vec<_> = (0..2)
        .map(|p| {
            let config = dir.path().join(format!("sluice{p}.toml"));
            std::fs::write(&config, format!("[visitor]\nsecret = \"{}\"\n", secrets[p])).expect("config");
            let (data, log) = (dir.path().join(format!("data{p}")), dir.path().join(format!("serve{p}.log")));
            let args = ["--config", config.to_str().expect("utf-8"), "--processes", "2", "--process-id", &p.to_string(), "--hostfile", hostfile];
            serve_embedded(&format!("127.0.0.1:{}", free_port()), &data, &args, &log)
        })
        .collect();
    let t0 = Instant::now();
    for (p, child) in children.iter_mut().enumerate() {
        let log_path = dir.path().join(format!("serve{p}.log"));
        let status = loop {
            if let Some(s) = child.exited() {
                break s;
            }
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            assert!(t0.elapsed() < Duration::from_secs(90), "process {p} still running 90 s after its start; its log:\n{log}");
            std::thread::sleep(Duration::from_millis(50));
        };
        let log = std::fs::read_to_string(&log_path).expect("log");
        assert_eq!(status.code(), Some(1), "process {p}: {log}");
        let last = log.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default();
        let (q, mine, theirs) = (1 - p, fingerprints[p], fingerprints[1 - p]);
        let why = format!(
            "the processes of the cluster disagree on visitor.secret (its fingerprint): process {p} has \"{mine}\", process {q} has \"{theirs}\"; start \
             every process with the same visitor.secret (its fingerprint)"
        );
        assert!(last.starts_with(&format!("error: the dataflow stopped working ({why})")), "process {p}: last line: {last}\nlog:\n{log}");
        assert!(!log.contains("panicked"), "process {p}: {log}");
    }
}
