//! The log: the source of truth of the pipeline.
//!
//! This crate owns the [`Log`] trait (append record batches to a topic partition, read
//! from an offset and follow, end offsets, committed offsets per consumer name), the
//! choice of a backend by URL, the embedded segment log ([`embedded`]) and the Kafka
//! backend ([`kafka`]).
//!
//! It knows nothing of what the records mean: no parsing of values, no rules.

pub mod cli;
pub mod codec;
pub mod config;
pub mod embedded;
mod error;
pub mod hooked;
pub mod index;
pub mod kafka;
pub mod partition;
pub mod reuse;

use std::borrow::Cow;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

pub use bytes::Bytes;
pub use codec::KNOWN_HEADERS;
pub use config::PipelineConfig;
pub use embedded::{EmbeddedLog, EmbeddedReader, try_lock_with_grace, write_atomic};
pub use error::{Error, IoContext, Result};
pub use kafka::{KafkaConfig, KafkaLog, KafkaReader};
pub use partition::partition_for;
pub use reuse::ReusedBuffers;

/// A header name: usually one of a few static names, so no allocation per record.
pub type HeaderName = Cow<'static, str>;

/// One record: an optional key, the value bytes, named headers, a timestamp. Bytes
/// read back share the batch they were read in (no copy per record).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    pub key: Option<Bytes>,
    pub value: Bytes,
    pub headers: Vec<(HeaderName, Bytes)>,
    /// Milliseconds since the epoch (event time where the producer knows it).
    pub timestamp_ms: i64,
}

impl Record {
    pub fn new(key: Option<impl Into<Bytes>>, value: impl Into<Bytes>) -> Record {
        Record {
            key: key.map(Into::into),
            value: value.into(),
            headers: Vec::new(),
            timestamp_ms: 0,
        }
    }

    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_ref())
    }
}

/// A record read back, with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    pub offset: u64,
    pub record: Record,
}

/// When appended data is forced to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Before an append returns: an acknowledged append survives a machine crash.
    Always,
    /// By a background thread at this interval: a crash of the machine may lose the
    /// last interval; a crash of the process loses nothing acknowledged.
    Interval(Duration),
    /// Left to the operating system.
    Never,
}

impl FromStr for FsyncPolicy {
    type Err = Error;

    /// `always`, `never`, or an interval such as `100ms` or `2s`.
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        let bad = || {
            Error::Config(format!(
                "fsync policy {s:?}: expected always, never, or an interval like 100ms"
            ))
        };
        match s {
            "always" => Ok(FsyncPolicy::Always),
            "never" => Ok(FsyncPolicy::Never),
            _ => parse_duration(s).map(FsyncPolicy::Interval).ok_or_else(bad),
        }
    }
}

/// A positive duration written as a number and a unit: `500ms`, `30s`, `5m`, `1h`,
/// `7d`.
/// Every duration in the config and on command lines is read with this.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    let ms = match unit.trim() {
        "ms" => n,
        "s" => n.checked_mul(1000)?,
        "m" => n.checked_mul(60_000)?,
        "h" => n.checked_mul(3_600_000)?,
        "d" => n.checked_mul(86_400_000)?,
        _ => return None,
    };
    (ms > 0).then(|| Duration::from_millis(ms))
}

/// Settings of the log backends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    pub fsync: FsyncPolicy,
    /// A segment rolls once it holds at least this many bytes.
    pub segment_bytes: u64,
    /// One sparse-index entry per this many bytes of segment.
    pub index_interval_bytes: u64,
    /// The embedded log's writers keep only this many bytes of each partition's
    /// newest data in the page cache: at each fsync, what lies further back is
    /// dropped from it (`posix_fadvise(DONTNEED)`), and a rolled segment whole.
    /// `None`, the default, leaves the page cache to the kernel. For a writer whose
    /// output is read long after, if ever, from disk (docs/decisions.md, "Output
    /// pages dropped behind the processor").
    pub cache_behind: Option<u64>,
    /// The Kafka backend's settings (unused by the embedded log).
    pub kafka: KafkaConfig,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            fsync: FsyncPolicy::Interval(Duration::from_millis(100)),
            segment_bytes: 64 * 1024 * 1024,
            index_interval_bytes: 4096,
            cache_behind: None,
            kafka: KafkaConfig::default(),
        }
    }
}

/// The log, whatever its backend.
pub trait Log: Send + Sync {
    type Reader: PartitionReader;

    /// Creates the topic with this many partitions if it does not exist; returns the
    /// partition count it has. A topic this creates keeps every record forever (on
    /// Kafka: `retention.ms=-1`, `retention.bytes=-1`): the log is the source of truth.
    fn ensure_topic(&self, topic: &str, partitions: u32) -> Result<u32>;

    /// As [`ensure_topic`](Self::ensure_topic), for a topic whose readers need only
    /// the latest record of each key: the broker may drop a record once a later one
    /// has its key (on Kafka: `cleanup.policy=compact`). The embedded log keeps all.
    fn ensure_compacted_topic(&self, topic: &str, partitions: u32) -> Result<u32> {
        self.ensure_topic(topic, partitions)
    }

    /// Why this topic may lose records before anyone reads them again (a finite
    /// retention, or compaction), as a line naming its settings; `None` when it keeps
    /// every record. The embedded log deletes nothing.
    fn finite_retention(&self, topic: &str) -> Result<Option<String>> {
        let _ = topic;
        Ok(None)
    }

    /// The partition count of a topic, `None` if it does not exist.
    fn partitions(&self, topic: &str) -> Result<Option<u32>>;

    /// Every topic with its partition count, sorted by name.
    fn topics(&self) -> Result<Vec<(String, u32)>>;

    /// Appends the records, in order, at consecutive offsets; returns the offset of
    /// the first. Not atomic: a crash may leave a prefix of them (the embedded log
    /// writes an append of more than 256 KiB as several batches; it cuts a failed
    /// append back whole), which the processor's committed output positions and the
    /// producer's resume by record count allow for.
    fn append(&self, topic: &str, partition: u32, records: &[Record]) -> Result<u64>;

    /// The offset the next appended record will get.
    fn end_offset(&self, topic: &str, partition: u32) -> Result<u64>;

    /// The end offsets of several partitions at once (one request on Kafka).
    fn end_offsets(&self, partitions: &[(&str, u32)]) -> Result<Vec<u64>> {
        partitions
            .iter()
            .map(|(topic, p)| self.end_offset(topic, *p))
            .collect()
    }

    /// A reader positioned at `from`.
    fn reader(&self, topic: &str, partition: u32, from: u64) -> Result<Self::Reader>;

    /// The offsets a consumer will read next for these partitions (`None` where it
    /// committed none), read in one go: positions written by one `commit` or
    /// `publish` come back together, never some from it and some from the one after.
    fn committed_many(
        &self,
        consumer: &str,
        partitions: &[(&str, u32)],
    ) -> Result<Vec<Option<u64>>>;

    /// The offset a consumer will read next, if it committed one.
    fn committed(&self, consumer: &str, topic: &str, partition: u32) -> Result<Option<u64>> {
        Ok(self
            .committed_many(consumer, &[(topic, partition)])?
            .pop()
            .flatten())
    }

    /// Records, atomically, the next offsets a consumer will read.
    fn commit(&self, consumer: &str, offsets: &[(&str, u32, u64)]) -> Result<()>;

    /// Records positions as [`commit`](Self::commit) does, atomically and for readers
    /// to see at once, but without waiting for them to reach the disk: for positions
    /// that repeat what is already durable elsewhere and that their writer publishes
    /// again when it starts (the processor's committed outputs, which its RocksDB
    /// commit holds). After a crash of the machine a reader may find an earlier
    /// publication, never a later one.
    fn publish(&self, consumer: &str, offsets: &[(&str, u32, u64)]) -> Result<()> {
        self.commit(consumer, offsets)
    }

    /// Forces everything appended so far to disk.
    fn flush(&self) -> Result<()>;

    /// Forces what was appended to these partitions to disk: what a writer that owns
    /// them needs before it records their ends (other writers' partitions are theirs
    /// to sync). By default, everything, as [`flush`](Self::flush).
    fn flush_partitions(&self, partitions: &[(&str, u32)]) -> Result<()> {
        let _ = partitions;
        self.flush()
    }

    /// Removes the records at offsets `end` and beyond, which must start a batch: how
    /// a writer discards what it appended but never committed. Readers must not have
    /// been given those records (they read up to committed positions).
    fn truncate(&self, topic: &str, partition: u32, end: u64) -> Result<()>;
}

/// Reads one partition in offset order.
pub trait PartitionReader: Send {
    /// Up to about `max` records from the current position; empty when caught up.
    /// Never returns part of a batch that is still being written.
    fn poll(&mut self, max: usize) -> Result<Vec<StoredRecord>>;

    /// [`poll`](Self::poll), appending to `out`: a caller that polls again and again
    /// reuses one vector's allocation rather than getting a new one each time.
    fn poll_into(&mut self, max: usize, out: &mut Vec<StoredRecord>) -> Result<()> {
        out.extend(self.poll(max)?);
        Ok(())
    }

    /// Blocks until records past the current position exist or `timeout` passes;
    /// returns whether there are any. Does not busy-spin.
    fn wait(&mut self, timeout: Duration) -> Result<bool>;

    /// The offset of the next record `poll` returns.
    fn position(&self) -> u64;
}

/// Warns, one line each, about every topic of `topics` that may lose records (see
/// [`Log::finite_retention`]), naming its settings and the fix; returns those topics
/// with their settings. A topic whose configs cannot be read (an older broker, an
/// ACL) is a warning of its own, not an error.
pub fn check_retention<L: Log + ?Sized>(log: &L, topics: &[&str]) -> Vec<(String, String)> {
    let mut finite = Vec::new();
    for topic in topics {
        match log.finite_retention(topic) {
            Ok(None) => {}
            Ok(Some(gap)) => {
                tracing::warn!(
                    "topic {topic} may delete records ({gap}): the log is the source of truth, \
                     and --reprocess-all or --from-offset earliest would work on what is left. \
                     Keep them forever: rpk topic alter-config {topic} --set retention.ms=-1 \
                     --set retention.bytes=-1 --set cleanup.policy=delete (or kafka-configs.sh \
                     --alter --entity-type topics --entity-name {topic} --add-config \
                     retention.ms=-1,retention.bytes=-1,cleanup.policy=delete)"
                );
                finite.push(((*topic).to_owned(), gap));
            }
            Err(e) => tracing::warn!("cannot read the retention of topic {topic}: {e}"),
        }
    }
    finite
}

/// A URL fit for a message: the user information before `@` in its authority (where
/// a password would be) replaced by `<redacted>`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let end = rest.find('/').unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => format!("{scheme}://<redacted>{}", &rest[at..]),
        None => url.to_owned(),
    }
}

/// Where the log lives, from its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogUrl {
    /// `embedded:<dir>` (also `embedded://<dir>`).
    Embedded(PathBuf),
    /// `kafka://host:port[,host:port...][/namespace]`: with a namespace, every topic
    /// and consumer group name gets the prefix `namespace.`, so that several pipelines
    /// (or test runs) share one cluster without seeing each other.
    Kafka {
        brokers: String,
        namespace: Option<String>,
    },
}

impl FromStr for LogUrl {
    type Err = Error;

    fn from_str(url: &str) -> Result<Self> {
        if let Some(rest) = url.strip_prefix("embedded:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if path.is_empty() {
                return Err(Error::Config(format!("log URL {url:?} names no directory")));
            }
            return Ok(LogUrl::Embedded(PathBuf::from(path)));
        }
        let shown = redact_url(url);
        if let Some(rest) = url.strip_prefix("kafka://") {
            if rest.is_empty() {
                return Err(Error::Config(format!("log URL {shown:?} names no broker")));
            }
            if rest.contains('@') {
                return Err(Error::Config(format!(
                    "log URL {shown:?}: credentials in the URL are not accepted"
                )));
            }
            let rest = rest.trim_end_matches('/');
            let (brokers, namespace) = match rest.split_once('/') {
                Some((b, ns)) => {
                    embedded::check_name(ns).map_err(|_| {
                        Error::Config(format!(
                            "log URL {shown:?}: the namespace after the brokers must be letters, digits, '.', '_' or '-'"
                        ))
                    })?;
                    (b, Some(ns.to_owned()))
                }
                None => (rest, None),
            };
            return Ok(LogUrl::Kafka {
                brokers: brokers.to_owned(),
                namespace,
            });
        }
        Err(Error::Config(format!(
            "log URL {shown:?}: expected embedded:<dir> or kafka://host:port"
        )))
    }
}

/// A log of any backend, chosen by URL and dispatched statically.
pub enum AnyLog {
    Embedded(EmbeddedLog),
    /// Boxed: its clients make it larger than the embedded log's handle.
    Kafka(Box<KafkaLog>),
}

pub enum AnyReader {
    Embedded(EmbeddedReader),
    Kafka(KafkaReader),
}

/// Opens the log a URL names.
pub fn open(url: &str, config: LogConfig) -> Result<AnyLog> {
    match url.parse::<LogUrl>()? {
        LogUrl::Embedded(dir) => Ok(AnyLog::Embedded(EmbeddedLog::open(dir, config)?)),
        LogUrl::Kafka { brokers, namespace } => Ok(AnyLog::Kafka(Box::new(KafkaLog::open(
            &brokers,
            namespace.as_deref(),
            &config.kafka,
        )?))),
    }
}

impl Log for AnyLog {
    type Reader = AnyReader;

    fn ensure_topic(&self, topic: &str, partitions: u32) -> Result<u32> {
        match self {
            AnyLog::Embedded(l) => l.ensure_topic(topic, partitions),
            AnyLog::Kafka(l) => l.ensure_topic(topic, partitions),
        }
    }
    fn ensure_compacted_topic(&self, topic: &str, partitions: u32) -> Result<u32> {
        match self {
            AnyLog::Embedded(l) => l.ensure_compacted_topic(topic, partitions),
            AnyLog::Kafka(l) => l.ensure_compacted_topic(topic, partitions),
        }
    }
    fn finite_retention(&self, topic: &str) -> Result<Option<String>> {
        match self {
            AnyLog::Embedded(l) => l.finite_retention(topic),
            AnyLog::Kafka(l) => l.finite_retention(topic),
        }
    }
    fn partitions(&self, topic: &str) -> Result<Option<u32>> {
        match self {
            AnyLog::Embedded(l) => l.partitions(topic),
            AnyLog::Kafka(l) => l.partitions(topic),
        }
    }
    fn topics(&self) -> Result<Vec<(String, u32)>> {
        match self {
            AnyLog::Embedded(l) => l.topics(),
            AnyLog::Kafka(l) => l.topics(),
        }
    }
    fn append(&self, topic: &str, partition: u32, records: &[Record]) -> Result<u64> {
        match self {
            AnyLog::Embedded(l) => l.append(topic, partition, records),
            AnyLog::Kafka(l) => l.append(topic, partition, records),
        }
    }
    fn end_offset(&self, topic: &str, partition: u32) -> Result<u64> {
        match self {
            AnyLog::Embedded(l) => l.end_offset(topic, partition),
            AnyLog::Kafka(l) => l.end_offset(topic, partition),
        }
    }
    fn end_offsets(&self, partitions: &[(&str, u32)]) -> Result<Vec<u64>> {
        match self {
            AnyLog::Embedded(l) => l.end_offsets(partitions),
            AnyLog::Kafka(l) => l.end_offsets(partitions),
        }
    }
    fn reader(&self, topic: &str, partition: u32, from: u64) -> Result<AnyReader> {
        match self {
            AnyLog::Embedded(l) => Ok(AnyReader::Embedded(l.reader(topic, partition, from)?)),
            AnyLog::Kafka(l) => Ok(AnyReader::Kafka(l.reader(topic, partition, from)?)),
        }
    }
    fn committed_many(
        &self,
        consumer: &str,
        partitions: &[(&str, u32)],
    ) -> Result<Vec<Option<u64>>> {
        match self {
            AnyLog::Embedded(l) => l.committed_many(consumer, partitions),
            AnyLog::Kafka(l) => l.committed_many(consumer, partitions),
        }
    }
    fn commit(&self, consumer: &str, offsets: &[(&str, u32, u64)]) -> Result<()> {
        match self {
            AnyLog::Embedded(l) => l.commit(consumer, offsets),
            AnyLog::Kafka(l) => l.commit(consumer, offsets),
        }
    }
    fn publish(&self, consumer: &str, offsets: &[(&str, u32, u64)]) -> Result<()> {
        match self {
            AnyLog::Embedded(l) => l.publish(consumer, offsets),
            AnyLog::Kafka(l) => l.publish(consumer, offsets),
        }
    }
    fn flush(&self) -> Result<()> {
        match self {
            AnyLog::Embedded(l) => l.flush(),
            AnyLog::Kafka(l) => l.flush(),
        }
    }
    fn flush_partitions(&self, partitions: &[(&str, u32)]) -> Result<()> {
        match self {
            AnyLog::Embedded(l) => l.flush_partitions(partitions),
            AnyLog::Kafka(l) => l.flush_partitions(partitions),
        }
    }
    fn truncate(&self, topic: &str, partition: u32, end: u64) -> Result<()> {
        match self {
            AnyLog::Embedded(l) => l.truncate(topic, partition, end),
            AnyLog::Kafka(l) => l.truncate(topic, partition, end),
        }
    }
}

impl PartitionReader for AnyReader {
    fn poll(&mut self, max: usize) -> Result<Vec<StoredRecord>> {
        match self {
            AnyReader::Embedded(r) => r.poll(max),
            AnyReader::Kafka(r) => r.poll(max),
        }
    }
    fn poll_into(&mut self, max: usize, out: &mut Vec<StoredRecord>) -> Result<()> {
        match self {
            AnyReader::Embedded(r) => r.poll_into(max, out),
            AnyReader::Kafka(r) => r.poll_into(max, out),
        }
    }
    fn wait(&mut self, timeout: Duration) -> Result<bool> {
        match self {
            AnyReader::Embedded(r) => r.wait(timeout),
            AnyReader::Kafka(r) => r.wait(timeout),
        }
    }
    fn position(&self) -> u64 {
        match self {
            AnyReader::Embedded(r) => r.position(),
            AnyReader::Kafka(r) => r.position(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            "embedded:./data/log".parse::<LogUrl>().unwrap(),
            LogUrl::Embedded("./data/log".into())
        );
        assert_eq!(
            "embedded:///tmp/x".parse::<LogUrl>().unwrap(),
            LogUrl::Embedded("/tmp/x".into())
        );
        assert_eq!(
            "kafka://127.0.0.1:9092".parse::<LogUrl>().unwrap(),
            LogUrl::Kafka {
                brokers: "127.0.0.1:9092".into(),
                namespace: None
            }
        );
        assert_eq!(
            "kafka://a:9092,b:9092/staging/".parse::<LogUrl>().unwrap(),
            LogUrl::Kafka {
                brokers: "a:9092,b:9092".into(),
                namespace: Some("staging".into())
            }
        );
        assert!("kafka://a:9092/x/y".parse::<LogUrl>().is_err());
        assert!("embedded:".parse::<LogUrl>().is_err());
        assert!("s3://bucket".parse::<LogUrl>().is_err());
        let e = "kafka://bob:hunter2@b:9092".parse::<LogUrl>().unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let e = "s3://bob:hunter2@bucket/x".parse::<LogUrl>().unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }

    #[test]
    fn urls_lose_their_credentials_in_messages() {
        assert_eq!(
            redact_url("cassandra://u:p@h:9042/ks"),
            "cassandra://<redacted>@h:9042/ks"
        );
        assert_eq!(redact_url("kafka://h:9092"), "kafka://h:9092");
        // An `@` after the authority is not user information.
        assert_eq!(redact_url("kafka://h:9092/a@b"), "kafka://h:9092/a@b");
        assert_eq!(redact_url("embedded:./x@y"), "embedded:./x@y");
    }

    #[test]
    fn durations() {
        let ms = |s: &str| parse_duration(s).map(|d| d.as_millis());
        assert_eq!(ms("500ms"), Some(500));
        assert_eq!(ms("30s"), Some(30_000));
        assert_eq!(ms("5m"), Some(300_000));
        assert_eq!(ms("1h"), Some(3_600_000));
        assert_eq!(ms("7d"), Some(604_800_000));
        assert_eq!(ms("0s"), None);
        assert_eq!(ms("soon"), None);
        assert_eq!(ms("10"), None);
    }

    #[test]
    fn fsync_policies() {
        assert_eq!(
            "always".parse::<FsyncPolicy>().unwrap(),
            FsyncPolicy::Always
        );
        assert_eq!("never".parse::<FsyncPolicy>().unwrap(), FsyncPolicy::Never);
        assert_eq!(
            "100ms".parse::<FsyncPolicy>().unwrap(),
            FsyncPolicy::Interval(Duration::from_millis(100))
        );
        assert_eq!(
            "2s".parse::<FsyncPolicy>().unwrap(),
            FsyncPolicy::Interval(Duration::from_secs(2))
        );
        assert!("0ms".parse::<FsyncPolicy>().is_err());
        assert!("sometimes".parse::<FsyncPolicy>().is_err());
    }
}
