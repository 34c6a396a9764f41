//! [`KafkaClickSink`]: what ingest uses instead of the embedded click log when Kafka is on.
//!
//! `append` writes a batch to the local [`Spill`] (durable, bounded) and returns; the
//! redirect/ingest path never waits for, or fails because of, the broker. A background thread
//! (`sluice-kafka-forwarder`, see `forwarder.rs`) forwards the spill to the topic in order with
//! an idempotent producer and releases events once the broker acknowledged them (acks=all).
//!
//! Delivery guarantee: **at-least-once, in order per key** for every event `append` accepted,
//! across broker outages of any length (while the spill has room) and process restarts.
//! - Broker down: events already handed to librdkafka (up to `max-in-flight`) stay there and
//!   in the spill; librdkafka retries them in order until the broker answers (with the default
//!   `message-timeout = 0s` it never gives up). Newer events wait in the spill; when it is
//!   full, `append` drops the newest events of a batch and counts them
//!   (`sluice_kafka_spill_dropped_total`).
//! - Failed deliveries (the broker rejects a batch — tansu 0.6 does so for the pre-restart
//!   producer after a restart — or a finite `message-timeout` expired): the events are still
//!   in the spill; the forwarder waits for every outstanding report, builds a fresh producer
//!   and re-sends them in spill order before anything newer.
//! - Duplicates: an event whose acknowledgement was lost (a failure report for a batch the
//!   broker did store, or a crash before the spill was truncated) is sent again. The dataflow
//!   removes duplicates by `event_id`, so results are exact.
//! - Order: Kafka orders messages per partition, and the key (the short code) picks the
//!   partition. The idempotent producer keeps each partition's order across its own retries,
//!   and re-sends go out before newer events, so the first copy of every event keeps the
//!   spill's order per key. The exception is Kafka's own: when a finite `message-timeout`
//!   expires, librdkafka bumps the producer epoch and continues with later messages, so the
//!   timed-out event may land after later events of its key — hence the default of never.
//!   Measured in `integration_tests/outage.rs`.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sluice_schemas::ClickEvent;

use super::config::KafkaConfig;
use super::forwarder::Forwarder;
use super::metrics::{RateLimit, SpillDropped};
use super::schema_registry::SchemaRegistry;
use super::spill::{Spill, SpillAppend};
use crate::{Error, Result};

/// Counters of one [`KafkaClickSink`] since it started (also exported as metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SinkStats {
    /// Delivery reports acknowledged by the broker (re-sent events count again).
    pub delivered: u64,
    /// Failed delivery reports and failed hand-overs to librdkafka.
    pub delivery_errors: u64,
    /// Events handed to librdkafka again after a failure.
    pub resent: u64,
    /// Events `append` dropped because the spill was full.
    pub spill_dropped: u64,
    /// Events in the spill (unacknowledged, or acknowledged and not yet truncated).
    pub backlog: u64,
    /// Events appended and not yet acknowledged by the broker.
    pub unacked: u64,
    /// Registry id of the value schema, once registered (registry configured only).
    pub schema_id: Option<u32>,
    /// Times the producer was rebuilt after a fatal error.
    pub producer_restarts: u64,
}

/// State shared between the sink handle and its forwarder thread.
pub(crate) struct Shared {
    stop: AtomicBool,
    deadline: Mutex<Option<Instant>>,
    pub delivered: AtomicU64,
    pub delivery_errors: AtomicU64,
    pub resent: AtomicU64,
    pub backlog: AtomicU64,
    pub unacked: AtomicU64,
    /// `u64::MAX` until registered.
    pub schema_id: AtomicU64,
    pub producer_restarts: AtomicU64,
    /// The most recent delivery error (`error_type: message`), for readiness reports.
    pub last_error: Mutex<Option<String>>,
}

impl Shared {
    /// `Some(deadline)` once a stop was requested.
    pub fn stop_deadline(&self) -> Option<Instant> {
        if !self.stop.load(Ordering::Acquire) {
            return None;
        }
        Some(self.deadline.lock().unwrap_or_else(|p| p.into_inner()).unwrap_or_else(Instant::now))
    }
}

/// Publishes click events to Kafka through a bounded local spill; see the module docs.
pub struct KafkaClickSink {
    topic: String,
    spill: Arc<Spill>,
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
    drop_log: Mutex<RateLimit>,
}

impl std::fmt::Debug for KafkaClickSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaClickSink").field("topic", &self.topic).field("spill", &self.spill).finish()
    }
}

impl KafkaClickSink {
    /// Validates `config`, opens the spill (`spill-dir`, default `<data_dir>/spill`) and
    /// starts the forwarder thread. No network I/O happens here: librdkafka connects in the
    /// background, and events wait in the spill until the broker (and the registry, when
    /// configured) answer. Events left in the spill by a previous run are forwarded first.
    ///
    /// Errors: [`Error::Config`] for an invalid or disabled configuration,
    /// [`Error::ClickLog`] if the spill cannot be opened, [`Error::SchemaRegistry`] if the
    /// registry client cannot be built.
    pub fn start(config: &KafkaConfig, data_dir: &Path) -> Result<KafkaClickSink> {
        config.validate()?;
        let producer_config = config.producer_client_config()?;
        super::metrics::describe();
        let spill = Arc::new(Spill::open(&config.spill_dir_in(data_dir), config.spill_max_events)?);
        let registry = match &config.schema_registry_url {
            None => None,
            Some(url) => Some((
                SchemaRegistry::new(url)?,
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| Error::Config(format!("could not start the schema registry runtime: {e}")))?,
            )),
        };
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            deadline: Mutex::new(None),
            delivered: AtomicU64::new(0),
            delivery_errors: AtomicU64::new(0),
            resent: AtomicU64::new(0),
            backlog: AtomicU64::new(spill.backlog()),
            unacked: AtomicU64::new(spill.backlog()),
            schema_id: AtomicU64::new(u64::MAX),
            producer_restarts: AtomicU64::new(0),
            last_error: Mutex::new(None),
        });
        let forwarder =
            Forwarder::new(config.click_topic.clone(), spill.clone(), shared.clone(), producer_config, config.max_in_flight, config.message_timeout, registry);
        let thread = std::thread::Builder::new()
            .name("sluice-kafka-forwarder".into())
            .spawn(move || forwarder.run())
            .map_err(|e| Error::Config(format!("could not start the kafka forwarder thread: {e}")))?;
        Ok(KafkaClickSink {
            topic: config.click_topic.clone(),
            spill,
            shared,
            thread: Mutex::new(Some(thread)),
            drop_log: Mutex::new(RateLimit::new(Duration::from_secs(5))),
        })
    }

    /// Appends `events` to the spill, in order; returns once they are on disk (fsync, ~ms:
    /// call from `spawn_blocking` or a writer thread). Never touches the network. When the
    /// spill is full the newest events of the batch are dropped and counted.
    ///
    /// Errors: [`Error::ClickLog`] on disk failure (nothing of the batch is stored),
    /// [`Error::Corrupt`] if an event cannot be Avro-encoded.
    pub fn append(&self, events: &[ClickEvent]) -> Result<SpillAppend> {
        self.append_marked(events, false)
    }

    /// Like [`Self::append`] for backfill events (`sluice import`): they reach the topic with
    /// the [`super::BACKFILL_HEADER`] header, and the source reports them with
    /// `backfill == true`.
    pub fn append_backfill(&self, events: &[ClickEvent]) -> Result<SpillAppend> {
        self.append_marked(events, true)
    }

    fn append_marked(&self, events: &[ClickEvent], backfill: bool) -> Result<SpillAppend> {
        let out = if backfill { self.spill.append_backfill(events)? } else { self.spill.append(events)? };
        if out.dropped > 0 {
            let mut limiter = self.drop_log.lock().unwrap_or_else(|p| p.into_inner());
            SpillDropped { topic: &self.topic, count: out.dropped, backlog: self.spill.backlog() }.emit(&mut limiter);
        }
        Ok(out)
    }

    /// The topic events go to.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The spill this sink forwards.
    pub fn spill(&self) -> &Spill {
        &self.spill
    }

    /// Current counters.
    pub fn stats(&self) -> SinkStats {
        let schema_id = self.shared.schema_id.load(Ordering::Relaxed);
        SinkStats {
            delivered: self.shared.delivered.load(Ordering::Relaxed),
            delivery_errors: self.shared.delivery_errors.load(Ordering::Relaxed),
            resent: self.shared.resent.load(Ordering::Relaxed),
            spill_dropped: self.spill.dropped_total(),
            backlog: self.spill.backlog(),
            unacked: self.shared.unacked.load(Ordering::Relaxed),
            schema_id: u32::try_from(schema_id).ok(),
            producer_restarts: self.shared.producer_restarts.load(Ordering::Relaxed),
        }
    }

    /// The most recent delivery error as `"<error_type>: <message>"` (`None` if there was
    /// none), for readiness reports and logs.
    pub fn last_delivery_error(&self) -> Option<String> {
        self.shared.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Blocks until every appended event is acknowledged by the broker and released from the
    /// spill, or `timeout` passes; returns whether the spill drained. Polls every 10 ms.
    pub fn wait_drained(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.spill.backlog() == 0 {
                return true;
            }
            if Instant::now() >= deadline || self.thread.lock().map(|t| t.is_none()).unwrap_or(true) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops the forwarder: it keeps delivering for up to `drain_timeout`, then stops;
    /// whatever is still unacknowledged stays in the spill and is sent by the next
    /// [`Self::start`]. Returns the final counters. Idempotent.
    pub fn shutdown(&self, drain_timeout: Duration) -> SinkStats {
        *self.shared.deadline.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now() + drain_timeout);
        self.shared.stop.store(true, Ordering::Release);
        let handle = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = handle
            && h.join().is_err()
        {
            tracing::error!(topic = %self.topic, "kafka forwarder thread panicked");
        }
        self.stats()
    }
}

impl Drop for KafkaClickSink {
    fn drop(&mut self) {
        self.shutdown(Duration::ZERO);
    }
}
