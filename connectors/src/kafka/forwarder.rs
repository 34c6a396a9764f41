//! The spill forwarder: one thread that reads the [`Spill`] in offset order, hands events to
//! an idempotent librdkafka producer, tracks each event's delivery report, re-sends failed
//! ones and truncates the spill below the lowest unacknowledged offset.
//!
//! State: `slots` covers spill offsets `base..next` — every event handed to librdkafka and not
//! yet released — each `InFlight`, `Acked` or `Failed`. `base` advances over the acknowledged
//! prefix; the spill is truncated to `base` at most every 100 ms (and whenever everything is
//! acknowledged), so a restart re-sends at most ~100 ms of already-acknowledged events
//! (duplicates the dataflow removes by `event_id`).
//!
//! Failures: the first failed report of a round purges librdkafka's not-yet-sent queue (those
//! messages come back as failed too, instead of being delivered ahead of the failed one), then
//! the forwarder stops taking new events, waits for every outstanding report, backs off
//! (100 ms doubling to 5 s), replaces the producer with a fresh one (new producer id) and
//! re-sends the failed offsets in offset order before any newer event. A fatal producer error
//! (idempotence state lost) is handled the same way. Each failed round also quarters the
//! in-flight window (down to 1 000 events; it doubles again with every batch of clean
//! acknowledgements), so a large backlog after an outage is fed to a slow broker gradually
//! instead of timing out as a whole, round after round.
//!
//! Ordering limit: messages of one partition already on the wire when an earlier one fails
//! may still be stored. A Kafka broker rejects them (the idempotent producer's sequence
//! numbers have a gap: OUT_OF_ORDER_SEQUENCE_NUMBER), so they fail too and are re-sent in
//! order; a broker that does not enforce sequences could store them ahead of the re-sent
//! event. Replacing the producer before every re-send keeps that window to one round.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, PurgeConfig};
use sluice_schemas::avro_wire::click_event_code;

use super::BACKFILL_HEADER;
use super::codec::ValueFormat;
use super::context::{DeliveryCollector, Report};
use super::metrics::{DeliveryFailed, EventsDelivered, EventsResent, RateLimit, SpillBacklog, kafka_error_type};
use super::producer::Shared;
use super::schema_registry::SchemaRegistry;
use super::spill::Spill;
use crate::click_log::arrival_at;

// Spill offsets travel through librdkafka as the `usize` delivery opaque.
const _: () = assert!(usize::BITS == 64, "the kafka forwarder needs a 64-bit target");

/// The backfill-marked offsets and the `(offset, arrival ms)` of a chunk of the spill.
type SpillMarks = (Vec<u64>, Vec<(u64, i64)>);

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
const TRUNCATE_EVERY: Duration = Duration::from_millis(100);
const READ_CHUNK: usize = 10_000;
/// Smallest in-flight window after repeated failures.
const MIN_WINDOW: usize = 1_000;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Slot {
    InFlight,
    Acked,
    Failed,
}

pub(crate) struct Forwarder {
    pub topic: String,
    pub spill: Arc<Spill>,
    pub shared: Arc<Shared>,
    pub producer_config: ClientConfig,
    pub max_in_flight: usize,
    pub message_timeout: Duration,
    pub registry: Option<(SchemaRegistry, tokio::runtime::Runtime)>,
    pub producer: Option<BaseProducer<DeliveryCollector>>,
    format: Option<ValueFormat>,
    base: u64,
    next: u64,
    slots: VecDeque<Slot>,
    in_flight: usize,
    failed: BTreeSet<u64>,
    retry_at: Instant,
    backoff: Duration,
    registry_retry_at: Instant,
    /// A delivery failed: rebuild the producer before re-sending. A fresh producer id starts
    /// every partition's sequence anew, so nothing the old producer still holds can be
    /// written after the re-sent events, and a broker that lost the idempotent producer's
    /// state across a restart (tansu 0.6 then answers UNKNOWN_SERVER_ERROR for some batches
    /// and accepts later ones of the same partition) never sees the old producer again.
    rebuild_producer: bool,
    /// A re-send round is in progress: failed offsets are being handed over in order.
    resending: bool,
    /// Current in-flight limit: `max_in_flight`, divided by 4 (down to 1 000) by each failed
    /// round and doubled by each batch of acknowledgements without failure, so a large re-send
    /// after an outage is fed gradually instead of timing out as a whole (and again) on a
    /// slow broker.
    window: usize,
    truncated: u64,
    last_truncate: Instant,
    last_gauge: Instant,
    value_buf: Vec<u8>,
    reports: Vec<Report>,
    log_limit: RateLimit,
}

impl Forwarder {
    pub fn new(
        topic: String,
        spill: Arc<Spill>,
        shared: Arc<Shared>,
        producer_config: ClientConfig,
        max_in_flight: usize,
        message_timeout: Duration,
        registry: Option<(SchemaRegistry, tokio::runtime::Runtime)>,
    ) -> Forwarder {
        let low = spill.low();
        let now = Instant::now();
        Forwarder {
            format: if registry.is_none() { Some(ValueFormat::SingleObject) } else { None },
            topic,
            spill,
            shared,
            producer_config,
            max_in_flight,
            message_timeout,
            registry,
            producer: None,
            base: low,
            next: low,
            slots: VecDeque::new(),
            in_flight: 0,
            failed: BTreeSet::new(),
            retry_at: now,
            backoff: MIN_BACKOFF,
            registry_retry_at: now,
            rebuild_producer: false,
            resending: false,
            window: max_in_flight,
            truncated: low,
            last_truncate: now,
            last_gauge: now,
            value_buf: Vec::with_capacity(512),
            reports: Vec::new(),
            log_limit: RateLimit::new(Duration::from_secs(5)),
        }
    }

    /// Runs until asked to stop and either everything in the spill is acknowledged or the
    /// drain deadline passed. Unacknowledged events stay in the spill for the next start.
    pub fn run(mut self) {
        tracing::info!(topic = %self.topic, backlog = self.spill.backlog(), "kafka spill forwarder started");
        loop {
            if let Some(deadline) = self.shared.stop_deadline()
                && (self.all_acked() || Instant::now() >= deadline)
            {
                break;
            }
            let ready = self.ensure_format() && self.ensure_producer();
            if ready {
                self.send_some();
            }
            let busy = self.in_flight > 0 || self.next < self.spill.head();
            match &self.producer {
                Some(p) => p.poll(if busy { Duration::from_millis(5) } else { Duration::from_millis(10) }),
                None => std::thread::sleep(Duration::from_millis(10)),
            }
            self.handle_reports();
            self.check_fatal();
            self.maybe_truncate(false);
            self.publish_stats(false);
        }
        if let Some(p) = self.producer.take() {
            // Whatever is still queued stays in the spill and is re-sent on the next start.
            p.purge(PurgeConfig::default().queue().inflight());
            p.poll(Duration::from_millis(10));
            self.handle_reports();
        }
        self.maybe_truncate(true);
        self.publish_stats(true);
        tracing::info!(topic = %self.topic, backlog = self.spill.backlog(), "kafka spill forwarder stopped");
    }

    fn all_acked(&self) -> bool {
        self.in_flight == 0 && self.failed.is_empty() && self.next >= self.spill.head()
    }

    /// Registers the value schema when a registry is configured; until that succeeds nothing
    /// is sent (events wait in the spill). Retried with backoff, also after non-retryable
    /// errors: an operator may fix the subject's compatibility setting.
    fn ensure_format(&mut self) -> bool {
        if self.format.is_some() {
            return true;
        }
        let Some((client, rt)) = &self.registry else { return false };
        if Instant::now() < self.registry_retry_at {
            return false;
        }
        match rt.block_on(client.register_click_event(&self.topic)) {
            Ok(id) => {
                tracing::info!(topic = %self.topic, schema_id = id, registry = client.url(), "click event schema registered");
                self.shared.schema_id.store(u64::from(id), Ordering::Relaxed);
                self.format = Some(ValueFormat::Confluent { schema_id: id });
                true
            }
            Err(e) => {
                if self.log_limit.allow() {
                    tracing::warn!(topic = %self.topic, error = %e, "could not register click event schema, events wait in the spill");
                }
                self.registry_retry_at = Instant::now() + MAX_BACKOFF;
                false
            }
        }
    }

    fn ensure_producer(&mut self) -> bool {
        if self.producer.is_some() {
            return true;
        }
        if Instant::now() < self.retry_at {
            return false;
        }
        match self.producer_config.create_with_context(DeliveryCollector::new()) {
            Ok(p) => {
                self.producer = Some(p);
                true
            }
            Err(e) => {
                if self.log_limit.allow() {
                    tracing::warn!(topic = %self.topic, error = %e, "could not create kafka producer");
                }
                self.retry_at = Instant::now() + MAX_BACKOFF;
                false
            }
        }
    }

    /// Re-sends failed offsets once every outstanding report is in and the backoff passed;
    /// otherwise sends new events up to the in-flight limit.
    fn send_some(&mut self) {
        if !self.failed.is_empty() {
            if self.resending {
                self.resend_failed();
            } else if self.in_flight == 0 && Instant::now() >= self.retry_at {
                if self.rebuild_producer {
                    self.rebuild_producer = false;
                    // Nothing is in flight, so dropping the producer loses no report.
                    self.producer = None;
                    self.shared.producer_restarts.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(topic = %self.topic, "deliveries failed, recreating the kafka producer before re-sending");
                    if !self.ensure_producer() {
                        return;
                    }
                }
                tracing::info!(
                    topic = %self.topic,
                    failed = self.failed.len(),
                    window = self.window,
                    "re-sending failed events in spill order"
                );
                self.resending = true;
                self.resend_failed();
            }
            return;
        }
        self.resending = false;
        while self.in_flight < self.window && self.next < self.spill.head() {
            let want = (self.window - self.in_flight).min(READ_CHUNK);
            let batch = match self.spill.read_raw(self.next, want) {
                Ok(b) => b,
                Err(e) => {
                    if self.log_limit.allow() {
                        tracing::warn!(topic = %self.topic, error = %e, "could not read the kafka spill");
                    }
                    return;
                }
            };
            if batch.is_empty() {
                return;
            }
            let Some((marks, arrivals)) = self.spill_marks(&batch) else { return };
            for (offset, bytes) in batch {
                // Offsets are dense; anything below `offset` was released already.
                while self.next < offset {
                    self.slots.push_back(Slot::Acked);
                    self.next += 1;
                }
                match self.send_one(offset, &bytes, marks.binary_search(&offset).is_ok(), arrival_at(&arrivals, offset)) {
                    SendOutcome::Queued => {
                        self.slots.push_back(Slot::InFlight);
                        self.in_flight += 1;
                    }
                    SendOutcome::Skipped => self.slots.push_back(Slot::Acked),
                    SendOutcome::Later => return,
                }
                self.next += 1;
            }
        }
    }

    fn resend_failed(&mut self) {
        let (Some(&first), Some(&last)) = (self.failed.first(), self.failed.last()) else { return };
        let mut resent = 0u64;
        let mut from = first;
        'outer: while from <= last && self.in_flight < self.window {
            let batch = match self.spill.read_raw(from, ((last - from + 1) as usize).min(READ_CHUNK)) {
                Ok(b) if !b.is_empty() => b,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(topic = %self.topic, error = %e, "could not read the kafka spill");
                    break;
                }
            };
            let Some((marks, arrivals)) = self.spill_marks(&batch) else { break };
            for (offset, bytes) in batch {
                if self.in_flight >= self.window {
                    break 'outer;
                }
                from = offset + 1;
                if !self.failed.contains(&offset) {
                    continue;
                }
                let idx = (offset - self.base) as usize;
                match self.send_one(offset, &bytes, marks.binary_search(&offset).is_ok(), arrival_at(&arrivals, offset)) {
                    SendOutcome::Queued => {
                        self.slots[idx] = Slot::InFlight;
                        self.in_flight += 1;
                        resent += 1;
                    }
                    SendOutcome::Skipped => self.slots[idx] = Slot::Acked,
                    SendOutcome::Later => break 'outer,
                }
                self.failed.remove(&offset);
            }
        }
        self.shared.resent.fetch_add(resent, Ordering::Relaxed);
        EventsResent { topic: &self.topic, count: resent }.emit();
    }

    /// Backfill-marked offsets and recorded arrival times among a chunk read from the spill
    /// (`None` on a read error, logged; the chunk is retried later).
    fn spill_marks(&mut self, batch: &[(u64, Vec<u8>)]) -> Option<SpillMarks> {
        let (Some(first), Some(last)) = (batch.first(), batch.last()) else { return Some((Vec::new(), Vec::new())) };
        let range = first.0..last.0 + 1;
        match self.spill.backfill_offsets(range.clone()).and_then(|m| Ok((m, self.spill.arrival_times(range)?))) {
            Ok(m) => Some(m),
            Err(e) => {
                if self.log_limit.allow() {
                    tracing::warn!(topic = %self.topic, error = %e, "could not read the kafka spill");
                }
                None
            }
        }
    }

    /// Hands one spilled event to the producer; `arrival_ms` (the spill's append time of an
    /// event stamped after it) becomes the message's timestamp, else librdkafka stamps the
    /// time of this call (`source.rs`, "Record timestamps").
    fn send_one(&mut self, offset: u64, spilled: &[u8], backfill: bool, arrival_ms: Option<i64>) -> SendOutcome {
        let format = self.format.expect("send only after the format is known");
        let key = match click_event_code(spilled) {
            Ok(k) => k,
            Err(e) => return self.skip_corrupt(offset, &e.to_string()),
        };
        if let Err(e) = format.frame_spilled(spilled, &mut self.value_buf) {
            return self.skip_corrupt(offset, &e.to_string());
        }
        let producer = self.producer.as_ref().expect("send only with a producer");
        let mut record = BaseRecord::with_opaque_to(&self.topic, offset as usize).key(key).payload(&self.value_buf);
        if backfill {
            record = record.headers(OwnedHeaders::new().insert(Header { key: BACKFILL_HEADER, value: Some("1") }));
        }
        if let Some(ms) = arrival_ms {
            record = record.timestamp(ms);
        }
        match producer.send(record) {
            Ok(()) => SendOutcome::Queued,
            Err((e, _)) => {
                if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) {
                    // backpressure, not a failure: the event stays in the spill
                    return SendOutcome::Later;
                }
                let permanent = matches!(e.rdkafka_error_code(), Some(RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::InvalidMessageSize));
                self.count_failure(&e, 1);
                if permanent {
                    tracing::error!(topic = %self.topic, offset, error = %e, "click event can never be delivered, dropped from the spill");
                    return SendOutcome::Skipped;
                }
                self.retry_at = Instant::now() + self.backoff;
                if self.log_limit.allow() {
                    tracing::warn!(topic = %self.topic, error = %e, "could not hand click events to the kafka producer");
                }
                SendOutcome::Later
            }
        }
    }

    fn skip_corrupt(&mut self, offset: u64, message: &str) -> SendOutcome {
        tracing::error!(topic = %self.topic, offset, error = message, "corrupt kafka spill entry skipped");
        DeliveryFailed { topic: &self.topic, error_type: "corrupt_spill", count: 1 }.emit();
        self.shared.delivery_errors.fetch_add(1, Ordering::Relaxed);
        SendOutcome::Skipped
    }

    fn count_failure(&self, e: &KafkaError, count: u64) {
        self.shared.delivery_errors.fetch_add(count, Ordering::Relaxed);
        let error_type = kafka_error_type(e);
        DeliveryFailed { topic: &self.topic, error_type, count }.emit();
        *self.shared.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(format!("{error_type}: {e}"));
    }

    fn handle_reports(&mut self) {
        let Some(producer) = &self.producer else { return };
        producer.context().drain_into(&mut self.reports);
        if self.reports.is_empty() {
            return;
        }
        let mut delivered = 0u64;
        let mut first_failure = None;
        let reports = std::mem::take(&mut self.reports);
        for (offset, result) in &reports {
            let Some(idx) = offset.checked_sub(self.base).map(|i| i as usize).filter(|&i| i < self.slots.len()) else {
                continue; // report of an offset already released (cannot happen; ignore)
            };
            if self.slots[idx] != Slot::InFlight {
                continue;
            }
            self.in_flight -= 1;
            match result {
                Ok(()) => {
                    self.slots[idx] = Slot::Acked;
                    delivered += 1;
                }
                Err(e) => {
                    self.count_failure(e, 1);
                    match kafka_error_type(e) {
                        "message_too_large" => {
                            tracing::error!(topic = %self.topic, offset, error = %e, "click event can never be delivered, dropped from the spill");
                            self.slots[idx] = Slot::Acked;
                            continue;
                        }
                        _ => self.rebuild_producer = true,
                    }
                    self.slots[idx] = Slot::Failed;
                    self.failed.insert(*offset);
                    first_failure.get_or_insert_with(|| e.clone());
                }
            }
        }
        self.reports = reports;
        if delivered > 0 {
            self.shared.delivered.fetch_add(delivered, Ordering::Relaxed);
            EventsDelivered { topic: &self.topic, count: delivered }.emit();
            if first_failure.is_none() {
                self.window = (self.window * 2).min(self.max_in_flight);
                if self.failed.is_empty() {
                    self.backoff = MIN_BACKOFF;
                }
            }
        }
        if let Some(e) = first_failure {
            self.on_failure(&e);
        }
        while self.slots.front() == Some(&Slot::Acked) {
            self.slots.pop_front();
            self.base += 1;
        }
    }

    /// First failure of a round: fail the not-yet-sent queue too (so nothing newer overtakes
    /// the failed events), and schedule the re-send after the backoff.
    fn on_failure(&mut self, e: &KafkaError) {
        // Stop handing over events until every outstanding report is in, then start a new
        // round (fresh producer, smaller window).
        self.resending = false;
        if self.retry_at <= Instant::now() {
            self.window = (self.window / 4).max(MIN_WINDOW.min(self.max_in_flight));
            if let Some(p) = &self.producer {
                p.purge(PurgeConfig::default().queue());
            }
            self.retry_at = Instant::now() + self.backoff;
            if self.log_limit.allow() {
                tracing::warn!(
                    topic = %self.topic,
                    error = %e,
                    failed = self.failed.len(),
                    retry_in_ms = self.backoff.as_millis() as u64,
                    "kafka delivery failed, events stay in the spill and will be re-sent"
                );
            }
            self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// A fatal error makes the producer unusable (for example the idempotent producer lost its
    /// sequence state): fail everything outstanding and build a new producer.
    fn check_fatal(&mut self) {
        let Some(p) = &self.producer else { return };
        let Some((code, reason)) = p.client().fatal_error() else { return };
        tracing::warn!(topic = %self.topic, ?code, reason, "fatal kafka producer error, recreating the producer");
        p.purge(PurgeConfig::default().queue().inflight());
        let wait = if self.message_timeout.is_zero() { Duration::from_secs(10) } else { self.message_timeout };
        let deadline = Instant::now() + wait.min(Duration::from_secs(10));
        while self.in_flight > 0 && Instant::now() < deadline {
            if let Some(p) = &self.producer {
                p.poll(Duration::from_millis(10));
            }
            self.handle_reports();
        }
        // Reports that never came: treat those events as failed.
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if *slot == Slot::InFlight {
                *slot = Slot::Failed;
                self.failed.insert(self.base + i as u64);
            }
        }
        self.in_flight = 0;
        self.resending = false;
        self.window = (self.window / 4).max(MIN_WINDOW.min(self.max_in_flight));
        self.producer = None;
        self.shared.producer_restarts.fetch_add(1, Ordering::Relaxed);
        self.retry_at = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }

    fn maybe_truncate(&mut self, force: bool) {
        if self.base <= self.truncated {
            return;
        }
        let idle = self.slots.is_empty();
        if !(force || idle || self.last_truncate.elapsed() >= TRUNCATE_EVERY) {
            return;
        }
        match self.spill.release_before(self.base) {
            Ok(_) => self.truncated = self.base,
            Err(e) => {
                if self.log_limit.allow() {
                    tracing::warn!(topic = %self.topic, error = %e, "could not truncate the kafka spill");
                }
            }
        }
        self.last_truncate = Instant::now();
    }

    /// Updates the shared counters; the backlog gauge at most once a second (or when `force`).
    fn publish_stats(&mut self, force: bool) {
        let backlog = self.spill.backlog();
        self.shared.backlog.store(backlog, Ordering::Relaxed);
        self.shared.unacked.store(self.spill.head().saturating_sub(self.base), Ordering::Relaxed);
        if force || self.last_gauge.elapsed() >= Duration::from_secs(1) {
            SpillBacklog { topic: &self.topic, events: backlog }.emit();
            self.last_gauge = Instant::now();
        }
    }
}

enum SendOutcome {
    /// Handed to librdkafka; a delivery report will follow.
    Queued,
    /// Can never be delivered (corrupt or oversized); counted and released.
    Skipped,
    /// Not accepted now (queue full, transient error); try again later.
    Later,
}
