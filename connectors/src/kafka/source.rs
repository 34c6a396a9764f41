//! [`KafkaSource`]: the dataflow's Kafka input, one per timely worker, and
//! [`OffsetCommitter`], which commits the offsets the pipeline has durably applied.
//!
//! Partitions are assigned **explicitly**: worker `i` of `peers` reads the partitions `p` with
//! `p % peers == i` ([`partitions_for_worker`]). There is no group membership and so no
//! rebalance: timely's worker set is fixed for the life of a dataflow, and a static
//! assignment keeps every partition's frontier with one worker. The consumer group
//! (`group-id`) is used only to store offsets. (Dynamic group rebalancing also works against
//! tansu, but would move partitions between workers mid-epoch.) More partitions than workers
//! is fine; with more workers than partitions some workers read nothing.
//!
//! Offsets: `enable.auto.commit=false` and no offset store: nothing is committed until the
//! pipeline calls [`KafkaSource::commit`] / [`OffsetCommitter::commit`] with the offsets of
//! inputs whose outputs every sink has durably applied. A source starts from the group's
//! committed offsets ([`StartOffsets::Committed`], earliest where none) or, after restoring a
//! checkpoint, from the checkpoint's own offsets ([`StartOffsets::Explicit`]) regardless of
//! what the group committed.
//!
//! Record timestamps: each record carries the message's Kafka timestamp
//! ([`KafkaClickRecord::timestamp_ms`]), which the dataflow's gate uses as the record's
//! arrival: an event stamped ahead of the clock moves the watermark at most to it, and is
//! `future` when stamped more than the future skew after it, so that re-reading the topic
//! later (a restart without a checkpoint) decides as the first read did. The timestamp is
//! stored with the message, so every read sees the same one. Its limits: with the topic's
//! default `message.timestamp.type=CreateTime` it is what the producer set. Sluice's own
//! producer (the spill forwarder) sets it to the time the event was appended to the spill
//! for an event stamped after that time (the spill records it, `click_log` "Arrival times"),
//! and otherwise lets librdkafka stamp the time it hands the event over (at or after the
//! append, so at or after the event's own `ts`: no cap applies to it). Another producer
//! may set any time, or its own clock may be off: the gate never takes a timestamp after
//! its own clock (it caps at the clock then, as without one), so a timestamp from the future
//! cannot move the watermark ahead of the clock; one from the past makes the gate stricter
//! for that producer's events stamped ahead (a watermark held back, `future` sooner). With
//! `LogAppendTime` it is the broker's append time, which works the same way.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use sluice_schemas::ClickEvent;

use super::BACKFILL_HEADER;
use super::codec::{DeadLetter, DecodeFailure, ValueDecoder};
use super::config::KafkaConfig;
use super::context::LogContext;
use super::metrics::{ConsumerError, DecodeFailed, EventsConsumed, OffsetsCommitted, RateLimit};
use crate::{Error, Result};

/// Timeout of metadata, watermark and offset requests made while opening a source.
pub const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a source starts reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartOffsets {
    /// The consumer group's committed offsets; partitions without one start at the earliest
    /// offset.
    Committed,
    /// These offsets (partition → next offset to read), e.g. from a restored checkpoint;
    /// assigned partitions missing from the map start at the earliest offset.
    Explicit(BTreeMap<i32, i64>),
}

/// One decoded click event and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaClickRecord {
    /// Partition of the message.
    pub partition: i32,
    /// Offset of the message within its partition.
    pub offset: i64,
    /// The event.
    pub event: ClickEvent,
    /// Appended as backfill (`sluice import`; the message carries
    /// [`super::BACKFILL_HEADER`]): bypasses the dataflow's lateness limit, not dedup. This
    /// is the dataflow record's `backfill` flag.
    pub backfill: bool,
    /// Whether the message was already in the topic when the source opened (catch-up after
    /// a restart) rather than arriving live; informational, unrelated to `backfill`.
    pub catch_up: bool,
    /// The message's timestamp (ms since the epoch, UTC; `CreateTime` or `LogAppendTime`,
    /// whichever the topic keeps), `None` when it has none: the dataflow record's arrival
    /// (module docs, "Record timestamps").
    pub timestamp_ms: Option<i64>,
}

/// What one [`KafkaSource::poll_batch`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KafkaBatch {
    /// Decoded events in consumption order (offset order within each partition).
    pub records: Vec<KafkaClickRecord>,
    /// Messages that could not be decoded (skipped, counted).
    pub dead_letters: Vec<DeadLetter>,
    /// For every partition this batch advanced: the offset after its last record or dead
    /// letter. Committing these (once applied) moves past dead letters too.
    pub next_offsets: BTreeMap<i32, i64>,
}

/// The partitions worker `worker_index` of `peers` reads: `p % peers == worker_index`.
///
/// Errors with [`Error::Config`] if `peers` is 0 or `worker_index >= peers`.
pub fn partitions_for_worker(partition_count: i32, worker_index: usize, peers: usize) -> Result<Vec<i32>> {
    if peers == 0 || worker_index >= peers {
        return Err(Error::Config(format!("worker index {worker_index} is not below peers {peers}")));
    }
    Ok((0..partition_count).filter(|p| *p as usize % peers == worker_index).collect())
}

/// A message held back because the registry could not be asked for its schema.
struct Stalled {
    partition: i32,
    offset: i64,
    meta: Meta,
    payload: Option<Vec<u8>>,
}

/// What a message carries besides its value: the backfill header and its timestamp.
#[derive(Debug, Clone, Copy)]
struct Meta {
    backfill: bool,
    timestamp_ms: Option<i64>,
}

/// Reads click events from the assigned partitions of the click topic; see the module docs.
/// Blocking: call from a timely worker thread (or any plain thread), never an async task.
pub struct KafkaSource {
    topic: String,
    consumer: BaseConsumer<LogContext>,
    assigned: Vec<i32>,
    catch_up_until: BTreeMap<i32, i64>,
    decoder: ValueDecoder,
    stalled: VecDeque<Stalled>,
    retry_at: Instant,
    decode_log: RateLimit,
    error_log: RateLimit,
}

impl std::fmt::Debug for KafkaSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSource").field("topic", &self.topic).field("assigned", &self.assigned).finish()
    }
}

impl KafkaSource {
    /// Opens the source of worker `worker_index` of `peers` on `click-topic`: looks up the
    /// partition count, assigns [`partitions_for_worker`] at `start`, and records each
    /// partition's high watermark (records below it are flagged `catch_up`).
    ///
    /// Errors: [`Error::Config`] for an invalid configuration or worker index;
    /// [`Error::Kafka`] if the broker cannot be reached within [`METADATA_TIMEOUT`] or the
    /// topic does not exist (create it with [`super::ensure_topics`]).
    pub fn open(config: &KafkaConfig, worker_index: usize, peers: usize, start: StartOffsets) -> Result<KafkaSource> {
        config.validate()?;
        let decoder = ValueDecoder::new(config.schema_registry_url.as_deref())?;
        Self::open_with_decoder(config, worker_index, peers, start, decoder)
    }

    /// Like [`Self::open`] with a caller-built decoder (for example one that also knows a
    /// newer single-object writer schema).
    pub fn open_with_decoder(config: &KafkaConfig, worker_index: usize, peers: usize, start: StartOffsets, decoder: ValueDecoder) -> Result<KafkaSource> {
        super::metrics::describe();
        let consumer: BaseConsumer<LogContext> = config
            .consumer_client_config()?
            .create_with_context(LogContext::new("kafka_source"))
            .map_err(|source| Error::Kafka { op: "create consumer", source })?;
        let topic = config.click_topic.clone();
        let count = partition_count(consumer.client(), &topic)?;
        let assigned = partitions_for_worker(count, worker_index, peers)?;
        let mut catch_up_until = BTreeMap::new();
        for &p in &assigned {
            let (_, high) = consumer.fetch_watermarks(&topic, p, METADATA_TIMEOUT).map_err(|source| Error::Kafka { op: "fetch watermarks", source })?;
            catch_up_until.insert(p, high);
        }
        let mut source = KafkaSource {
            topic,
            consumer,
            assigned,
            catch_up_until,
            decoder,
            stalled: VecDeque::new(),
            retry_at: Instant::now(),
            decode_log: RateLimit::new(Duration::from_secs(5)),
            error_log: RateLimit::new(Duration::from_secs(5)),
        };
        source.seek_to(&start)?;
        tracing::info!(topic = %source.topic, worker_index, peers, partitions = ?source.assigned, ?start, "kafka source open");
        Ok(source)
    }

    /// The partitions this source reads, ascending.
    pub fn assigned_partitions(&self) -> &[i32] {
        &self.assigned
    }

    /// (Re)assigns the partitions at `start`, dropping anything buffered; used at open and to
    /// rewind to a checkpoint.
    ///
    /// Errors with [`Error::Kafka`] if librdkafka rejects the assignment and
    /// [`Error::InvalidValue`] for a negative offset.
    pub fn seek_to(&mut self, start: &StartOffsets) -> Result<()> {
        let mut tpl = TopicPartitionList::with_capacity(self.assigned.len());
        for &p in &self.assigned {
            let offset = match start {
                StartOffsets::Committed => Offset::Stored,
                StartOffsets::Explicit(map) => match map.get(&p) {
                    Some(&o) if o < 0 => return Err(Error::InvalidValue { field: "offsets", reason: format!("partition {p}: negative offset {o}") }),
                    Some(&o) => Offset::Offset(o),
                    None => Offset::Beginning,
                },
            };
            tpl.add_partition_offset(&self.topic, p, offset).map_err(|source| Error::Kafka { op: "assign partitions", source })?;
        }
        self.consumer.assign(&tpl).map_err(|source| Error::Kafka { op: "assign partitions", source })?;
        self.stalled.clear();
        Ok(())
    }

    /// Up to `max` messages: waits up to `timeout` for the first, then takes what is already
    /// fetched. Undecodable messages become dead letters; when the schema registry is
    /// unreachable the message and everything after it are held back (order is kept) and
    /// retried on later calls, at most once a second.
    ///
    /// Errors with [`Error::Kafka`] only for fatal consumer errors; transient ones (broker
    /// down) are counted and logged, and librdkafka reconnects by itself.
    pub fn poll_batch(&mut self, max: usize, timeout: Duration) -> Result<KafkaBatch> {
        let mut batch = KafkaBatch::default();
        if !self.stalled.is_empty() {
            let now = Instant::now();
            if now < self.retry_at {
                std::thread::sleep((self.retry_at - now).min(timeout));
                return Ok(batch);
            }
            while let Some(m) = self.stalled.pop_front() {
                if !self.accept(m.partition, m.offset, m.meta, m.payload.as_deref(), &mut batch) {
                    break;
                }
            }
            if !self.stalled.is_empty() {
                return Ok(self.finish(batch));
            }
        }
        let mut wait = timeout;
        while batch.records.len() + batch.dead_letters.len() < max {
            match self.consumer.poll(wait) {
                None => break,
                Some(Err(e)) => {
                    ConsumerError { topic: &self.topic, error: &e }.emit(&mut self.error_log);
                    if is_fatal(&e, &self.consumer) {
                        return Err(Error::Kafka { op: "poll messages", source: e });
                    }
                    break;
                }
                Some(Ok(msg)) => {
                    let (p, o) = (msg.partition(), msg.offset());
                    let backfill = msg.headers().is_some_and(|h| h.iter().any(|h| h.key == BACKFILL_HEADER && h.value == Some(b"1".as_slice())));
                    let meta = Meta { backfill, timestamp_ms: msg.timestamp().to_millis().filter(|&t| t >= 0) };
                    let payload = msg.payload().map(<[u8]>::to_vec);
                    drop(msg);
                    if !self.stalled.is_empty() {
                        self.stalled.push_back(Stalled { partition: p, offset: o, meta, payload });
                    } else {
                        self.accept(p, o, meta, payload.as_deref(), &mut batch);
                    }
                }
            }
            wait = Duration::ZERO;
        }
        Ok(self.finish(batch))
    }

    /// Decodes one message into `batch`; returns false (and stalls it) when the registry must
    /// be asked again later.
    fn accept(&mut self, partition: i32, offset: i64, meta: Meta, payload: Option<&[u8]>, batch: &mut KafkaBatch) -> bool {
        match self.decoder.decode(payload) {
            Ok(event) => {
                let catch_up = self.catch_up_until.get(&partition).is_some_and(|&h| offset < h);
                batch.records.push(KafkaClickRecord { partition, offset, event, backfill: meta.backfill, catch_up, timestamp_ms: meta.timestamp_ms });
            }
            Err(DecodeFailure::DeadLetter(reason, message)) => {
                DecodeFailed { topic: &self.topic, error_type: reason.as_str(), partition, offset, message: &message }.emit(&mut self.decode_log);
                batch.dead_letters.push(DeadLetter { partition, offset, reason, message });
            }
            Err(DecodeFailure::Retry(e)) => {
                if self.decode_log.allow() {
                    tracing::warn!(topic = %self.topic, partition, offset, error = %e, "schema registry unreachable, holding messages back");
                }
                self.stalled.push_front(Stalled { partition, offset, meta, payload: payload.map(<[u8]>::to_vec) });
                self.retry_at = Instant::now() + Duration::from_secs(1);
                return false;
            }
        }
        batch.next_offsets.insert(partition, offset + 1);
        true
    }

    fn finish(&self, batch: KafkaBatch) -> KafkaBatch {
        EventsConsumed { topic: &self.topic, count: batch.records.len() as u64 }.emit();
        batch
    }

    /// Commits `offsets` (partition → next offset to read) for the group, synchronously. Call
    /// only once every sink has durably applied the outputs of all inputs below them.
    /// Partitions need not be assigned to this source.
    ///
    /// Errors: [`Error::InvalidValue`] for a negative offset, [`Error::Kafka`] if the
    /// commit fails (retryable per [`Error::retryable`]).
    pub fn commit(&self, offsets: &BTreeMap<i32, i64>) -> Result<()> {
        commit_offsets(&self.consumer, &self.topic, offsets)
    }

    /// The group's committed offsets for the assigned partitions (partitions without one are
    /// absent).
    ///
    /// Errors with [`Error::Kafka`] if the group coordinator does not answer in `timeout`.
    pub fn committed_offsets(&self, timeout: Duration) -> Result<BTreeMap<i32, i64>> {
        committed(&self.consumer, &self.topic, &self.assigned, timeout)
    }
}

/// Commits offsets for the whole click topic from one place (the pipeline's coordinator),
/// without consuming; shares the group of the sources.
pub struct OffsetCommitter {
    topic: String,
    consumer: BaseConsumer<LogContext>,
}

impl std::fmt::Debug for OffsetCommitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OffsetCommitter").field("topic", &self.topic).finish()
    }
}

impl OffsetCommitter {
    /// A committer for `click-topic` in group `group-id`. No I/O until the first call.
    ///
    /// Errors with [`Error::Config`] for an invalid configuration and [`Error::Kafka`] if
    /// the client cannot be created.
    pub fn new(config: &KafkaConfig) -> Result<OffsetCommitter> {
        config.validate()?;
        super::metrics::describe();
        let consumer = config
            .consumer_client_config()?
            .create_with_context(LogContext::new("kafka_committer"))
            .map_err(|source| Error::Kafka { op: "create consumer", source })?;
        Ok(OffsetCommitter { topic: config.click_topic.clone(), consumer })
    }

    /// See [`KafkaSource::commit`].
    pub fn commit(&self, offsets: &BTreeMap<i32, i64>) -> Result<()> {
        commit_offsets(&self.consumer, &self.topic, offsets)
    }

    /// The group's committed offsets of `partitions` (absent where none).
    ///
    /// Errors with [`Error::Kafka`] if the group coordinator does not answer in `timeout`.
    pub fn committed_offsets(&self, partitions: &[i32], timeout: Duration) -> Result<BTreeMap<i32, i64>> {
        committed(&self.consumer, &self.topic, partitions, timeout)
    }

    /// Partition count of the click topic.
    ///
    /// Errors with [`Error::Kafka`] if the broker does not answer within [`METADATA_TIMEOUT`]
    /// or the topic does not exist.
    pub fn partition_count(&self) -> Result<i32> {
        partition_count(self.consumer.client(), &self.topic)
    }

    /// High watermarks (next offset to be written) of `partitions` of the click topic: what
    /// the broker has acknowledged so far. Blocking, one request per partition.
    ///
    /// Errors with [`Error::Kafka`] if a request does not complete within `timeout`.
    pub fn high_watermarks(&self, partitions: &[i32], timeout: Duration) -> Result<BTreeMap<i32, i64>> {
        let mut out = BTreeMap::new();
        for &p in partitions {
            let (_, high) = self.consumer.fetch_watermarks(&self.topic, p, timeout).map_err(|source| Error::Kafka { op: "fetch watermarks", source })?;
            out.insert(p, high);
        }
        Ok(out)
    }
}

fn commit_offsets(consumer: &BaseConsumer<LogContext>, topic: &str, offsets: &BTreeMap<i32, i64>) -> Result<()> {
    if offsets.is_empty() {
        return Ok(());
    }
    let mut tpl = TopicPartitionList::with_capacity(offsets.len());
    for (&p, &o) in offsets {
        if o < 0 || p < 0 {
            return Err(Error::InvalidValue { field: "offsets", reason: format!("partition {p}: offset {o}") });
        }
        tpl.add_partition_offset(topic, p, Offset::Offset(o)).map_err(|source| Error::Kafka { op: "commit offsets", source })?;
    }
    let result = consumer.commit(&tpl, CommitMode::Sync);
    OffsetsCommitted { topic, partitions: offsets.len(), error: result.as_ref().err() }.emit();
    result.map_err(|source| Error::Kafka { op: "commit offsets", source })
}

fn committed(consumer: &BaseConsumer<LogContext>, topic: &str, partitions: &[i32], timeout: Duration) -> Result<BTreeMap<i32, i64>> {
    let mut tpl = TopicPartitionList::with_capacity(partitions.len());
    for &p in partitions {
        tpl.add_partition(topic, p);
    }
    let got = consumer.committed_offsets(tpl, timeout).map_err(|source| Error::Kafka { op: "fetch committed offsets", source })?;
    Ok(got
        .elements_for_topic(topic)
        .into_iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect())
}

/// Partition count of `topic`.
pub(crate) fn partition_count<C: rdkafka::client::ClientContext>(client: &rdkafka::client::Client<C>, topic: &str) -> Result<i32> {
    partition_count_within(client, topic, METADATA_TIMEOUT)
}

/// Partition count of `topic`, the metadata request bounded by `timeout` (blocking).
pub(crate) fn partition_count_within<C: rdkafka::client::ClientContext>(client: &rdkafka::client::Client<C>, topic: &str, timeout: Duration) -> Result<i32> {
    let md = client.fetch_metadata(Some(topic), timeout).map_err(|source| Error::Kafka { op: "fetch topic metadata", source })?;
    let t = md.topics().iter().find(|t| t.name() == topic);
    match t {
        Some(t) if t.error().is_none() && !t.partitions().is_empty() => Ok(t.partitions().len() as i32),
        Some(t) => Err(Error::Kafka {
            op: "fetch topic metadata",
            source: KafkaError::MetadataFetch(t.error().map(RDKafkaErrorCode::from).unwrap_or(RDKafkaErrorCode::UnknownTopicOrPartition)),
        }),
        None => Err(Error::Kafka { op: "fetch topic metadata", source: KafkaError::MetadataFetch(RDKafkaErrorCode::UnknownTopicOrPartition) }),
    }
}

fn is_fatal(e: &KafkaError, consumer: &BaseConsumer<LogContext>) -> bool {
    e.rdkafka_error_code() == Some(RDKafkaErrorCode::Fatal) || consumer.client().fatal_error().is_some()
}
