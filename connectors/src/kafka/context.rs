//! librdkafka client contexts: route librdkafka's log lines and global errors to `tracing`
//! (rate-limited), and collect the producer's delivery reports for the spill forwarder.

use std::sync::Mutex;
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::ProducerContext;

use super::metrics::{RateLimit, kafka_error_type};

/// Client context of consumers and admin clients: logs through `tracing`.
pub(crate) struct LogContext {
    /// Component name in log lines (`"kafka_source"`, `"kafka_admin"`).
    pub component: &'static str,
    pub limiter: Mutex<RateLimit>,
}

impl LogContext {
    pub fn new(component: &'static str) -> Self {
        LogContext { component, limiter: Mutex::new(RateLimit::new(Duration::from_secs(5))) }
    }
}

fn log_line(component: &str, level: RDKafkaLogLevel, fac: &str, message: &str) {
    match level {
        RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
            tracing::warn!(component, facility = fac, "librdkafka: {message}")
        }
        RDKafkaLogLevel::Warning | RDKafkaLogLevel::Notice => {
            tracing::info!(component, facility = fac, "librdkafka: {message}")
        }
        RDKafkaLogLevel::Info | RDKafkaLogLevel::Debug => {
            tracing::debug!(component, facility = fac, "librdkafka: {message}")
        }
    }
}

/// Global client errors (broker down, all brokers down, ...) are expected during outages and
/// librdkafka recovers from them by itself; log them at most every 5 s.
fn log_error(component: &str, limiter: &Mutex<RateLimit>, error: &KafkaError, reason: &str) {
    let allow = limiter.lock().map(|mut l| l.allow()).unwrap_or(true);
    if allow {
        tracing::warn!(component, error_type = kafka_error_type(error), error = %error, reason, "kafka client error");
    }
}

impl ClientContext for LogContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        log_line(self.component, level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        log_error(self.component, &self.limiter, &error, reason);
    }
}

impl ConsumerContext for LogContext {}

/// One delivery report: the spill offset the message came from and whether the broker
/// acknowledged it.
pub(crate) type Report = (u64, Result<(), KafkaError>);

/// Producer context of the spill forwarder: queues delivery reports (called from
/// `BaseProducer::poll` on the forwarder thread itself) for the forwarder to drain.
pub(crate) struct DeliveryCollector {
    pub reports: Mutex<Vec<Report>>,
    pub limiter: Mutex<RateLimit>,
}

impl DeliveryCollector {
    pub fn new() -> Self {
        DeliveryCollector { reports: Mutex::new(Vec::new()), limiter: Mutex::new(RateLimit::new(Duration::from_secs(5))) }
    }

    /// Moves the queued reports into `out` (cleared first).
    pub fn drain_into(&self, out: &mut Vec<Report>) {
        out.clear();
        let mut q = self.reports.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::swap(&mut *q, out);
    }
}

impl ClientContext for DeliveryCollector {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        log_line("kafka_sink", level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        log_error("kafka_sink", &self.limiter, &error, reason);
    }
}

impl ProducerContext for DeliveryCollector {
    /// The spill offset of the message (`u64` stored as `usize`: 64-bit targets only).
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, offset: usize) {
        let r = match result {
            Ok(_) => Ok(()),
            Err((e, _)) => Err(e.clone()),
        };
        self.reports.lock().unwrap_or_else(|p| p.into_inner()).push((offset as u64, r));
    }
}
