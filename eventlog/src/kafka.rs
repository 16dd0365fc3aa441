//! The Kafka backend: the [`Log`] trait on librdkafka, for Apache Kafka, Redpanda or any
//! Kafka-API broker (`kafka://host:port[,host:port...]`).
//!
//! What maps one to one: topics and partitions, appends (an idempotent producer with
//! `acks=all`, batching and compression), readers at explicit offsets that follow, end
//! offsets (the high watermark), committed offsets (consumer-group offset commits, one
//! request per commit, so the offsets of one commit land together).
//!
//! What Kafka does not have is [`Log::truncate`]: a partition cannot be cut back. The
//! processor's exactly-once design truncates the outputs a crash left uncommitted; here
//! a truncation records a *void range* instead, `[end, high watermark)` of that
//! partition, in the internal topic `_eventlog.voids`, before anything is appended
//! after it. Every reader of this backend skips the void ranges (it seeks past them),
//! so downstream sees exactly what it would have seen had the records been cut off.
//! Offsets stay Kafka's own: after a void, a partition's offsets have a hole.
//!
//! With a namespace (`kafka://host:port/ns`), the cluster's names are `ns.<topic>`,
//! `ns.<consumer>` and `_ns.eventlog.voids`; callers see the plain names.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use crate::codec::header_name;
use crate::{Error, Log, PartitionReader, Record, Result, StoredRecord};

/// The internal topic of void ranges (see the module documentation), without a
/// namespace.
pub const VOIDS_TOPIC: &str = "_eventlog.voids";

/// How long a request to the cluster may take before it is an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Settings of the Kafka backend, from the `[log]` section of the config file.
#[derive(Clone, PartialEq, Eq)]
pub struct KafkaConfig {
    /// Replication factor of the topics this backend creates.
    pub replication: i32,
    /// Extra librdkafka properties for every client (`security.protocol`,
    /// `sasl.mechanism`, `sasl.username`, ...), applied after the defaults, so they
    /// may also override them (`compression.type`, `linger.ms`).
    pub properties: Vec<(String, String)>,
}

/// Property names only: values may be passwords.
impl std::fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaConfig")
            .field("replication", &self.replication)
            .field(
                "properties",
                &self.properties.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            replication: 1,
            properties: Vec::new(),
        }
    }
}

fn kafka_error(op: &'static str, e: impl std::fmt::Display) -> Error {
    Error::Kafka {
        op,
        detail: e.to_string(),
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Outstanding deliveries of one append.
struct Ack {
    state: Mutex<AckState>,
    done: Condvar,
}

struct AckState {
    remaining: usize,
    first: Option<i64>,
    error: Option<String>,
}

impl Ack {
    fn new(n: usize) -> Ack {
        Ack {
            state: Mutex::new(AckState {
                remaining: n,
                first: None,
                error: None,
            }),
            done: Condvar::new(),
        }
    }

    /// Waits for every delivery report; the offset of the first record.
    fn wait(&self, what: &str) -> Result<u64> {
        let deadline = Instant::now() + REQUEST_TIMEOUT * 4;
        let mut s = lock(&self.state);
        while s.remaining > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(kafka_error(
                    "produce",
                    format!("{what}: no delivery report"),
                ));
            }
            s = self
                .done
                .wait_timeout(s, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        if let Some(e) = &s.error {
            return Err(kafka_error("produce", format!("{what}: {e}")));
        }
        Ok(s.first.unwrap_or(0).max(0) as u64)
    }
}

/// librdkafka's own log lines and client errors at debug level
/// (`RUST_LOG=librdkafka=debug`): every failure that matters reaches the caller as an
/// error of the request it broke, so the console is not flooded with retries.
fn log_line(level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
    tracing::debug!(target: "librdkafka", ?level, "{facility}: {message}");
}

fn client_error(error: KafkaError, reason: &str) {
    tracing::debug!(target: "librdkafka", %error, "{reason}");
}

/// The context of every consumer and admin client.
pub struct Quiet;

impl ClientContext for Quiet {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        log_line(level, fac, message);
    }
    fn error(&self, error: KafkaError, reason: &str) {
        client_error(error, reason);
    }
}

impl rdkafka::consumer::ConsumerContext for Quiet {}

type QuietConsumer = BaseConsumer<Quiet>;

fn new_consumer(config: &ClientConfig) -> Result<QuietConsumer> {
    config
        .create_with_context(Quiet)
        .map_err(|e| kafka_error("create consumer", e))
}

/// Routes each delivery report to the [`Ack`] of its append.
struct AckContext;

impl ClientContext for AckContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        log_line(level, fac, message);
    }
    fn error(&self, error: KafkaError, reason: &str) {
        client_error(error, reason);
    }
}

impl ProducerContext for AckContext {
    type DeliveryOpaque = Arc<Ack>;

    fn delivery(&self, result: &DeliveryResult<'_>, ack: Arc<Ack>) {
        let mut s = lock(&ack.state);
        match result {
            Ok(m) => {
                let o = m.offset();
                s.first = Some(s.first.map_or(o, |f| f.min(o)));
            }
            Err((e, _)) => {
                s.error.get_or_insert_with(|| e.to_string());
            }
        }
        s.remaining = s.remaining.saturating_sub(1);
        if s.remaining == 0 {
            ack.done.notify_all();
        }
    }
}

/// One void range of a partition, as stored in [`VOIDS_TOPIC`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Void {
    topic: String,
    partition: u32,
    from: u64,
    to: u64,
}

/// The void ranges known so far, and a consumer of [`VOIDS_TOPIC`] to learn new ones.
struct Voids {
    /// The voids topic's name on the cluster.
    topic: String,
    consumer: Mutex<QuietConsumer>,
    state: Mutex<VoidState>,
}

#[derive(Default)]
struct VoidState {
    /// When the voids topic was last read to its end.
    refreshed: Option<Instant>,
    /// The next offset of the voids topic to read.
    next: u64,
    ranges: HashMap<(String, u32), Vec<(u64, u64)>>,
}

impl Voids {
    /// Reads the voids topic, which must exist, from its beginning. Its consumer is
    /// assigned only while it reads: a fetch waiting on an idle partition delays every
    /// other request on that connection on some brokers.
    fn open(base: &ClientConfig, topic: String) -> Result<Voids> {
        let voids = Voids {
            topic,
            consumer: Mutex::new(new_consumer(&reader_config(base))?),
            state: Mutex::new(VoidState::default()),
        };
        voids.refresh()?;
        Ok(voids)
    }

    /// Reads the void ranges recorded since the last refresh.
    fn refresh(&self) -> Result<()> {
        let consumer = lock(&self.consumer);
        let (_, high) = consumer
            .fetch_watermarks(&self.topic, 0, REQUEST_TIMEOUT)
            .map_err(|e| kafka_error("read the void ranges", e))?;
        let high = high.max(0) as u64;
        let mut state = lock(&self.state);
        if state.next < high {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(&self.topic, 0, Offset::Offset(state.next as i64))
                .map_err(|e| kafka_error("assign", e))?;
            consumer
                .assign(&tpl)
                .map_err(|e| kafka_error("assign", e))?;
            let read = self.read_to(&consumer, &mut state, high);
            consumer
                .unassign()
                .map_err(|e| kafka_error("unassign", e))?;
            read?;
        }
        state.refreshed = Some(Instant::now());
        Ok(())
    }

    fn read_to(&self, consumer: &QuietConsumer, state: &mut VoidState, high: u64) -> Result<()> {
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        while state.next < high {
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    let offset = m.offset().max(0) as u64;
                    if offset < state.next {
                        continue;
                    }
                    state.next = offset + 1;
                    let Some(v) = m
                        .payload()
                        .and_then(|p| serde_json::from_slice::<Void>(p).ok())
                    else {
                        tracing::warn!(
                            offset,
                            topic = self.topic,
                            "unreadable void range; ignored"
                        );
                        continue;
                    };
                    state
                        .ranges
                        .entry((v.topic, v.partition))
                        .or_default()
                        .push((v.from, v.to));
                }
                Some(Err(KafkaError::PartitionEOF(_))) => {}
                Some(Err(e)) => return Err(kafka_error("read the void ranges", e)),
                None if Instant::now() > deadline => {
                    return Err(kafka_error(
                        "read the void ranges",
                        format!(
                            "{} ends at {high}, but nothing past {} arrived",
                            self.topic, state.next
                        ),
                    ));
                }
                None => {}
            }
        }
        Ok(())
    }

    /// Refreshes unless that was done in the last second; whether it did.
    fn refresh_if_stale(&self) -> Result<bool> {
        let fresh = lock(&self.state)
            .refreshed
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1));
        if fresh {
            return Ok(false);
        }
        self.refresh()?;
        Ok(true)
    }

    /// Where reading must go on if `offset` lies in a void range: past every range it
    /// falls in.
    fn skip(&self, topic: &str, partition: u32, offset: u64) -> Option<u64> {
        let state = lock(&self.state);
        let ranges = state.ranges.get(&(topic.to_owned(), partition))?;
        let mut at = offset;
        while let Some(&(_, to)) = ranges.iter().find(|&&(from, to)| from <= at && at < to) {
            at = to;
        }
        (at != offset).then_some(at)
    }
}

/// The config every consumer of this backend starts from: partitions assigned, never
/// subscribed (librdkafka still wants a group id, which is then never joined), no
/// automatic commits, and an error (not a silent jump) if an offset is gone.
fn reader_config(base: &ClientConfig) -> ClientConfig {
    let mut c = base.clone();
    c.set("group.id", "eventlog.reader")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "error")
        .set("fetch.wait.max.ms", "100")
        // What a reader prefetches: librdkafka's default (64 MB per consumer) times a
        // dozen readers was most of the processor's memory.
        .set("queued.max.messages.kbytes", "8192")
        .set("enable.partition.eof", "true")
        .set("allow.auto.create.topics", "false");
    c
}

/// The partition count of a topic, `None` if it does not exist.
fn partition_count(meta: &QuietConsumer, topic: &str) -> Result<Option<u32>> {
    let md = meta
        .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
        .map_err(|e| kafka_error("read metadata", e))?;
    let Some(t) = md.topics().iter().find(|t| t.name() == topic) else {
        return Ok(None);
    };
    match t.error() {
        None if !t.partitions().is_empty() => Ok(Some(t.partitions().len() as u32)),
        None => Ok(None),
        Some(e) => match RDKafkaErrorCode::from(e) {
            RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic => Ok(None),
            code => Err(kafka_error(
                "read metadata",
                format!("topic {topic}: {code}"),
            )),
        },
    }
}

/// How a topic this backend creates keeps its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cleanup {
    /// Every record, forever.
    Keep,
    /// The latest record of each key, forever.
    Compact,
}

/// The topic configs a topic is created with. Records are kept forever: the log is
/// the source of truth, and a broker's default (seven days on Apache Kafka and
/// Redpanda) would silently cut `--reprocess-all` short. `cleanup.policy=delete` is
/// Kafka's default and is never sent: tansu 0.6 deletes every record of a topic whose
/// `cleanup.policy` names `delete` with `retention.ms=-1`.
pub fn topic_configs(cleanup: Cleanup) -> Vec<(&'static str, &'static str)> {
    let mut configs = vec![("retention.ms", "-1"), ("retention.bytes", "-1")];
    if cleanup == Cleanup::Compact {
        configs.push(("cleanup.policy", "compact"));
    }
    configs
}

/// Why a topic with these configs (name -> value, as DescribeConfigs answers) may
/// lose records, or `None` if it keeps them all. A setting the broker does not report
/// is the broker's default, which deletes (seven days on Apache Kafka and Redpanda).
pub fn retention_gap(configs: &HashMap<String, String>) -> Option<String> {
    let policy = configs
        .get("cleanup.policy")
        .map_or("delete", String::as_str);
    let mut gaps = Vec::new();
    if policy.contains("compact") {
        gaps.push(format!("cleanup.policy={policy}"));
    }
    if policy.contains("delete") {
        let limit = |name: &str| configs.get(name).map(|v| (v, v.trim().parse::<i64>()));
        match limit("retention.ms") {
            Some((_, Ok(ms))) if ms < 0 => {}
            Some((v, _)) => gaps.push(format!("retention.ms={v}")),
            None => gaps.push("retention.ms unset (the broker's default)".to_owned()),
        }
        // Unset, retention.bytes is -1 on every broker: no limit.
        if let Some((v, parsed)) = limit("retention.bytes")
            && !matches!(parsed, Ok(b) if b < 0)
        {
            gaps.push(format!("retention.bytes={v}"));
        }
    }
    (!gaps.is_empty()).then(|| gaps.join(", "))
}

/// Creates a topic unless it exists; its partition count once the metadata shows it.
fn create_topic(
    admin: &AdminClient<Quiet>,
    meta: &QuietConsumer,
    topic: &str,
    partitions: u32,
    replication: i32,
    cleanup: Cleanup,
) -> Result<u32> {
    if let Some(n) = partition_count(meta, topic)? {
        return Ok(n);
    }
    let mut new = NewTopic::new(
        topic,
        partitions.max(1) as i32,
        TopicReplication::Fixed(replication),
    );
    for (name, value) in topic_configs(cleanup) {
        new = new.set(name, value);
    }
    let options = AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT));
    let results = futures_executor::block_on(admin.create_topics([&new], &options))
        .map_err(|e| kafka_error("create topic", e))?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(kafka_error("create topic", format!("{name}: {code}")));
            }
        }
    }
    // Metadata reaches every broker a moment after the topic is created.
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    loop {
        if let Some(n) = partition_count(meta, topic)? {
            return Ok(n);
        }
        if Instant::now() > deadline {
            return Err(kafka_error(
                "create topic",
                format!("{topic} was created but never appeared in the metadata"),
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The log on a Kafka-API cluster.
pub struct KafkaLog {
    brokers: String,
    /// `ns.` for namespace `ns`, else empty.
    prefix: String,
    base: ClientConfig,
    replication: i32,
    producer: ThreadedProducer<AckContext>,
    admin: AdminClient<Quiet>,
    /// Partition counts seen: the pipeline's topics never change theirs.
    counts: Mutex<HashMap<String, u32>>,
    meta: QuietConsumer,
    /// One client per consumer name, for its offset commits.
    groups: Mutex<HashMap<String, Arc<QuietConsumer>>>,
    /// Set once the voids topic exists (see [`KafkaLog::open`]).
    voids: Arc<Voids>,
}

impl KafkaLog {
    /// Connects to the cluster (failing with one clear line if it cannot be reached)
    /// and makes sure the voids topic exists.
    pub fn open(brokers: &str, namespace: Option<&str>, config: &KafkaConfig) -> Result<KafkaLog> {
        let mut base = ClientConfig::new();
        base.set("bootstrap.servers", brokers)
            .set("socket.keepalive.enable", "true")
            .set("log_level", "3");
        for (k, v) in &config.properties {
            base.set(k, v);
        }
        let mut producer_config = base.clone();
        producer_config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", "lz4")
            .set("linger.ms", "5")
            .set("batch.num.messages", "10000")
            .set("queue.buffering.max.messages", "1000000")
            .set("message.timeout.ms", "60000");
        for (k, v) in &config.properties {
            producer_config.set(k, v);
        }
        let producer = producer_config
            .create_with_context::<_, ThreadedProducer<AckContext>>(AckContext)
            .map_err(|e| kafka_error("create producer", e))?;
        let admin = base
            .create_with_context::<_, AdminClient<Quiet>>(Quiet)
            .map_err(|e| kafka_error("create admin client", e))?;
        let meta = new_consumer(&reader_config(&base))?;
        meta.fetch_metadata(None, Duration::from_secs(10))
            .map_err(|e| Error::Kafka {
                op: "connect",
                detail: format!("cannot reach the Kafka cluster at {brokers}: {e}"),
            })?;
        let voids_topic = match namespace {
            Some(ns) => format!("_{ns}.{}", &VOIDS_TOPIC[1..]),
            None => VOIDS_TOPIC.to_owned(),
        };
        create_topic(
            &admin,
            &meta,
            &voids_topic,
            1,
            config.replication,
            Cleanup::Keep,
        )?;
        let voids = Arc::new(Voids::open(&base, voids_topic)?);
        Ok(KafkaLog {
            brokers: brokers.to_owned(),
            prefix: namespace.map(|ns| format!("{ns}.")).unwrap_or_default(),
            voids,
            base,
            replication: config.replication,
            producer,
            admin,
            meta,
            groups: Mutex::new(HashMap::new()),
            counts: Mutex::new(HashMap::new()),
        })
    }

    pub fn brokers(&self) -> &str {
        &self.brokers
    }

    fn ensure(&self, topic: &str, partitions: u32, cleanup: Cleanup) -> Result<u32> {
        crate::embedded::check_name(topic)?;
        let full = self.full(topic);
        if let Some(n) = self.count(&full)? {
            return Ok(n);
        }
        create_topic(
            &self.admin,
            &self.meta,
            &full,
            partitions,
            self.replication,
            cleanup,
        )
    }

    /// A topic's configs as the cluster reports them (DescribeConfigs), `None` if
    /// the topic does not exist.
    pub fn topic_config(&self, topic: &str) -> Result<Option<HashMap<String, String>>> {
        let full = self.full(topic);
        if self.count(&full)?.is_none() {
            return Ok(None);
        }
        let options = AdminOptions::new().request_timeout(Some(REQUEST_TIMEOUT));
        let resource = ResourceSpecifier::Topic(&full);
        let results =
            futures_executor::block_on(self.admin.describe_configs([&resource], &options))
                .map_err(|e| kafka_error("describe topic configs", format!("{full}: {e}")))?;
        let Some(result) = results.into_iter().next() else {
            return Err(kafka_error(
                "describe topic configs",
                format!("{full}: no answer"),
            ));
        };
        let resource = result
            .map_err(|code| kafka_error("describe topic configs", format!("{full}: {code}")))?;
        Ok(Some(
            resource
                .entries
                .into_iter()
                .filter_map(|e| Some((e.name, e.value?)))
                .collect(),
        ))
    }

    /// A topic's or consumer's name on the cluster.
    fn full(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    fn group(&self, consumer: &str) -> Result<Arc<QuietConsumer>> {
        let mut groups = lock(&self.groups);
        if let Some(c) = groups.get(consumer) {
            return Ok(Arc::clone(c));
        }
        let mut config = reader_config(&self.base);
        config.set("group.id", self.full(consumer));
        let c = Arc::new(new_consumer(&config)?);
        groups.insert(consumer.to_owned(), Arc::clone(&c));
        Ok(c)
    }

    /// Appends to a topic by its full name; the offset of the first record.
    fn append_to(&self, topic: &str, partition: u32, records: &[Record]) -> Result<u64> {
        if records.is_empty() {
            return self.high_watermark(topic, partition);
        }
        let ack = Arc::new(Ack::new(records.len()));
        for r in records {
            let mut headers = OwnedHeaders::new_with_capacity(r.headers.len());
            for (name, value) in &r.headers {
                headers = headers.insert(Header {
                    key: name.as_ref(),
                    value: Some(value.as_ref()),
                });
            }
            let mut record = BaseRecord::with_opaque_to(topic, Arc::clone(&ack))
                .partition(partition as i32)
                .payload(r.value.as_ref())
                .headers(headers);
            if r.timestamp_ms >= 0 {
                record = record.timestamp(r.timestamp_ms);
            }
            if let Some(key) = &r.key {
                record = record.key(key.as_ref());
            }
            loop {
                match self.producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        record = back;
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::UnknownPartition), _)) => {
                        self.check_partition(topic, partition)?;
                        return Err(kafka_error(
                            "produce",
                            format!("{topic}/{partition}: unknown partition"),
                        ));
                    }
                    Err((e, _)) => {
                        return Err(kafka_error("produce", format!("{topic}/{partition}: {e}")));
                    }
                }
            }
        }
        ack.wait(&format!("{topic}/{partition}"))
    }

    /// The high watermark of a partition (`topic` is the full name).
    fn high_watermark(&self, topic: &str, partition: u32) -> Result<u64> {
        match self
            .meta
            .fetch_watermarks(topic, partition as i32, REQUEST_TIMEOUT)
        {
            Ok((_, high)) => Ok(high.max(0) as u64),
            Err(e) => {
                self.check_partition(topic, partition)?;
                Err(kafka_error(
                    "read end offset",
                    format!("{topic}/{partition}: {e}"),
                ))
            }
        }
    }

    /// The partition count of a topic by its full name, remembered once known.
    fn count(&self, topic: &str) -> Result<Option<u32>> {
        if let Some(n) = lock(&self.counts).get(topic) {
            return Ok(Some(*n));
        }
        let n = partition_count(&self.meta, topic)?;
        if let Some(n) = n {
            lock(&self.counts).insert(topic.to_owned(), n);
        }
        Ok(n)
    }

    /// `topic` is the full name.
    fn check_partition(&self, topic: &str, partition: u32) -> Result<()> {
        match self.count(topic)? {
            None => Err(Error::UnknownTopic(topic.to_owned())),
            Some(n) if partition >= n => Err(Error::UnknownPartition {
                topic: topic.to_owned(),
                partition,
                partitions: n,
            }),
            Some(_) => Ok(()),
        }
    }
}

impl Log for KafkaLog {
    type Reader = KafkaReader;

    fn ensure_topic(&self, topic: &str, partitions: u32) -> Result<u32> {
        self.ensure(topic, partitions, Cleanup::Keep)
    }

    fn ensure_compacted_topic(&self, topic: &str, partitions: u32) -> Result<u32> {
        self.ensure(topic, partitions, Cleanup::Compact)
    }

    fn finite_retention(&self, topic: &str) -> Result<Option<String>> {
        Ok(self.topic_config(topic)?.as_ref().and_then(retention_gap))
    }

    fn partitions(&self, topic: &str) -> Result<Option<u32>> {
        self.count(&self.full(topic))
    }

    fn topics(&self) -> Result<Vec<(String, u32)>> {
        let md = self
            .meta
            .fetch_metadata(None, REQUEST_TIMEOUT)
            .map_err(|e| kafka_error("read metadata", e))?;
        let mut topics: Vec<(String, u32)> = md
            .topics()
            .iter()
            .filter(|t| t.error().is_none())
            .filter_map(|t| {
                let name = t.name().strip_prefix(&self.prefix)?;
                (!name.starts_with('_')).then(|| (name.to_owned(), t.partitions().len() as u32))
            })
            .collect();
        topics.sort();
        Ok(topics)
    }

    fn append(&self, topic: &str, partition: u32, records: &[Record]) -> Result<u64> {
        self.append_to(&self.full(topic), partition, records)
    }

    fn end_offset(&self, topic: &str, partition: u32) -> Result<u64> {
        self.high_watermark(&self.full(topic), partition)
    }

    /// One ListOffsets request per broker for all of them (`End`, raw -1, is the
    /// "latest" timestamp).
    fn end_offsets(&self, partitions: &[(&str, u32)]) -> Result<Vec<u64>> {
        let mut tpl = TopicPartitionList::new();
        let full: Vec<String> = partitions.iter().map(|(t, _)| self.full(t)).collect();
        for (topic, (_, p)) in full.iter().zip(partitions) {
            // Known partitions only: librdkafka would wait out the timeout for others.
            self.check_partition(topic, *p)?;
            tpl.add_partition_offset(topic, *p as i32, Offset::End)
                .map_err(|e| kafka_error("read end offsets", e))?;
        }
        let got = self
            .meta
            .offsets_for_times(tpl, REQUEST_TIMEOUT)
            .map_err(|e| kafka_error("read end offsets", e))?;
        full.iter()
            .zip(partitions)
            .map(|(topic, (_, p))| {
                let e = got.find_partition(topic, *p as i32).ok_or_else(|| {
                    kafka_error("read end offsets", format!("{topic}/{p}: no answer"))
                })?;
                if let Err(err) = e.error() {
                    self.check_partition(topic, *p)?;
                    return Err(kafka_error(
                        "read end offsets",
                        format!("{topic}/{p}: {err}"),
                    ));
                }
                match e.offset() {
                    Offset::Offset(o) if o >= 0 => Ok(o as u64),
                    // An empty partition answers "end" rather than a number.
                    _ => self.high_watermark(topic, *p),
                }
            })
            .collect()
    }

    fn reader(&self, topic: &str, partition: u32, from: u64) -> Result<KafkaReader> {
        let topic = &self.full(topic);
        self.check_partition(topic, partition)?;
        self.voids.refresh()?;
        let consumer = new_consumer(&reader_config(&self.base))?;
        let from = self.voids.skip(topic, partition, from).unwrap_or(from);
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition as i32, Offset::Offset(from as i64))
            .map_err(|e| kafka_error("assign", e))?;
        consumer
            .assign(&tpl)
            .map_err(|e| kafka_error("assign", e))?;
        Ok(KafkaReader {
            consumer,
            topic: topic.to_owned(),
            partition,
            position: from,
            pending: VecDeque::new(),
            at_end: false,
            voids: Arc::clone(&self.voids),
            troubled_since: None,
        })
    }

    fn committed_many(
        &self,
        consumer: &str,
        partitions: &[(&str, u32)],
    ) -> Result<Vec<Option<u64>>> {
        let group = self.group(consumer)?;
        let full: Vec<(String, i32)> = partitions
            .iter()
            .map(|(topic, p)| (self.full(topic), *p as i32))
            .collect();
        // One request: the coordinator answers it from one state of the group.
        let mut tpl = TopicPartitionList::new();
        for (topic, p) in &full {
            tpl.add_partition(topic, *p);
        }
        let got = group
            .committed_offsets(tpl, REQUEST_TIMEOUT)
            .map_err(|e| kafka_error("read committed offsets", format!("{consumer}: {e}")))?;
        Ok(full
            .iter()
            .map(|(topic, p)| {
                got.find_partition(topic, *p)
                    .and_then(|e| match e.offset() {
                        Offset::Offset(o) if o >= 0 => Some(o as u64),
                        _ => None,
                    })
            })
            .collect())
    }

    fn commit(&self, consumer: &str, offsets: &[(&str, u32, u64)]) -> Result<()> {
        if offsets.is_empty() {
            return Ok(());
        }
        let group = self.group(consumer)?;
        let mut tpl = TopicPartitionList::new();
        for (topic, partition, offset) in offsets {
            tpl.add_partition_offset(
                &self.full(topic),
                *partition as i32,
                Offset::Offset(*offset as i64),
            )
            .map_err(|e| kafka_error("commit", e))?;
        }
        group
            .commit(&tpl, CommitMode::Sync)
            .map_err(|e| kafka_error("commit", format!("{consumer}: {e}")))
    }

    fn flush(&self) -> Result<()> {
        self.producer
            .flush(REQUEST_TIMEOUT * 4)
            .map_err(|e| kafka_error("flush", e))
    }

    fn truncate(&self, topic: &str, partition: u32, end: u64) -> Result<()> {
        self.flush()?;
        let topic = &self.full(topic);
        let high = self.high_watermark(topic, partition)?;
        if end >= high {
            return Ok(());
        }
        let void = Void {
            topic: topic.to_owned(),
            partition,
            from: end,
            to: high,
        };
        let value = serde_json::to_vec(&void).map_err(|e| kafka_error("truncate", e))?;
        let key = format!("{topic}/{partition}");
        let record = Record::new(Some(key.into_bytes()), value);
        self.append_to(&self.voids.topic, 0, &[record])?;
        self.voids.refresh()
    }
}

/// Reads one partition, skipping void ranges.
pub struct KafkaReader {
    consumer: QuietConsumer,
    topic: String,
    partition: u32,
    position: u64,
    /// Records fetched by `wait` and not yet returned by `poll`.
    pending: VecDeque<StoredRecord>,
    /// librdkafka reported the end of the partition and nothing came since.
    at_end: bool,
    voids: Arc<Voids>,
    /// Since when fetches have failed with transient errors only (see `next`).
    troubled_since: Option<Instant>,
}

/// Errors of a fetch that librdkafka recovers from by itself (it reconnects and
/// fetches again): the broker's connection broke, or it is briefly unreachable.
fn is_transient(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::BrokerTransportFailure
            | RDKafkaErrorCode::AllBrokersDown
            | RDKafkaErrorCode::NetworkException
            | RDKafkaErrorCode::RequestTimedOut
            | RDKafkaErrorCode::OperationTimedOut
            | RDKafkaErrorCode::LeaderNotAvailable
            | RDKafkaErrorCode::NotLeaderForPartition
    )
}

impl KafkaReader {
    fn stored(m: &BorrowedMessage<'_>) -> StoredRecord {
        let headers = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        (
                            header_name(h.key),
                            Bytes::copy_from_slice(h.value.unwrap_or_default()),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        StoredRecord {
            offset: m.offset().max(0) as u64,
            record: Record {
                key: m.key().map(Bytes::copy_from_slice),
                value: m.payload().map(Bytes::copy_from_slice).unwrap_or_default(),
                headers,
                timestamp_ms: m.timestamp().to_millis().unwrap_or(0),
            },
        }
    }

    fn seek(&mut self, to: u64) -> Result<()> {
        self.consumer
            .seek(
                &self.topic,
                self.partition as i32,
                Offset::Offset(to as i64),
                REQUEST_TIMEOUT,
            )
            .map_err(|e| kafka_error("seek", format!("{}/{}: {e}", self.topic, self.partition)))?;
        self.position = to;
        self.at_end = false;
        Ok(())
    }

    /// The next record within `timeout`, past void ranges; `None` at the timeout, or
    /// at once when librdkafka reports the end of the partition (then `at_end` is set).
    fn next(&mut self, timeout: Duration) -> Result<Option<StoredRecord>> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let record = match self.consumer.poll(left) {
                None => return Ok(None),
                Some(Err(KafkaError::PartitionEOF(_))) => {
                    self.at_end = true;
                    self.troubled_since = None;
                    return Ok(None);
                }
                // The connection to the broker broke (a restart, a network blip):
                // librdkafka reconnects by itself and fetches again; the reader
                // waits for that, as long as a request may take.
                Some(Err(KafkaError::MessageConsumption(code)))
                    if is_transient(code)
                        && self
                            .troubled_since
                            .get_or_insert_with(Instant::now)
                            .elapsed()
                            < REQUEST_TIMEOUT =>
                {
                    tracing::debug!(
                        topic = self.topic,
                        partition = self.partition,
                        "fetch: {code}; waiting for librdkafka to reconnect"
                    );
                    continue;
                }
                Some(Err(e)) => {
                    return Err(kafka_error(
                        "fetch",
                        format!(
                            "{}/{} at {}: {e}",
                            self.topic, self.partition, self.position
                        ),
                    ));
                }
                Some(Ok(m)) => Self::stored(&m),
            };
            self.troubled_since = None;
            if record.offset < self.position {
                continue; // fetched before a seek
            }
            self.at_end = false;
            if let Some(to) = self.voids.skip(&self.topic, self.partition, record.offset) {
                self.seek(to)?;
                continue;
            }
            self.position = record.offset + 1;
            return Ok(Some(record));
        }
    }
}

impl PartitionReader for KafkaReader {
    /// Empty only once librdkafka has reported the end of the partition at the
    /// current position (its fetch saw the high watermark): no request per poll.
    fn poll(&mut self, max: usize) -> Result<Vec<StoredRecord>> {
        let max = max.max(1);
        let n = self.pending.len().min(max);
        let mut out: Vec<StoredRecord> = self.pending.drain(..n).collect();
        let started = Instant::now();
        while out.len() < max {
            if let Some(r) = self.next(Duration::ZERO)? {
                out.push(r);
                continue;
            }
            if !out.is_empty() {
                break;
            }
            if self.at_end {
                // Void ranges recorded since this reader began (rarely any).
                if self.voids.refresh_if_stale()?
                    && let Some(to) = self.voids.skip(&self.topic, self.partition, self.position)
                {
                    self.seek(to)?;
                    continue;
                }
                break;
            }
            if started.elapsed() > REQUEST_TIMEOUT {
                return Err(kafka_error(
                    "fetch",
                    format!(
                        "{}/{}: nothing arrived from offset {} and no end of partition was reported",
                        self.topic, self.partition, self.position
                    ),
                ));
            }
            if let Some(r) = self.next(Duration::from_millis(100))? {
                out.push(r);
            }
        }
        Ok(out)
    }

    fn wait(&mut self, timeout: Duration) -> Result<bool> {
        if !self.pending.is_empty() {
            return Ok(true);
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(r) = self.next(deadline.saturating_duration_since(Instant::now()))? {
                self.pending.push_back(r);
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
        }
    }

    fn position(&self) -> u64 {
        self.pending.front().map_or(self.position, |r| r.offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configs(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn topics_are_created_to_keep_their_records() {
        let keep = topic_configs(Cleanup::Keep);
        assert_eq!(keep, [("retention.ms", "-1"), ("retention.bytes", "-1")]);
        let compact = topic_configs(Cleanup::Compact);
        assert!(compact.contains(&("cleanup.policy", "compact")));
        assert!(compact.contains(&("retention.ms", "-1")));
        // What they are created with reads back as keeping everything.
        for created in [keep, compact.clone()] {
            let created: Vec<(&str, &str)> = created
                .into_iter()
                .filter(|(k, _)| *k != "cleanup.policy")
                .collect();
            assert_eq!(retention_gap(&configs(&created)), None);
        }
        assert_eq!(
            retention_gap(&configs(&compact)).as_deref(),
            Some("cleanup.policy=compact")
        );
    }

    #[test]
    fn a_finite_retention_is_named() {
        // Apache Kafka's defaults, as DescribeConfigs reports them.
        let kafka = configs(&[
            ("cleanup.policy", "delete"),
            ("retention.ms", "604800000"),
            ("retention.bytes", "-1"),
        ]);
        assert_eq!(
            retention_gap(&kafka).as_deref(),
            Some("retention.ms=604800000")
        );
        let by_size = configs(&[("retention.ms", "-1"), ("retention.bytes", "1073741824")]);
        assert_eq!(
            retention_gap(&by_size).as_deref(),
            Some("retention.bytes=1073741824")
        );
        // A broker that reports only what was set (tansu): unset is the default.
        assert_eq!(
            retention_gap(&configs(&[])).as_deref(),
            Some("retention.ms unset (the broker's default)")
        );
        let both = configs(&[("cleanup.policy", "compact,delete"), ("retention.ms", "-1")]);
        assert_eq!(
            retention_gap(&both).as_deref(),
            Some("cleanup.policy=compact,delete")
        );
        assert_eq!(
            retention_gap(&configs(&[("retention.ms", "soon")])).as_deref(),
            Some("retention.ms=soon")
        );
    }
}
