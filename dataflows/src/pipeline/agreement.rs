//! The settings every process of a timely cluster must share, checked when the graph starts.
//!
//! Processes of one cluster split the links between them by a hash of the code, so each
//! counts its share of every view under its own settings: two processes with different
//! event-time semantics (lateness, dedup horizon, retention) or abuse thresholds would
//! apply different rules to different links, and with different visitor secrets (a setting
//! of the binary, passed in [`crate::config::ClusterConfig::agreed`]) one visitor counts as
//! several uniques. Nothing in timely compares them, so the graph does: the first worker of
//! every process broadcasts its process's settings at epoch 0 and every worker compares each
//! peer's with its own. A difference is recorded as the pipeline's failure, a message naming
//! the setting and both values, which [`super::PipelineHandle::failure`] then reports (the
//! binary stops). Nothing panics: every process sees the difference and names it, and none
//! dies first and leaves its peers a broken connection to report instead (session 52).
//!
//! A worker that has received the settings of every process and found no difference has
//! passed the check; once every local worker has, [`super::PipelineHandle::agreed`] says so
//! (the binary's `/readyz` waits for it: until then a process cannot know whether its
//! cluster will run at all).

use timely::dataflow::Scope;
use timely::dataflow::operators::Inspect;
use timely::dataflow::operators::vec::{Broadcast, ToStream};

use crate::config::PipelineConfig;

/// `(name, value)` pairs, in a fixed order.
pub(crate) type Settings = Vec<(String, String)>;

/// Longest value quoted in a disagreement message; longer ones are only said to differ.
const QUOTE_MAX: usize = 80;

/// This process's settings: the caller's [`crate::config::ClusterConfig::agreed`], then the
/// pipeline's own (worker threads, event-time semantics, each `[abuse]` key). Empty without
/// a cluster.
pub(crate) fn settings(config: &PipelineConfig) -> Settings {
    let Some(cluster) = &config.cluster else { return Vec::new() };
    let d = |d: std::time::Duration| humantime::format_duration(d).to_string();
    let s = &config.semantics;
    let mut out = cluster.agreed.clone();
    out.extend([
        ("dataflow.workers".to_owned(), config.workers.to_string()),
        ("dataflow.allowed-lateness".to_owned(), d(s.allowed_lateness)),
        ("dataflow.dedup-horizon".to_owned(), d(s.dedup_horizon)),
        ("dataflow.future-skew".to_owned(), d(s.future_skew)),
        ("dataflow.idle-timeout".to_owned(), d(s.idle_timeout)),
        ("dataflow.minute-retention".to_owned(), d(s.minute_retention)),
        ("dataflow.long-retention".to_owned(), d(s.long_retention)),
    ]);
    // Each `[dataflow.abuse]` key on its own, so a difference names it (attack of session 51:
    // the whole table compared as one value said only "another value"). Serializing a config
    // of plain values cannot fail.
    flatten("dataflow.abuse", &serde_json::to_value(&config.abuse).unwrap_or_default(), &mut out);
    out
}

/// Appends the leaves of `v` under `name` (`name.key.key…`), strings unquoted.
fn flatten(name: &str, v: &serde_json::Value, out: &mut Settings) {
    match v {
        serde_json::Value::Object(m) => m.iter().for_each(|(k, v)| flatten(&format!("{name}.{k}"), v, out)),
        serde_json::Value::String(s) => out.push((name.to_owned(), s.clone())),
        other => out.push((name.to_owned(), other.to_string())),
    }
}

/// The first setting in which process `peer`'s `theirs` differs from this process's `mine`,
/// as a message naming it and, when short, both values; `None` when they agree.
pub(crate) fn disagreement(me: usize, mine: &Settings, peer: usize, theirs: &Settings) -> Option<String> {
    let value = |s: &Settings, name: &str| s.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    let names = mine.iter().chain(theirs).map(|(n, _)| n.as_str());
    let (name, a, b) = names.map(|n| (n, value(mine, n), value(theirs, n))).find(|(_, a, b)| a != b)?;
    let show = |v: Option<String>| match v {
        None => "none (an older or newer sluice?)".to_owned(),
        Some(v) if v.chars().count() > QUOTE_MAX => "another value".to_owned(),
        Some(v) => format!("\"{v}\""),
    };
    let (a, b) = (show(a), show(b));
    Some(format!("the processes of the cluster disagree on {name}: process {me} has {a}, process {peer} has {b}; start every process with the same {name}"))
}

/// Adds the check to the graph of one worker (module docs): `first` says whether this is
/// its process's first worker, which sends `mine` for process `process` of `processes`;
/// `fail` records a disagreement, `passed` is called once this worker has received the
/// settings of all `processes` and found none different.
pub(crate) fn check<'scope>(
    scope: Scope<'scope, u64>,
    (process, processes): (usize, usize),
    first: bool,
    mine: Settings,
    fail: impl Fn(String) + 'static,
    passed: impl Fn() + 'static,
) {
    let sent: Vec<(usize, Settings)> = if first { vec![(process, mine.clone())] } else { Vec::new() };
    let (mut agreeing, mut differed) = (0usize, false);
    sent.to_stream(scope).broadcast().inspect(move |(peer, theirs)| match disagreement(process, &mine, *peer, theirs) {
        Some(why) => {
            differed = true;
            fail(why);
        }
        None => {
            agreeing += 1;
            if agreeing == processes && !differed {
                passed();
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ClusterConfig;

    fn pairs(v: &[(&str, &str)]) -> Settings {
        v.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect()
    }

    #[test]
    fn equal_settings_agree_and_the_first_difference_is_named_with_both_values() {
        let a = pairs(&[("visitor secret fingerprint", "a51acaa56cd6"), ("dataflow.workers", "2")]);
        assert_eq!(disagreement(0, &a, 1, &a.clone()), None);
        let b = pairs(&[("visitor secret fingerprint", "153651a10096"), ("dataflow.workers", "3")]);
        assert_eq!(
            disagreement(1, &a, 0, &b).as_deref(),
            Some(
                "the processes of the cluster disagree on visitor secret fingerprint: process 1 has \"a51acaa56cd6\", process 0 has \
                 \"153651a10096\"; start every process with the same visitor secret fingerprint"
            )
        );
        let missing = pairs(&[("dataflow.workers", "2")]);
        assert_eq!(
            disagreement(0, &missing, 1, &a).as_deref(),
            Some(
                "the processes of the cluster disagree on visitor secret fingerprint: process 0 has none (an older or newer sluice?), process 1 \
                 has \"a51acaa56cd6\"; start every process with the same visitor secret fingerprint"
            )
        );
        let long = pairs(&[("[dataflow.abuse]", &"x".repeat(81))]);
        let short = pairs(&[("[dataflow.abuse]", "y")]);
        assert_eq!(
            disagreement(0, &long, 1, &short).as_deref(),
            Some(
                "the processes of the cluster disagree on [dataflow.abuse]: process 0 has another value, process 1 has \"y\"; start every process with the same [dataflow.abuse]"
            )
        );
    }

    #[test]
    fn the_settings_name_the_callers_then_the_pipelines_and_only_in_a_cluster() {
        let mut cfg = PipelineConfig::default();
        assert_eq!(settings(&cfg), Settings::new());
        cfg.cluster = Some(ClusterConfig { process_id: 0, addresses: vec!["127.0.0.1:1".into(), "127.0.0.1:2".into()], agreed: pairs(&[("k", "v")]) });
        cfg.semantics.allowed_lateness = std::time::Duration::from_secs(3600);
        let s = settings(&cfg);
        let names: Vec<&str> = s.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names[..8],
            [
                "k",
                "dataflow.workers",
                "dataflow.allowed-lateness",
                "dataflow.dedup-horizon",
                "dataflow.future-skew",
                "dataflow.idle-timeout",
                "dataflow.minute-retention",
                "dataflow.long-retention",
            ]
        );
        assert_eq!((s[0].1.as_str(), s[2].1.as_str()), ("v", "1h"));
        // Every [dataflow.abuse] key by its dotted name, durations as written in TOML.
        let value = |n: &str| s.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
        assert_eq!((value("dataflow.abuse.warmup"), value("dataflow.abuse.visitor-flood.window")), (Some("3m"), Some("1m")));
        let mut other = cfg.clone();
        other.abuse.top_n = 7;
        other.abuse.warmup = std::time::Duration::from_secs(60);
        let top_n = cfg.abuse.top_n;
        assert_eq!(
            disagreement(0, &s, 1, &settings(&other)),
            Some(format!(
                "the processes of the cluster disagree on dataflow.abuse.top-n: process 0 has \"{top_n}\", process 1 has \"7\"; start every \
                 process with the same dataflow.abuse.top-n"
            ))
        );
    }
}
