//! Running the real `sluice` binary's client commands from tests (`import`, `loadgen`) with
//! no configuration taken from the environment, and reading what they print.

use std::process::{Command, Output};

use serde_json::json;

/// `sluice --log warn <command> --quiet <args>`: the environment's log filter, ingest token,
/// Kafka brokers and store URL removed, so the command runs on its flags alone.
pub fn sluice_quiet(command: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["--log", "warn", command, "--quiet"])
        .args(args)
        .env_remove("SLUICE_LOG")
        .env_remove("SLUICE_INGEST_TOKEN")
        .env_remove("KAFKA_BROKERS")
        .env_remove("SLUICE__STORE__URL")
        .output()
        .unwrap_or_else(|e| panic!("run sluice {command}: {e}"))
}

/// `sluice import --quiet <args>` ([`sluice_quiet`]).
pub fn import(args: &[&str]) -> Output {
    sluice_quiet("import", args)
}

/// Printed bytes as text (lossy UTF-8).
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Wall-clock time, ms since the Unix epoch (UTC).
pub fn now_ms() -> i64 {
    i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis()).expect("ms")
}

/// Creates link `code` (target `https://example.com/<code>`) on the server at `listen`; asserts 201.
pub async fn create_link(http: &reqwest::Client, listen: &str, code: &str) {
    let r = http
        .post(format!("http://{listen}/v1/links"))
        .json(&json!({"long_url": format!("https://example.com/{code}"), "custom_alias": code}))
        .send()
        .await
        .expect("create link");
    assert_eq!(r.status(), reqwest::StatusCode::CREATED, "{code}");
}
