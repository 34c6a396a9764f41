//! `[dataflow]` and `[stats]`: the configuration of the click dataflow that `sluice serve`
//! runs in-process, and of the stats endpoints that read it.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use sluice_dataflows::config::{AbuseConfig, ClusterConfig, PipelineConfig, SemanticsConfig};

/// The shortest `[dataflow] checkpoint-interval` other than `0s` (off): 1 s. Each checkpoint
/// writes and fsyncs the whole state, so shorter intervals only burn disk bandwidth.
pub const MIN_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

/// `[dataflow]` (defaults in `src/default.toml`; every duration is human-readable).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct DataflowSection {
    /// Run the dataflow in processes that hold the click log (`role = all | redirect`).
    pub enabled: bool,
    /// Timely worker threads of this process (`--dataflow-workers`), `1..=`[`crate::config::MAX_WORKERS`].
    pub workers: usize,
    /// Timely processes in the cluster (`--processes`); more than 1 needs `hostfile`.
    pub processes: usize,
    /// This process's index in the hostfile, `0..processes` (`--process-id`); required when
    /// `processes > 1` (a missing id must not make two processes both take partition 0),
    /// 0 when unset on a single process ([`Self::process_id`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process_id: Option<usize>,
    /// Timely hostfile: one `host:port` per process, in process-id order (`--hostfile`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostfile: Option<PathBuf>,
    /// How far behind the watermark (event time) a click may be and still count; at most 3650 days.
    #[serde(with = "humantime_serde")]
    pub allowed_lateness: Duration,
    /// Repeated `event_id`s within this event-time horizon count once; at most 3650 days.
    #[serde(with = "humantime_serde")]
    pub dedup_horizon: Duration,
    /// Clicks stamped further ahead of the server clock are dead-lettered (`future`); at most 1 day.
    #[serde(with = "humantime_serde")]
    pub future_skew: Duration,
    /// A quiet click log stops holding the watermark back after this long (processing time);
    /// at most 1 h.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Minute rows are kept this long behind the watermark (≥ allowed-lateness, at most 3650 days).
    #[serde(with = "humantime_serde")]
    pub minute_retention: Duration,
    /// 15-minute, hour and day rows are kept this long behind the watermark; at most 3650 days.
    #[serde(with = "humantime_serde")]
    pub long_retention: Duration,
    /// Most click-log records a worker takes per step (and per log read).
    pub batch_size: usize,
    /// Back-pressure: stop reading while the graph lags its input by more than this many
    /// processing epochs (1 epoch = 1 ms).
    pub max_inflight_epochs: u64,
    /// The rollups apply completed epochs in batches spanning at least this much processing
    /// time: the main freshness knob (views lag the log by about this much plus processing);
    /// at most 10 min.
    #[serde(with = "humantime_serde")]
    pub apply_interval: Duration,
    /// How often the link store's change feed is polled for metadata changes made by other
    /// API processes (changes made through this process arrive at once); at most 1 h.
    #[serde(with = "humantime_serde")]
    pub meta_poll_interval: Duration,
    /// A MaxMind DB file (e.g. GeoLite2-Country.mmdb) instead of the bundled IP-to-country
    /// database.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub geoip_path: Option<PathBuf>,
    /// How often the dataflow's state is checkpointed into `<data-dir>/checkpoints` (also at
    /// graceful shutdown); a restart resumes from the newest checkpoint instead of replaying
    /// the whole input. `0s` disables checkpoints; otherwise at least
    /// [`MIN_CHECKPOINT_INTERVAL`] and at most 1 day. Needs `processes = 1`.
    #[serde(with = "humantime_serde")]
    pub checkpoint_interval: Duration,
    /// Start even when the click log starts past offset 0 and no checkpoint holds the clicks
    /// before it: count only the clicks from the log's start (`sluice serve
    /// --count-from-log-start`; not a configuration key). Off: such a start is refused.
    #[serde(skip)]
    pub count_from_log_start: bool,
    /// `[dataflow.abuse]`: the abuse detectors' thresholds and windows (keys and defaults in
    /// `sluice_dataflows::config::AbuseConfig` and the dataflows README, "Abuse detection").
    pub abuse: AbuseConfig,
}

impl Default for DataflowSection {
    fn default() -> Self {
        let sem = SemanticsConfig::default();
        let pipe = PipelineConfig::default();
        DataflowSection {
            enabled: true,
            workers: 1,
            processes: 1,
            process_id: None,
            hostfile: None,
            allowed_lateness: sem.allowed_lateness,
            dedup_horizon: sem.dedup_horizon,
            future_skew: sem.future_skew,
            idle_timeout: sem.idle_timeout,
            minute_retention: sem.minute_retention,
            long_retention: sem.long_retention,
            batch_size: pipe.batch_size,
            max_inflight_epochs: pipe.max_inflight_epochs,
            apply_interval: pipe.apply_interval,
            meta_poll_interval: Duration::from_secs(1),
            geoip_path: None,
            checkpoint_interval: Duration::from_secs(30),
            count_from_log_start: false,
            abuse: pipe.abuse.clone(),
        }
    }
}

impl DataflowSection {
    /// The event-time semantics.
    pub fn semantics(&self) -> SemanticsConfig {
        SemanticsConfig {
            allowed_lateness: self.allowed_lateness,
            dedup_horizon: self.dedup_horizon,
            future_skew: self.future_skew,
            idle_timeout: self.idle_timeout,
            minute_retention: self.minute_retention,
            long_retention: self.long_retention,
        }
    }

    /// The pipeline configuration (reads the hostfile when `processes > 1`).
    ///
    /// Errors: invalid values (naming the key), an unreadable or inconsistent hostfile.
    pub fn pipeline_config(&self) -> anyhow::Result<PipelineConfig> {
        let cluster = if self.processes > 1 {
            let Some(path) = &self.hostfile else {
                bail!("dataflow.processes = {} needs dataflow.hostfile (--hostfile)", self.processes);
            };
            Some(ClusterConfig::from_hostfile(path, self.processes, self.process_id()).context("invalid dataflow cluster")?)
        } else {
            None
        };
        let cfg = PipelineConfig {
            workers: self.workers,
            cluster,
            semantics: self.semantics(),
            batch_size: self.batch_size,
            max_inflight_epochs: self.max_inflight_epochs,
            apply_interval: self.apply_interval,
            abuse: self.abuse.clone(),
            ..PipelineConfig::default()
        };
        cfg.validate().context("invalid [dataflow] configuration")?;
        Ok(cfg)
    }

    /// The cluster settings' part of [`Self::validate`]: `processes` at least 1; with more
    /// than 1, a `process-id` below it and a `hostfile` that is a file; a hostfile on a single
    /// process (it would be ignored) is refused.
    ///
    /// Errors: the first invalid value, naming its key and flag.
    pub fn validate_cluster(&self) -> anyhow::Result<()> {
        if self.processes == 0 {
            bail!("dataflow.processes must be at least 1");
        }
        match self.process_id {
            None if self.processes > 1 => bail!(
                "dataflow.processes = {} needs dataflow.process-id (--process-id): this process's line in the hostfile, 0 to {}",
                self.processes,
                self.processes - 1
            ),
            Some(id) if id >= self.processes => bail!("dataflow.process-id {id} is out of range for {} processes", self.processes),
            _ => {}
        }
        match &self.hostfile {
            None if self.processes > 1 => bail!("dataflow.processes = {} needs dataflow.hostfile (--hostfile)", self.processes),
            None => {}
            // A hostfile on a single process would be silently ignored.
            Some(path) if self.processes <= 1 => {
                bail!("dataflow.hostfile (--hostfile) \"{}\" needs dataflow.processes (--processes) 2 or more, got {}", path.display(), self.processes)
            }
            Some(path) if !path.is_file() => {
                let what = if path.exists() { "is not a file" } else { "does not exist" };
                bail!("dataflow.hostfile (--hostfile) \"{}\" {what}", path.display())
            }
            Some(_) => {}
        }
        Ok(())
    }

    /// Checks everything [`Self::pipeline_config`] checks except the hostfile's contents
    /// (a hostfile must exist, and is refused on a single process, where it would be ignored).
    ///
    /// Errors: the first invalid value, naming its key.
    pub fn validate(&self) -> anyhow::Result<()> {
        if !(1..=crate::config::MAX_WORKERS).contains(&self.workers) {
            bail!("dataflow.workers must be between 1 and {}, got {}", crate::config::MAX_WORKERS, self.workers);
        }
        self.validate_cluster()?;
        if !self.checkpoint_interval.is_zero() && self.checkpoint_interval < MIN_CHECKPOINT_INTERVAL {
            bail!(
                "dataflow.checkpoint-interval must be \"0s\" (no checkpoints) or at least {}, got {}: each checkpoint writes and fsyncs the \
                 whole dataflow state",
                humantime::format_duration(MIN_CHECKPOINT_INTERVAL),
                humantime::format_duration(self.checkpoint_interval)
            );
        }
        if self.meta_poll_interval.is_zero() {
            bail!("dataflow.meta-poll-interval must be positive");
        }
        if self.batch_size > 1_000_000 {
            bail!("dataflow.batch-size must be at most 1000000, got {}", self.batch_size);
        }
        let cfg = PipelineConfig {
            workers: self.workers,
            semantics: self.semantics(),
            batch_size: self.batch_size,
            max_inflight_epochs: self.max_inflight_epochs,
            apply_interval: self.apply_interval,
            abuse: self.abuse.clone(),
            ..PipelineConfig::default()
        };
        cfg.validate().context("invalid [dataflow] configuration")
    }

    /// This process's index in the cluster: `process-id`, 0 when unset (a single process;
    /// [`Self::validate`] refuses it unset on several).
    pub fn process_id(&self) -> usize {
        self.process_id.unwrap_or(0)
    }

    /// The click-log partition this process reads: its process id (one embedded log per
    /// process; 0 for a single process).
    pub fn partition(&self) -> u32 {
        u32::try_from(self.process_id()).unwrap_or(u32::MAX)
    }
}

/// `[stats]`: the stats endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct StatsSection {
    /// `Cache-Control: private, max-age` of stats answers (whole seconds; 0 = `no-cache`; at
    /// most 1 day, [`crate::config::bounds`]).
    #[serde(with = "humantime_serde")]
    pub cache_max_age: Duration,
}

impl Default for StatsSection {
    fn default() -> Self {
        StatsSection { cache_max_age: Duration::from_secs(2) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dataflow_abuse_table_reaches_the_pipeline_config() {
        let section: DataflowSection =
            toml::from_str("[abuse]\ntick = \"2s\"\n[abuse.click-burst]\nmin-ratio = 4.5\nwarning-min-clicks = 50\n").expect("valid [dataflow.abuse]");
        let pipe = section.pipeline_config().expect("pipeline config");
        assert_eq!(pipe.abuse.tick, Duration::from_secs(2));
        assert_eq!(pipe.abuse.click_burst.min_ratio, 4.5);
        assert_eq!(pipe.abuse.click_burst.warning_min_clicks, 50);
        // untouched keys keep the detector defaults
        let defaults = AbuseConfig::default();
        assert_eq!(pipe.abuse.click_burst.min_z, defaults.click_burst.min_z);
        assert_eq!(pipe.abuse.bot_share, defaults.bot_share);
    }

    /// default.toml documents every `[dataflow.abuse]` key, commented out: uncommented, the
    /// block must parse to exactly the detectors' defaults.
    #[test]
    fn default_toml_documents_the_abuse_defaults() {
        let block: String = crate::config::DEFAULT_TOML
            .lines()
            .skip_while(|l| l.trim() != "# [dataflow.abuse]")
            .take_while(|l| l.starts_with('#'))
            .map(|l| format!("{}\n", l.trim_start_matches('#').trim_start()))
            .collect();
        assert!(block.contains("clicks-per-minute"), "block found: {block}");
        let doc: toml::Table = toml::from_str(&block).expect("the documented block parses");
        let abuse: AbuseConfig = doc["dataflow"]["abuse"].clone().try_into().expect("valid [dataflow.abuse]");
        assert_eq!(abuse, AbuseConfig::default());
    }

    #[test]
    fn dataflow_abuse_rejects_unknown_keys_and_invalid_values() {
        let unknown = toml::from_str::<DataflowSection>("[abuse.click-burst]\nmin-ratoi = 4.5\n").unwrap_err().to_string();
        assert!(unknown.contains("min-ratoi"), "{unknown}");
        let section: DataflowSection = toml::from_str("[abuse.click-burst]\nmin-ratio = 0.5\n").expect("parses");
        let err = format!("{:#}", section.validate().unwrap_err());
        assert!(err.contains("min-ratio"), "{err}");
    }

    #[test]
    fn default_section_uses_the_detector_defaults() {
        assert_eq!(DataflowSection::default().pipeline_config().expect("defaults valid").abuse, AbuseConfig::default());
    }
}
