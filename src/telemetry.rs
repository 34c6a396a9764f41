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

/// Initializes tracing to stderr with `filter` (EnvFilter syntax); a no-op if already set.
pub fn init_tracing(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _already = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}
