//! Process-wide telemetry: tracing to stderr and the Prometheus recorder behind `/metrics`.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Histogram buckets (seconds) for every `*_duration_seconds` metric: 50 µs … 5 s.
pub const DURATION_BUCKETS: &[f64] = &[0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();

/// How often the upkeep thread drains recorded histogram samples into their buckets.
/// `metrics-exporter-prometheus` keeps every sample (one per redirect) in memory until
/// upkeep or a `/metrics` render runs; without upkeep an unscraped server grows without
/// bound and the first scrape drains millions of samples. 5 s is the crate's own default.
pub const UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// Installs the global Prometheus recorder on first call and returns its handle (later
/// calls return the same handle); the first call also starts the `sluice-metrics-upkeep`
/// thread ([`UPKEEP_INTERVAL`]). If another recorder was installed first, the handle
/// renders nothing and a warning is logged.
pub fn prometheus() -> PrometheusHandle {
    PROMETHEUS
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_duration_seconds".into()), DURATION_BUCKETS)
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed, /metrics will be empty");
            }
            let upkeep = handle.clone();
            let spawned = std::thread::Builder::new().name("sluice-metrics-upkeep".into()).spawn(move || {
                loop {
                    std::thread::sleep(UPKEEP_INTERVAL);
                    upkeep.run_upkeep();
                }
            });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "could not start the metrics upkeep thread; histogram samples are drained only when /metrics is scraped");
            }
            handle
        })
        .clone()
}

/// A `--log` / `SLUICE_LOG` value that is not a valid filter: the first directive (of the
/// comma-separated list) that does not parse, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLogFilter {
    /// The offending directive as written (the whole value if no single piece fails alone).
    pub directive: String,
    /// The parser's explanation (`invalid filter directive`, `invalid field filter: ...`).
    pub reason: String,
}

impl std::fmt::Display for BadLogFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "directive {:?}: {}", self.directive, self.reason)
    }
}

/// Parses a log filter in tracing's EnvFilter syntax (`info`, `sluice=debug,warn`, ...).
///
/// Errors: [`BadLogFilter`] naming the first directive that does not parse. The parser
/// splits the value on `,` exactly like `EnvFilter` does, so the named directive is the
/// one `EnvFilter` refused.
pub fn parse_log_filter(value: &str) -> Result<tracing_subscriber::EnvFilter, BadLogFilter> {
    let builder = || tracing_subscriber::EnvFilter::builder();
    builder().parse(value).map_err(|whole| {
        let bad = value.split(',').filter(|d| !d.is_empty()).find_map(|d| builder().parse(d).err().map(|e| (d, e)));
        match bad {
            Some((d, e)) => BadLogFilter { directive: d.to_string(), reason: e.to_string() },
            None => BadLogFilter { directive: value.to_string(), reason: whole.to_string() },
        }
    })
}

/// Whether log lines get ANSI colours: only when the log stream (stderr) is a terminal and
/// `NO_COLOR` is unset or empty (<https://no-color.org>).
pub fn log_colours(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Initializes tracing to stderr with `filter` (see [`parse_log_filter`]), coloured per
/// [`log_colours`] for this process's stderr and environment; a no-op if a subscriber is
/// already set.
pub fn init_tracing(filter: tracing_subscriber::EnvFilter) {
    use std::io::IsTerminal;
    let ansi = log_colours(std::io::stderr().is_terminal(), std::env::var_os("NO_COLOR").as_deref());
    let _already = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).try_init();
    log_panics();
}

/// Makes a panic in any thread of the process (e.g. timely's network threads once a peer
/// process of the cluster is gone) an `ERROR` event in the log, `thread panicked` with the
/// thread's name, the panic's message and source location (and, with `RUST_BACKTRACE` set,
/// the backtrace), instead of the raw text the standard hook writes between log lines.
pub fn log_panics() {
    std::panic::set_hook(Box::new(|info| {
        let message = sluice_dataflows::pipeline::panic_text(info.payload());
        let location = info.location().map(ToString::to_string).unwrap_or_default();
        let thread = std::thread::current();
        let thread = thread.name().unwrap_or("<unnamed>");
        let backtrace = std::backtrace::Backtrace::capture();
        if backtrace.status() == std::backtrace::BacktraceStatus::Captured {
            tracing::error!(thread, message, location, %backtrace, "thread panicked");
        } else {
            tracing::error!(thread, message, location, "thread panicked");
        }
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_filters_parse_or_name_the_bad_directive() {
        assert!(parse_log_filter("info").is_ok());
        assert!(parse_log_filter("sluice=debug,warn").is_ok());
        assert!(parse_log_filter("").is_ok());
        let e = parse_log_filter("[[[").expect_err("invalid");
        assert_eq!(e, BadLogFilter { directive: "[[[".into(), reason: "invalid filter directive".into() });
        let e = parse_log_filter("info,sluice=loud,warn").expect_err("invalid level");
        assert_eq!(e.directive, "sluice=loud");
        assert_eq!(e.to_string(), format!("directive \"sluice=loud\": {}", e.reason));
    }

    #[test]
    fn colours_only_on_a_terminal_without_no_color() {
        use std::ffi::OsStr;
        assert!(log_colours(true, None));
        assert!(log_colours(true, Some(OsStr::new(""))), "an empty NO_COLOR does not count");
        assert!(!log_colours(true, Some(OsStr::new("1"))));
        assert!(!log_colours(false, None));
        assert!(!log_colours(false, Some(OsStr::new("1"))));
    }
}
