//! Pipeline configuration: parallelism, cluster membership and the event-time semantics.
//!
//! Structs deserialize with kebab-case keys and human-readable durations (`"48h"`, `"5m"`);
//! [`PipelineConfig::validate`] checks the invariants before anything starts.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

mod abuse;
pub use abuse::{AbuseConfig, BlocklistedTargetConfig, BotShareConfig, ClickBurstConfig, FloodCapConfig, Levels, ShareShiftConfig, VisitorFloodConfig};

/// Event-time semantics (DESIGN.md, "Semantics"). All comparisons use event time (the
/// watermark), never the wall clock, except [`Self::future_skew`] and [`Self::idle_timeout`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct SemanticsConfig {
    /// How far behind its partition's watermark an event may be and still be applied (to
    /// every granularity at once); later events are dead-lettered as `too_late`.
    /// Default 48 h; must not exceed `minute-retention` (`sluice` refuses more than 3650 days).
    #[serde(with = "humantime_serde")]
    pub allowed_lateness: Duration,
    /// Duplicates of an `event_id` are dropped within this event-time horizon (default 24 h).
    /// State is kept for `max(dedup-horizon, allowed-lateness)`, so a duplicate is either
    /// still remembered or itself too late (`sluice` refuses more than 3650 days).
    #[serde(with = "humantime_serde")]
    pub dedup_horizon: Duration,
    /// Events stamped later than the processing clock plus this are dead-lettered as
    /// `future` and never advance the watermark (default 5 min; `sluice` refuses more than 1 day).
    #[serde(with = "humantime_serde")]
    pub future_skew: Duration,
    /// A partition with no record for this long (processing time) is idle: it no longer holds
    /// the global watermark back, and its own watermark advances with the processing clock
    /// (default 5 s; `sluice` refuses more than 1 h).
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Retention of minute rows behind the watermark (default 48 h; `sluice` refuses more than
    /// 3650 days).
    #[serde(with = "humantime_serde")]
    pub minute_retention: Duration,
    /// Retention of 15-minute, hour and day rows behind the watermark (default 400 days;
    /// `sluice` refuses more than 3650 days).
    #[serde(with = "humantime_serde")]
    pub long_retention: Duration,
}

impl Default for SemanticsConfig {
    fn default() -> Self {
        SemanticsConfig {
            allowed_lateness: Duration::from_secs(48 * 3600),
            dedup_horizon: Duration::from_secs(24 * 3600),
            future_skew: Duration::from_secs(5 * 60),
            idle_timeout: Duration::from_secs(5),
            minute_retention: Duration::from_secs(48 * 3600),
            long_retention: Duration::from_secs(400 * 86_400),
        }
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl SemanticsConfig {
    /// Allowed lateness in ms.
    pub fn lateness_ms(&self) -> i64 {
        ms(self.allowed_lateness)
    }
    /// Dedup state retention in ms: `max(dedup_horizon, allowed_lateness)`.
    pub fn dedup_retention_ms(&self) -> i64 {
        ms(self.dedup_horizon).max(self.lateness_ms())
    }
    /// Future skew tolerance in ms.
    pub fn future_skew_ms(&self) -> i64 {
        ms(self.future_skew)
    }
    /// Idle timeout in ms.
    pub fn idle_timeout_ms(&self) -> i64 {
        ms(self.idle_timeout)
    }
    /// Retention per granularity in ms, indexed like [`crate::model::Granularity::ALL`].
    pub fn retention_ms(&self) -> [i64; 4] {
        let long = ms(self.long_retention);
        [ms(self.minute_retention), long, long, long]
    }

    /// Checks the invariants: all durations positive, lateness ≤ minute retention ≤ long
    /// retention. Errors with [`Error::Config`] naming the key.
    pub fn validate(&self) -> Result<()> {
        for (name, d) in [
            ("allowed-lateness", self.allowed_lateness),
            ("dedup-horizon", self.dedup_horizon),
            ("future-skew", self.future_skew),
            ("idle-timeout", self.idle_timeout),
            ("minute-retention", self.minute_retention),
            ("long-retention", self.long_retention),
        ] {
            if d.is_zero() {
                return Err(Error::Config(format!("\"{name}\" must be positive")));
            }
        }
        if self.allowed_lateness > self.minute_retention {
            return Err(Error::Config(format!(
                "\"allowed-lateness\" ({}) must not exceed \"minute-retention\" ({}): a late event must update every granularity at once",
                humantime::format_duration(self.allowed_lateness),
                humantime::format_duration(self.minute_retention)
            )));
        }
        if self.minute_retention > self.long_retention {
            return Err(Error::Config("\"minute-retention\" must not exceed \"long-retention\"".into()));
        }
        Ok(())
    }
}

/// Timely multi-process membership (`--processes`, `--process-id`, `--hostfile`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ClusterConfig {
    /// Index of this process, `0..addresses.len()`.
    pub process_id: usize,
    /// `host:port` of every process, in process-id order (timely connects them all-to-all).
    pub addresses: Vec<String>,
    /// Settings from outside the pipeline that every process must hold equal, as `(name,
    /// value)` pairs (the binary: its visitor secret's fingerprint). The graph compares them,
    /// and its own (worker threads, event-time semantics, `[abuse]`), between the processes
    /// when it starts; a difference fails the pipeline naming the setting
    /// ([`crate::pipeline::PipelineHandle::failure`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agreed: Vec<(String, String)>,
}

impl ClusterConfig {
    /// Reads a timely hostfile: one `host:port` per line, in process-id order; blank lines and
    /// `#` comments are ignored. `processes` must equal the number of entries.
    ///
    /// Errors with [`Error::Config`] if the file cannot be read, has the wrong number of
    /// entries, or `process_id` is out of range.
    pub fn from_hostfile(path: &Path, processes: usize, process_id: usize) -> Result<ClusterConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Config(format!("could not read hostfile \"{}\": {e}", path.display())))?;
        let addresses: Vec<String> = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_string).collect();
        if addresses.len() != processes {
            return Err(Error::Config(format!("hostfile \"{}\" lists {} processes, expected {processes}", path.display(), addresses.len())));
        }
        let c = ClusterConfig { process_id, addresses, agreed: Vec::new() };
        c.validate()?;
        Ok(c)
    }

    fn validate(&self) -> Result<()> {
        if self.addresses.is_empty() {
            return Err(Error::Config("cluster \"addresses\" must not be empty".into()));
        }
        if self.process_id >= self.addresses.len() {
            return Err(Error::Config(format!("\"process-id\" {} is out of range for {} processes", self.process_id, self.addresses.len())));
        }
        for a in &self.addresses {
            if a.rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok()).is_none() {
                return Err(Error::Config(format!("cluster address \"{a}\" is not host:port")));
            }
        }
        Ok(())
    }
}

/// Configuration of one pipeline process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Timely worker threads in this process (`--workers`).
    pub workers: usize,
    /// Multi-process membership; `None` runs a single process.
    pub cluster: Option<ClusterConfig>,
    /// Event-time semantics.
    pub semantics: SemanticsConfig,
    /// Most records a worker takes from its source per step (default 16,384: with a backlog,
    /// fewer and bigger steps cost less per record than 4,096 — `sluice bench dataflow
    /// --batch-size`, BENCHMARKS.md; a live source rarely has that many records waiting).
    pub batch_size: usize,
    /// Back-pressure: a worker stops reading its source while the dataflow lags its input by
    /// more than this many processing epochs (1 epoch = 1 ms of processing time). Default
    /// 1,000: the lag is measured at the rollups, the last operator, which every worker's
    /// progress holds back, so with 250 a worker often stopped while a peer applied a backlog
    /// (`sluice bench dataflow`, 2 workers, BENCHMARKS.md session 59). The memory this admits
    /// is records in flight (about 1 s of input), small beside the graph's state.
    pub max_inflight_epochs: u64,
    /// Minimum processing time between two change-stream batches (coalescing rows that
    /// change in every epoch); 0 emits one batch per completed epoch.
    #[serde(with = "humantime_serde")]
    pub change_interval: Duration,
    /// The rollups apply completed epochs in batches spanning at least this much processing
    /// time (bigger batches touch each rollup block once for many clicks); views lag the
    /// input by at most about this much more. 0 applies every completed epoch at once.
    #[serde(with = "humantime_serde")]
    pub apply_interval: Duration,
    /// `[abuse]`: the abuse detectors (issue 7).
    pub abuse: AbuseConfig,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            workers: 1,
            cluster: None,
            semantics: SemanticsConfig::default(),
            batch_size: 16_384,
            max_inflight_epochs: 1_000,
            change_interval: Duration::from_millis(500),
            apply_interval: Duration::from_millis(50),
            abuse: AbuseConfig::default(),
        }
    }
}

impl PipelineConfig {
    /// Checks every invariant (see [`SemanticsConfig::validate`]); errors with
    /// [`Error::Config`].
    pub fn validate(&self) -> Result<()> {
        if self.workers == 0 {
            return Err(Error::Config("\"workers\" must be at least 1".into()));
        }
        if self.batch_size == 0 {
            return Err(Error::Config("\"batch-size\" must be at least 1".into()));
        }
        if self.max_inflight_epochs == 0 {
            return Err(Error::Config("\"max-inflight-epochs\" must be at least 1".into()));
        }
        if let Some(c) = &self.cluster {
            c.validate()?;
        }
        self.abuse.validate()?;
        self.semantics.validate()
    }

    /// Total number of timely workers across all processes.
    pub fn peers(&self) -> usize {
        self.workers * self.cluster.as_ref().map_or(1, |c| c.addresses.len())
    }

    /// Global index of this process's first worker.
    pub fn first_worker(&self) -> usize {
        self.workers * self.cluster.as_ref().map_or(0, |c| c.process_id)
    }

    pub(crate) fn timely_config(&self) -> timely::Config {
        let communication = match &self.cluster {
            None if self.workers == 1 => timely::CommunicationConfig::Thread,
            None => timely::CommunicationConfig::Process(self.workers),
            Some(c) => timely::CommunicationConfig::Cluster {
                threads: self.workers,
                process: c.process_id,
                addresses: c.addresses.clone(),
                report: false,
                zerocopy: false,
            },
        };
        timely::Config { communication, worker: timely::WorkerConfig::default() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_consistent() {
        let c = PipelineConfig::default();
        c.validate().expect("defaults valid");
        assert_eq!(c.semantics.dedup_retention_ms(), 48 * 3_600_000);
        assert_eq!(c.semantics.retention_ms()[0], 48 * 3_600_000);
        assert_eq!(c.peers(), 1);
    }

    #[test]
    fn lateness_beyond_minute_retention_is_rejected() {
        let s = SemanticsConfig { allowed_lateness: Duration::from_secs(72 * 3600), ..Default::default() };
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("allowed-lateness"), "{err}");
    }

    #[test]
    fn hostfile_is_parsed_and_checked() {
        let dir = std::env::temp_dir().join(format!("sluice-hostfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("hosts.txt");
        std::fs::write(&p, "# cluster\n127.0.0.1:2101\n\n127.0.0.1:2102\n").unwrap();
        let c = ClusterConfig::from_hostfile(&p, 2, 1).expect("valid");
        assert_eq!(c.addresses, vec!["127.0.0.1:2101", "127.0.0.1:2102"]);
        assert!(ClusterConfig::from_hostfile(&p, 3, 0).is_err());
        assert!(ClusterConfig::from_hostfile(&p, 2, 2).is_err());
        let cfg = PipelineConfig { workers: 2, cluster: Some(c), ..Default::default() };
        assert_eq!(cfg.peers(), 4);
        assert_eq!(cfg.first_worker(), 2);
        std::fs::remove_dir_all(&dir).ok();
    }
}
