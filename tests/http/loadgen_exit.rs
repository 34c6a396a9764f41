//! `sluice loadgen`'s exit status through the real binary against a real `sluice serve`: a
//! run where no redirect request got a redirect (every code unknown: 404) exits 1 with one
//! line saying so, after printing its report; a run past `--max-error-share` exits 1 too; a
//! run whose requests were redirected exits 0; an `--attack-code` the run cannot attack is
//! refused (exit 2) before any link is created.

use std::process::Output;

use crate::child::serve_embedded_ready;
use crate::cli_run::{sluice_quiet, text};

/// `sluice loadgen` against `listen`: 20 redirect requests in 1 s on `codes`, no posted events.
fn loadgen(listen: &str, codes: &str, extra: &[&str]) -> Output {
    let target = format!("http://{listen}");
    let mut args = vec!["--target", &target, "--codes", codes];
    args.extend(["--rate", "20", "--duration", "1s", "--late-share", "0", "--duplicate-share", "0", "--seed", "1"]);
    args.extend(extra);
    sluice_quiet("loadgen", &args)
}

/// Finding: `sluice loadgen` exited 0 when every request got 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadgen_exits_1_when_requests_get_no_redirect() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_server, listen) = serve_embedded_ready(tmp.path()).await;
    let http = reqwest::Client::new();
    let created = http
        .post(format!("http://{listen}/v1/links"))
        .json(&serde_json::json!({"long_url": "https://example.com/lg", "custom_alias": "lg-ok"}))
        .send()
        .await
        .expect("create link");
    assert_eq!(created.status(), reqwest::StatusCode::CREATED);

    // Codes the server does not have: every answer is 404.
    let out = loadgen(&listen, "lg-nope-1,lg-nope-2", &[]);
    assert_eq!(
        (out.status.code(), text(&out.stderr)),
        (
            Some(1),
            format!(
                "error: none of the 20 redirect requests got a redirect (3xx) from http://{listen}/ (404: 20): is the server running \
                 there, is --target its redirect origin, and do the links exist (--codes)?\n"
            )
        )
    );
    let report = text(&out.stdout);
    assert!(report.starts_with("loadgen: 20 requests sent of 20 planned") && report.contains("answers {404: 20}"), "{report}");
    // The threshold does not excuse a run without a single redirect.
    let out = loadgen(&listen, "lg-nope-1", &["--max-error-share", "1"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));

    // A link that exists: every request is redirected.
    let out = loadgen(&listen, "lg-ok", &[]);
    assert_eq!((out.status.code(), text(&out.stderr)), (Some(0), String::new()));
    assert!(text(&out.stdout).contains("answers {302: 20}"), "{}", text(&out.stdout));

    // One link of two unknown: the second code's share (Zipf rank 2) is far above 5 %.
    let out = loadgen(&listen, "lg-ok,lg-nope-1", &[]);
    let (report, err) = (text(&out.stdout), text(&out.stderr));
    let missed: u64 = report.split("404: ").nth(1).and_then(|s| s.split('}').next()).and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("{report}"));
    assert!(missed > 1 && missed < 20, "{report}");
    assert_eq!(
        (out.status.code(), err),
        (
            Some(1),
            format!(
                "error: {missed} of 20 redirect requests ({:.1} %) got no redirect (3xx) from http://{listen}/ (404: {missed}), more than \
                 --max-error-share 0.05 allows\n",
                missed as f64 * 5.0
            )
        )
    );
    let out = loadgen(&listen, "lg-ok,lg-nope-1", &["--max-error-share", "0.9"]);
    assert_eq!((out.status.code(), text(&out.stderr)), (Some(0), String::new()));
    let out = loadgen(&listen, "lg-ok", &["--max-error-share", "1.5"]);
    assert_eq!(out.status.code(), Some(2), "a refused flag value is a usage error");
    assert_eq!(text(&out.stderr), "error: --max-error-share must be between 0 and 1, got 1.5\n");
}

/// Finding: `loadgen --attack-code nosuch` created the run's links on the server, then
/// refused the code. An attack code that is not one of `--codes` (without `--codes` the run
/// creates links whose codes the server chooses, so none can be named) is a usage error
/// (exit code 2) before any request: no link is created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attack_code_the_run_cannot_attack_is_refused_before_any_link_is_created() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_server, listen) = serve_embedded_ready(tmp.path()).await;
    let http = reqwest::Client::new();
    let target = format!("http://{listen}");
    let created = ["--target", &target, "--links", "3", "--rate", "20", "--duration", "1s", "--attack", "burst", "--attack-code", "nosuch"];
    let listed = ["--target", &target, "--codes", "lg-a,lg-b", "--rate", "20", "--duration", "1s", "--attack", "burst", "--attack-code", "nosuch"];
    for (args, msg) in [
        (
            &created,
            "--attack-code \"nosuch\" needs --codes naming it: the links this run creates get their codes from the server (without --attack-code \
             the attack takes the link of median popularity)",
        ),
        (&listed, "--attack-code \"nosuch\" is not one of --codes"),
    ] {
        let out = sluice_quiet("loadgen", args);
        assert_eq!((out.status.code(), text(&out.stderr), text(&out.stdout)), (Some(2), format!("error: {msg}\n"), String::new()), "{args:?}");
    }
    let list: serde_json::Value = http.get(format!("http://{listen}/v1/links")).send().await.expect("list").json().await.expect("json");
    assert_eq!(list["items"], serde_json::json!([]), "no link created: {list}");
}
