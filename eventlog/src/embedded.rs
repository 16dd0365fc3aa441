//! The embedded segment log: no server, one directory per topic partition.
//!
//! ```text
//! <root>/<topic>/topic.json              {"partitions": N, "partitioner": "murmur2"}
//! <root>/<topic>/<partition>/.lock        held by the one writer (flock)
//! <root>/<topic>/<partition>/<base>.log   record batches (see codec), base = first offset
//! <root>/<topic>/<partition>/<base>.index sparse index (see index)
//! <root>/_consumers/<name>.json           committed offsets of a consumer
//! ```
//!
//! One writer per partition across processes (a file lock); readers in any process.
//! A writer opening a partition checks the active segment batch by batch and
//! truncates a torn or corrupt tail. Readers never return a batch whose checksum does
//! not verify; at the tail of the active segment such a batch is taken to be still in
//! flight, anywhere else it is reported as corruption.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::codec::{self, BATCH_HEADER_LEN, DecodeError};
use crate::error::IoContext;
use crate::index::{self, IndexEntry};
use crate::reuse::ReusedBuffers;
use crate::{Error, FsyncPolicy, Log, LogConfig, PartitionReader, Record, Result, StoredRecord};

const TOPIC_META: &str = "topic.json";
const CONSUMERS_DIR: &str = "_consumers";
/// The most bytes one batch of an append takes (unless it is a single record): an
/// append of more is written as several batches, one after the other, so that each
/// partition writer's encoding buffer stays this small. (One buffer the size of the
/// largest append, a few megabytes for each of a processor's output partitions,
/// held 40 MiB of its peak memory at 10 million events.)
const WRITE_BYTES: usize = 256 * 1024;

type WriterMap = HashMap<(String, u32), Arc<Mutex<PartitionWriter>>>;

pub struct EmbeddedLog {
    root: PathBuf,
    config: LogConfig,
    writers: Arc<Mutex<WriterMap>>,
    commit_lock: Mutex<()>,
    /// Creating a topic is check-then-create: one at a time within the process.
    topic_lock: Mutex<()>,
    flusher: Option<(mpsc::Sender<()>, JoinHandle<()>)>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain data behind; carry on.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Topic and consumer names become directory and file names: keep them tame.
pub(crate) fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && !name.starts_with('_')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidName(name.to_owned()))
    }
}

fn segment_name(base: u64, ext: &str) -> String {
    format!("{base:020}.{ext}")
}

/// The base offsets of a partition's segments, ascending.
fn list_segments(dir: &Path) -> Result<Vec<u64>> {
    let mut bases = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(bases),
        Err(e) => return Err(e).io("list", dir),
    };
    for entry in entries {
        let entry = entry.io("list", dir)?;
        let name = entry.file_name();
        if let Some(base) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".log"))
            .and_then(|n| n.parse::<u64>().ok())
        {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).io("sync", dir)
}

/// Writes a small file atomically: temporary name (`<stem>.tmp.<pid>.<n>`, unique
/// to the call, so that two threads writing the same file never share one), fsync,
/// rename, fsync the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    replace_file(path, bytes, true)
}

/// Replaces `path` by `bytes` through a rename, so that a reader sees the old file
/// or the new one, never a part; with `durable`, fsynced before and after the
/// rename, so that the new file also survives a crash of the machine.
fn replace_file(path: &Path, bytes: &[u8], durable: bool) -> Result<()> {
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp.{}.{n}", std::process::id()));
    let mut f = File::create(&tmp).io("create", &tmp)?;
    f.write_all(bytes).io("write", &tmp)?;
    if durable {
        f.sync_all().io("sync", &tmp)?;
    }
    fs::rename(&tmp, path).io("rename", path)?;
    match path.parent() {
        Some(parent) if durable => sync_dir(parent),
        _ => Ok(()),
    }
}

impl EmbeddedLog {
    pub fn open(root: impl Into<PathBuf>, config: LogConfig) -> Result<EmbeddedLog> {
        let root = root.into();
        fs::create_dir_all(&root).io("create directory", &root)?;
        let writers: Arc<Mutex<WriterMap>> = Arc::default();
        let flusher = match config.fsync {
            FsyncPolicy::Interval(every) => {
                let (tx, rx) = mpsc::channel::<()>();
                let weak = Arc::downgrade(&writers);
                let handle = std::thread::Builder::new()
                    .name("eventlog-fsync".into())
                    .spawn(move || {
                        while let Err(RecvTimeoutError::Timeout) = rx.recv_timeout(every) {
                            let Some(writers) = weak.upgrade() else { break };
                            let all: Vec<_> = lock(&writers).values().cloned().collect();
                            for w in all {
                                if let Err(e) = lock(&w).sync() {
                                    tracing::error!(error = %e, "background fsync failed");
                                }
                            }
                        }
                    })
                    .io("start fsync thread", &root)?;
                Some((tx, handle))
            }
            _ => None,
        };
        Ok(EmbeddedLog {
            root,
            config,
            writers,
            commit_lock: Mutex::new(()),
            topic_lock: Mutex::new(()),
            flusher,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn topic_dir(&self, topic: &str) -> PathBuf {
        self.root.join(topic)
    }

    fn partition_dir(&self, topic: &str, partition: u32) -> Result<PathBuf> {
        let count = self
            .partitions(topic)?
            .ok_or_else(|| Error::UnknownTopic(topic.to_owned()))?;
        if partition >= count {
            return Err(Error::UnknownPartition {
                topic: topic.to_owned(),
                partition,
                partitions: count,
            });
        }
        Ok(self.topic_dir(topic).join(partition.to_string()))
    }

    fn writer(&self, topic: &str, partition: u32) -> Result<Arc<Mutex<PartitionWriter>>> {
        let key = (topic.to_owned(), partition);
        if let Some(w) = lock(&self.writers).get(&key) {
            return Ok(w.clone());
        }
        let dir = self.partition_dir(topic, partition)?;
        let w = Arc::new(Mutex::new(PartitionWriter::open(
            dir,
            topic,
            partition,
            &self.config,
        )?));
        Ok(lock(&self.writers).entry(key).or_insert(w).clone())
    }

    fn consumer_file(&self, consumer: &str) -> Result<PathBuf> {
        check_name(consumer)?;
        Ok(self
            .root
            .join(CONSUMERS_DIR)
            .join(format!("{consumer}.json")))
    }

    /// [`Log::commit`] (`durable`) and [`Log::publish`]: the consumer's file, read,
    /// updated and replaced. A publication replaces an unreadable file (which only a
    /// crash of the machine between two unsynced publications can leave) instead of
    /// failing on it: its writers publish everything they own again.
    fn store_offsets(
        &self,
        consumer: &str,
        offsets: &[(&str, u32, u64)],
        durable: bool,
    ) -> Result<()> {
        let path = self.consumer_file(consumer)?;
        let _guard = lock(&self.commit_lock);
        let mut all = match self.read_offsets(&path) {
            Err(Error::Config(e)) if !durable => {
                tracing::warn!(error = %e, "replacing unreadable published positions");
                HashMap::new()
            }
            read => read?,
        };
        for (topic, partition, offset) in offsets {
            all.entry((*topic).to_owned())
                .or_default()
                .insert(*partition, *offset);
        }
        let dir = self.root.join(CONSUMERS_DIR);
        fs::create_dir_all(&dir).io("create directory", &dir)?;
        let bytes = serde_json::to_vec(&all)
            .map_err(|e| Error::Config(format!("cannot encode offsets: {e}")))?;
        replace_file(&path, &bytes, durable)
    }

    fn read_offsets(&self, path: &Path) -> Result<HashMap<String, HashMap<u32, u64>>> {
        match fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                Error::Config(format!(
                    "committed offsets {} are unreadable: {e}",
                    path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(HashMap::new()),
            Err(e) => Err(e).io("read", path),
        }
    }
}

impl Drop for EmbeddedLog {
    fn drop(&mut self) {
        if let Some((tx, handle)) = self.flusher.take() {
            drop(tx);
            let _ = handle.join();
        }
        if self.config.fsync != FsyncPolicy::Never
            && let Err(e) = self.flush()
        {
            tracing::error!(error = %e, "final fsync of the log failed");
        }
    }
}

impl Log for EmbeddedLog {
    type Reader = EmbeddedReader;

    fn ensure_topic(&self, topic: &str, partitions: u32) -> Result<u32> {
        check_name(topic)?;
        if let Some(n) = self.partitions(topic)? {
            return Ok(n);
        }
        let _guard = lock(&self.topic_lock);
        if let Some(n) = self.partitions(topic)? {
            return Ok(n);
        }
        if partitions == 0 {
            return Err(Error::Config(format!("topic {topic}: 0 partitions")));
        }
        let dir = self.topic_dir(topic);
        fs::create_dir_all(&dir).io("create directory", &dir)?;
        for p in 0..partitions {
            let pd = dir.join(p.to_string());
            fs::create_dir_all(&pd).io("create directory", &pd)?;
        }
        let meta = serde_json::json!({
            "partitions": partitions,
            "partitioner": crate::partition::PARTITIONER,
        })
        .to_string();
        write_atomic(&dir.join(TOPIC_META), meta.as_bytes())?;
        sync_dir(&self.root)?;
        Ok(partitions)
    }

    fn partitions(&self, topic: &str) -> Result<Option<u32>> {
        check_name(topic)?;
        let path = self.topic_dir(topic).join(TOPIC_META);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).io("read", &path),
        };
        let v: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Config(format!("{} is unreadable: {e}", path.display())))?;
        let n = v
            .get("partitions")
            .and_then(serde_json::Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| *n > 0)
            .ok_or_else(|| Error::Config(format!("{} has no partition count", path.display())))?;
        // A topic of several partitions created before keys were partitioned as
        // Kafka's clients do (by CRC32C): appending to it would put an org's new
        // records in another partition than its old ones.
        let partitioner = v.get("partitioner").and_then(serde_json::Value::as_str);
        if n > 1 && partitioner != Some(crate::partition::PARTITIONER) {
            return Err(Error::Config(format!(
                "topic {topic} in {} was partitioned by {} (an earlier version of the log), \
                 not by murmur2 as Kafka's clients partition: replay the landing data into a \
                 new log (move {} away, then run producer replay)",
                self.root.display(),
                partitioner.unwrap_or("CRC32C"),
                self.root.display()
            )));
        }
        Ok(Some(n))
    }

    fn topics(&self) -> Result<Vec<(String, u32)>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.root).io("list", &self.root)? {
            let entry = entry.io("list", &self.root)?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if check_name(&name).is_err() {
                continue;
            }
            if let Some(n) = self.partitions(&name)? {
                out.push((name, n));
            }
        }
        out.sort();
        Ok(out)
    }

    fn append(&self, topic: &str, partition: u32, records: &[Record]) -> Result<u64> {
        let w = self.writer(topic, partition)?;
        let mut w = lock(&w);
        w.append(records, &self.config)
    }

    fn end_offset(&self, topic: &str, partition: u32) -> Result<u64> {
        if let Some(w) = lock(&self.writers).get(&(topic.to_owned(), partition)) {
            return Ok(lock(w).next_offset);
        }
        let dir = self.partition_dir(topic, partition)?;
        scan_end(&dir, topic, partition)
    }

    fn reader(&self, topic: &str, partition: u32, from: u64) -> Result<EmbeddedReader> {
        let dir = self.partition_dir(topic, partition)?;
        Ok(EmbeddedReader {
            topic: topic.to_owned(),
            partition,
            dir,
            next_offset: from,
            segment: None,
            buffered: Default::default(),
            buffers: Default::default(),
        })
    }

    fn committed_many(
        &self,
        consumer: &str,
        partitions: &[(&str, u32)],
    ) -> Result<Vec<Option<u64>>> {
        let all = self.read_offsets(&self.consumer_file(consumer)?)?;
        Ok(partitions
            .iter()
            .map(|(topic, p)| all.get(*topic).and_then(|m| m.get(p)).copied())
            .collect())
    }

    fn commit(&self, consumer: &str, offsets: &[(&str, u32, u64)]) -> Result<()> {
        self.store_offsets(consumer, offsets, true)
    }

    fn publish(&self, consumer: &str, offsets: &[(&str, u32, u64)]) -> Result<()> {
        self.store_offsets(consumer, offsets, false)
    }

    fn flush(&self) -> Result<()> {
        let all: Vec<_> = lock(&self.writers).values().cloned().collect();
        for w in all {
            lock(&w).sync()?;
        }
        Ok(())
    }

    fn flush_partitions(&self, partitions: &[(&str, u32)]) -> Result<()> {
        // Only partitions written through this log have unsynced data.
        let some: Vec<_> = {
            let writers = lock(&self.writers);
            partitions
                .iter()
                .filter_map(|(t, p)| writers.get(&((*t).to_owned(), *p)).cloned())
                .collect()
        };
        for w in some {
            lock(&w).sync()?;
        }
        Ok(())
    }

    fn truncate(&self, topic: &str, partition: u32, end: u64) -> Result<()> {
        let w = self.writer(topic, partition)?;
        let mut w = lock(&w);
        w.truncate(end, &self.config)
    }
}

/// How long a writer waits for a partition lock another holder is releasing.
const LOCK_GRACE: Duration = Duration::from_millis(500);

/// Takes the file's exclusive lock, waiting up to [`LOCK_GRACE`] for it. A flock
/// belongs to the open file description, and a child process forked by any thread
/// of this process shares that description until it execs: a writer closed and
/// reopened in the same process can find its own old lock still held for that
/// moment. A second writer still gets its clear error, half a second later.
pub fn try_lock_with_grace(file: &File) -> std::io::Result<bool> {
    let deadline = Instant::now() + LOCK_GRACE;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(true),
            Err(fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(fs::TryLockError::WouldBlock) => return Ok(false),
            Err(fs::TryLockError::Error(e)) => return Err(e),
        }
    }
}

/// The one writer of a partition.
struct PartitionWriter {
    topic: String,
    partition: u32,
    dir: PathBuf,
    _lock: File,
    segment_base: u64,
    log: File,
    index: File,
    size: u64,
    next_offset: u64,
    last_index_position: Option<u64>,
    dirty: bool,
    buf: Vec<u8>,
    /// [`LogConfig::cache_behind`].
    cache_behind: Option<u64>,
    /// Where the current segment's pages may still be cached: everything before
    /// was dropped from the page cache.
    cached_from: u64,
}

/// The segment's log file, for appending (and reading back during recovery).
fn open_segment_log(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(path)
        .io("open", path)
}

/// The segment's index file, emptied: the writer (re)builds it.
fn create_index(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(path)
        .io("open", path)
}

impl PartitionWriter {
    fn open(dir: PathBuf, topic: &str, partition: u32, config: &LogConfig) -> Result<Self> {
        fs::create_dir_all(&dir).io("create directory", &dir)?;
        let lock_path = dir.join(".lock");
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .io("open", &lock_path)?;
        if !try_lock_with_grace(&lock_file).io("lock", &lock_path)? {
            return Err(Error::Locked {
                topic: topic.to_owned(),
                partition,
                lock: lock_path,
            });
        }
        let bases = list_segments(&dir)?;
        let base = bases.last().copied().unwrap_or(0);
        let log_path = dir.join(segment_name(base, "log"));
        let log = open_segment_log(&log_path)?;
        let recovered = recover_segment(&log, &log_path, base, topic, partition, config)?;
        let index_path = dir.join(segment_name(base, "index"));
        let mut index = create_index(&index_path)?;
        let bytes: Vec<u8> = recovered
            .index
            .iter()
            .flat_map(|e| index::encode_entry(*e))
            .collect();
        index.write_all(&bytes).io("write", &index_path)?;
        if bases.is_empty() {
            sync_dir(&dir)?;
        }
        Ok(PartitionWriter {
            topic: topic.to_owned(),
            partition,
            dir,
            _lock: lock_file,
            segment_base: base,
            log,
            index,
            size: recovered.valid_len,
            next_offset: recovered.next_offset,
            last_index_position: recovered.index.last().map(|e| e.position),
            dirty: false,
            buf: Vec::new(),
            cache_behind: config.cache_behind,
            cached_from: 0,
        })
    }

    fn roll(&mut self, config: &LogConfig) -> Result<()> {
        self.sync()?;
        // Synced whole: none of it needs to stay cached for this writer.
        self.drop_cached(None);
        self.cached_from = 0;
        let base = self.next_offset;
        self.log = open_segment_log(&self.dir.join(segment_name(base, "log")))?;
        self.index = create_index(&self.dir.join(segment_name(base, "index")))?;
        if config.fsync != FsyncPolicy::Never {
            sync_dir(&self.dir)?;
        }
        self.segment_base = base;
        self.size = 0;
        self.last_index_position = None;
        Ok(())
    }

    fn append(&mut self, records: &[Record], config: &LogConfig) -> Result<u64> {
        let base = self.next_offset;
        if records.is_empty() {
            return Ok(base);
        }
        if self.size >= config.segment_bytes {
            self.roll(config)?;
        }
        // Batches of at most WRITE_BYTES, each written as soon as it is encoded, so
        // the writer's buffer stays that small however large an append is.
        let start_size = self.size;
        let (mut index_entries, mut last_indexed) = (Vec::new(), self.last_index_position);
        let mut rest = records;
        while !rest.is_empty() {
            let (n, bytes) = codec::batch_prefix(rest, WRITE_BYTES);
            if let Err(e) = self.write_batch(&rest[..n], bytes) {
                // All or nothing, and no partial batch left behind (a full disk, say):
                // cut back to where this append began, so the partition stays
                // appendable once space returns.
                if let Err(e2) = self.log.set_len(start_size) {
                    tracing::error!(error = %e2, "could not cut back a failed append; the next open will");
                }
                (self.size, self.next_offset) = (start_size, base);
                return Err(e);
            }
            let position = self.size;
            if last_indexed.is_none_or(|p| position - p >= config.index_interval_bytes) {
                index_entries.push(IndexEntry {
                    relative_offset: (self.next_offset - self.segment_base) as u32,
                    position,
                });
                last_indexed = Some(position);
            }
            self.size += self.buf.len() as u64;
            self.next_offset += n as u64;
            rest = &rest[n..];
        }
        self.dirty = true;
        for entry in index_entries {
            // The index is a hint rebuilt on open: a failed write costs only speed.
            if self.index.write_all(&index::encode_entry(entry)).is_err() {
                break;
            }
            self.last_index_position = Some(entry.position);
        }
        if config.fsync == FsyncPolicy::Always {
            self.sync()?;
        }
        Ok(base)
    }

    /// Writes `records`, `bytes` long as a batch, at the end of the segment.
    fn write_batch(&mut self, records: &[Record], bytes: usize) -> Result<()> {
        if bytes > codec::MAX_BATCH_BYTES {
            return Err(Error::Config(format!(
                "batch of {bytes} bytes exceeds the {} byte limit",
                codec::MAX_BATCH_BYTES
            )));
        }
        self.buf.clear();
        self.buf.reserve(bytes);
        codec::encode_batch(self.next_offset, records, &mut self.buf);
        let log_path = self.dir.join(segment_name(self.segment_base, "log"));
        self.log.write_all(&self.buf).io("append to", log_path)
    }

    fn truncate(&mut self, end: u64, config: &LogConfig) -> Result<()> {
        if end == self.next_offset {
            return Ok(());
        }
        if end > self.next_offset {
            return Err(Error::Config(format!(
                "cannot truncate {}/{} to {end}: it ends at {}",
                self.topic, self.partition, self.next_offset
            )));
        }
        let bases = list_segments(&self.dir)?;
        let keep = bases
            .iter()
            .copied()
            .filter(|b| *b <= end)
            .max()
            .unwrap_or(0);
        // Find the byte where offset `end` starts in the segment that holds it.
        let log_path = self.dir.join(segment_name(keep, "log"));
        let file = open_segment_log(&log_path)?;
        let len = file.metadata().io("stat", &log_path)?.len();
        let mut bytes = vec![0u8; len as usize];
        file.read_exact_at(&mut bytes, 0).io("read", &log_path)?;
        let mut pos = 0usize;
        let mut next = keep;
        let mut entries: Vec<IndexEntry> = Vec::new();
        while next < end {
            let (h, count) = codec::verify_batch(&bytes[pos..]).map_err(|_| {
                Error::Config(format!(
                    "cannot truncate {}/{} to {end}: unreadable batch at byte {pos}",
                    self.topic, self.partition
                ))
            })?;
            if entries
                .last()
                .is_none_or(|e| (pos as u64) - e.position >= config.index_interval_bytes)
            {
                entries.push(IndexEntry {
                    relative_offset: (next - keep) as u32,
                    position: pos as u64,
                });
            }
            next = h.base_offset + u64::from(count);
            pos += h.total_len;
        }
        if next != end {
            return Err(Error::Config(format!(
                "cannot truncate {}/{} to {end}: not a batch boundary",
                self.topic, self.partition
            )));
        }
        for base in bases.iter().copied().filter(|b| *b > keep) {
            for ext in ["log", "index"] {
                let p = self.dir.join(segment_name(base, ext));
                match fs::remove_file(&p) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e).io("remove", p),
                }
            }
        }
        file.set_len(pos as u64).io("truncate", &log_path)?;
        file.sync_all().io("fsync", &log_path)?;
        let index_path = self.dir.join(segment_name(keep, "index"));
        let mut index = create_index(&index_path)?;
        let encoded: Vec<u8> = entries
            .iter()
            .flat_map(|e| index::encode_entry(*e))
            .collect();
        index.write_all(&encoded).io("write", &index_path)?;
        sync_dir(&self.dir)?;
        tracing::info!(
            topic = %self.topic,
            partition = self.partition,
            from = end,
            to = self.next_offset,
            "truncated uncommitted records"
        );
        self.log = file;
        self.index = index;
        self.segment_base = keep;
        self.size = pos as u64;
        self.next_offset = end;
        self.last_index_position = entries.last().map(|e| e.position);
        self.dirty = false;
        // Read whole just now, perhaps another segment than before: all cached.
        self.cached_from = 0;
        Ok(())
    }

    fn sync(&mut self) -> Result<()> {
        if self.dirty {
            let path = self.dir.join(segment_name(self.segment_base, "log"));
            self.log.sync_data().io("fsync", path)?;
            self.dirty = false;
        }
        if let Some(keep) = self.cache_behind {
            self.drop_cached(Some(self.size.saturating_sub(keep)));
        }
        Ok(())
    }

    /// Drops the current segment's pages before `to` (all of them: `None`) from
    /// the page cache, when [`LogConfig::cache_behind`] asks for it; called only
    /// on synced data (the kernel would only start writing back dirty pages, not
    /// drop them). Readers read those bytes from disk again. A hint: a failure
    /// costs only memory.
    fn drop_cached(&mut self, to: Option<u64>) {
        let end = to.unwrap_or(self.size);
        if self.cache_behind.is_none() || end <= self.cached_from {
            return;
        }
        // The kernel drops only the pages, and the folios (ext4's may be several
        // pages, naturally aligned, up to 2 MiB), wholly inside the range: it starts
        // where the folio that held the last range's end may begin, and `None` runs
        // to the end of the file, the last, partly written page too.
        const FOLIO_MAX: u64 = 2 * 1024 * 1024;
        let from = self.cached_from / FOLIO_MAX * FOLIO_MAX;
        let len = to.and_then(|to| std::num::NonZeroU64::new(to - from));
        if let Err(e) = rustix::fs::fadvise(&self.log, from, len, rustix::fs::Advice::DontNeed) {
            tracing::debug!(error = %e, topic = %self.topic, partition = self.partition, "could not drop written pages from the page cache");
        }
        self.cached_from = end;
    }
}

impl std::fmt::Debug for PartitionWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PartitionWriter({}/{})", self.topic, self.partition)
    }
}

struct Recovered {
    valid_len: u64,
    next_offset: u64,
    index: Vec<IndexEntry>,
}

/// Checks every batch of the active segment; truncates a torn or corrupt tail.
fn recover_segment(
    file: &File,
    path: &Path,
    base: u64,
    topic: &str,
    partition: u32,
    config: &LogConfig,
) -> Result<Recovered> {
    let len = file.metadata().io("stat", path)?.len();
    let mut bytes = vec![0u8; len as usize];
    file.read_exact_at(&mut bytes, 0).io("read", path)?;
    let mut pos = 0usize;
    let mut next = base;
    let mut entries: Vec<IndexEntry> = Vec::new();
    let mut problem = None;
    while pos < bytes.len() {
        match codec::verify_batch(&bytes[pos..]) {
            Ok((h, count)) if h.base_offset == next => {
                let due = entries
                    .last()
                    .is_none_or(|e| (pos as u64) - e.position >= config.index_interval_bytes);
                if due {
                    entries.push(IndexEntry {
                        relative_offset: (next - base) as u32,
                        position: pos as u64,
                    });
                }
                next += u64::from(count);
                pos += h.total_len;
            }
            Ok(_) => {
                problem = Some("batch out of sequence");
                break;
            }
            Err(DecodeError::Incomplete) => {
                problem = Some("torn batch");
                break;
            }
            Err(DecodeError::Corrupt(why)) => {
                // Damage followed by an intact batch is not a torn tail: cutting there
                // would throw away acknowledged records, so refuse and report it.
                if let Ok(h) = codec::decode_header(&bytes[pos..])
                    && intact_batch_at(file, (pos + h.total_len) as u64, len)
                {
                    return Err(Error::Corrupt {
                        topic: topic.to_owned(),
                        partition,
                        from_offset: next,
                        to_offset: h.base_offset.max(next + 1),
                        segment: path.to_owned(),
                        position: pos as u64,
                        detail: why,
                    });
                }
                problem = Some(why);
                break;
            }
        }
    }
    if let Some(why) = problem {
        let dropped = len - pos as u64;
        tracing::warn!(
            topic,
            partition,
            segment = %path.display(),
            valid_bytes = pos,
            dropped_bytes = dropped,
            next_offset = next,
            "truncating the log's tail: {why}; dropped {dropped} bytes"
        );
        file.set_len(pos as u64).io("truncate", path)?;
        file.sync_all().io("fsync", path)?;
    }
    Ok(Recovered {
        valid_len: pos as u64,
        next_offset: next,
        index: entries,
    })
}

/// The end offset of a partition read from disk (no writer in this process).
fn scan_end(dir: &Path, topic: &str, partition: u32) -> Result<u64> {
    let bases = list_segments(dir)?;
    let Some(&base) = bases.last() else {
        return Ok(0);
    };
    let mut reader = EmbeddedReader {
        topic: topic.to_owned(),
        partition,
        dir: dir.to_owned(),
        next_offset: base,
        segment: None,
        buffered: Default::default(),
        buffers: Default::default(),
    };
    // Start from the segment's last index entry and walk the headers to the end.
    reader.open_segment(base, u64::MAX)?;
    loop {
        match reader.next_batch_header()? {
            Some((h, count)) => {
                reader.next_offset = h.base_offset + u64::from(count);
                if let Some(seg) = reader.segment.as_mut() {
                    seg.position += h.total_len as u64;
                }
            }
            None => return Ok(reader.next_offset),
        }
    }
}

/// The buffers a reader reads batches into, each reused once every record of the
/// batch it held has been dropped ([`ReusedBuffers`]). Batches are about a megabyte,
/// over the allocator's "huge" size: allocated afresh for each one, they were memory
/// the kernel faulted in and zeroed (7% of the compactor's CPU samples at 1M events).
/// A buffer is zeroed before each read (safe code cannot read into uninitialized
/// memory), which costs far less than the page faults it replaces.
struct BatchBuffers {
    kept: ReusedBuffers,
}

impl Default for BatchBuffers {
    fn default() -> Self {
        BatchBuffers {
            kept: ReusedBuffers::new(Self::KEPT),
        }
    }
}

impl BatchBuffers {
    const KEPT: usize = 4;
    /// The least a new buffer holds, so that small batches reuse one too.
    const MIN_BYTES: usize = 64 * 1024;

    /// The `len` bytes at `position` of `file`.
    fn read_at(&mut self, file: &File, position: u64, len: usize) -> std::io::Result<Bytes> {
        // Rounded up, so that the next batches, seldom of the same size, fit.
        let mut buf = self
            .kept
            .take(len, len.max(Self::MIN_BYTES).next_power_of_two());
        buf.resize(len, 0);
        file.read_exact_at(&mut buf, position)?;
        let batch = buf.split_to(len).freeze();
        self.kept.keep(buf);
        Ok(batch)
    }
}

fn intact_batch_at(file: &File, position: u64, file_len: u64) -> bool {
    let mut head = [0u8; BATCH_HEADER_LEN];
    if position + BATCH_HEADER_LEN as u64 > file_len
        || file.read_exact_at(&mut head, position).is_err()
    {
        return false;
    }
    let Ok(h) = codec::decode_header(&head) else {
        return false;
    };
    if position + h.total_len as u64 > file_len {
        return false;
    }
    let mut buf = vec![0u8; h.total_len];
    file.read_exact_at(&mut buf, position).is_ok() && codec::verify_batch(&buf).is_ok()
}

struct OpenSegment {
    base: u64,
    path: PathBuf,
    file: File,
    position: u64,
}

/// Reads a partition of the embedded log, from any process.
pub struct EmbeddedReader {
    topic: String,
    partition: u32,
    dir: PathBuf,
    /// The next offset to read from disk.
    next_offset: u64,
    segment: Option<OpenSegment>,
    /// Records of the last batch read that `poll`'s `max` left over.
    buffered: std::collections::VecDeque<StoredRecord>,
    buffers: BatchBuffers,
}

enum Step {
    /// A whole, verified batch at the current position, with its record count.
    Batch(Bytes, codec::BatchHeader, u32),
    /// Nothing more here yet.
    End,
}

impl EmbeddedReader {
    fn corrupt(&self, seg: &OpenSegment, to_offset: u64, detail: &'static str) -> Error {
        Error::Corrupt {
            topic: self.topic.clone(),
            partition: self.partition,
            from_offset: self.next_offset,
            to_offset,
            segment: seg.path.clone(),
            position: seg.position,
            detail,
        }
    }

    /// Opens segment `base` positioned at the last indexed batch at or before
    /// `target` (checked against the log itself, else the segment's start).
    fn open_segment(&mut self, base: u64, target: u64) -> Result<()> {
        let path = self.dir.join(segment_name(base, "log"));
        let file = File::open(&path).io("open", &path)?;
        let index_path = self.dir.join(segment_name(base, "index"));
        let entries = fs::read(&index_path)
            .map(|b| index::decode_index(&b))
            .unwrap_or_default();
        let rel = u32::try_from(target.saturating_sub(base)).unwrap_or(u32::MAX);
        let mut position = 0;
        if let Some(e) = index::lookup(&entries, rel) {
            let mut head = [0u8; BATCH_HEADER_LEN];
            if file.read_exact_at(&mut head, e.position).is_ok()
                && codec::decode_header(&head)
                    .is_ok_and(|h| h.base_offset == base + u64::from(e.relative_offset))
            {
                position = e.position;
            }
        }
        self.segment = Some(OpenSegment {
            base,
            path,
            file,
            position,
        });
        Ok(())
    }

    /// Makes sure the segment holding `next_offset` is open.
    fn ensure_segment(&mut self) -> Result<bool> {
        if self.segment.is_some() {
            return Ok(true);
        }
        let bases = list_segments(&self.dir)?;
        let idx = bases.partition_point(|b| *b <= self.next_offset);
        let Some(&base) = idx
            .checked_sub(1)
            .and_then(|i| bases.get(i))
            .or(bases.first())
        else {
            return Ok(false);
        };
        self.open_segment(base, self.next_offset)?;
        Ok(true)
    }

    /// The base of the segment after the open one, if it exists yet.
    fn following_segment(&self) -> Result<Option<u64>> {
        let Some(seg) = &self.segment else {
            return Ok(None);
        };
        Ok(list_segments(&self.dir)?
            .into_iter()
            .find(|b| *b > seg.base))
    }

    /// Reads the batch at the current position, moving to the next segment when this
    /// one is finished. Verifies the checksum.
    fn step(&mut self) -> Result<Step> {
        loop {
            if !self.ensure_segment()? {
                return Ok(Step::End);
            }
            let Some(seg) = self.segment.as_ref() else {
                return Ok(Step::End);
            };
            let len = seg.file.metadata().io("stat", &seg.path)?.len();
            let remaining = len.saturating_sub(seg.position);
            let incomplete_or_torn = |this: &Self, seg: &OpenSegment| -> Result<Option<Step>> {
                match this.following_segment()? {
                    // A later segment exists, so this one is sealed: its tail is whole.
                    Some(next) if remaining == 0 && next == this.next_offset => Ok(None),
                    Some(next) if remaining == 0 => {
                        Err(this.corrupt(seg, next, "gap between segments"))
                    }
                    Some(next) => Err(this.corrupt(seg, next, "torn batch in a sealed segment")),
                    None => Ok(Some(Step::End)),
                }
            };
            let mut head = [0u8; BATCH_HEADER_LEN];
            if remaining < BATCH_HEADER_LEN as u64 {
                match incomplete_or_torn(self, seg)? {
                    Some(step) => return Ok(step),
                    None => {
                        self.segment = None;
                        continue;
                    }
                }
            }
            seg.file
                .read_exact_at(&mut head, seg.position)
                .io("read", &seg.path)?;
            let header = match codec::decode_header(&head) {
                Ok(h) => h,
                Err(_) if self.following_segment()?.is_none() => {
                    // Garbage where the active segment's last batch should start: a
                    // torn write for the writer's recovery to cut, not data to read.
                    return Ok(Step::End);
                }
                Err(_) => {
                    return Err(self.corrupt(seg, self.next_offset + 1, "unreadable batch header"));
                }
            };
            if (header.total_len as u64) > remaining {
                match incomplete_or_torn(self, seg)? {
                    Some(step) => return Ok(step),
                    None => return Err(self.corrupt(seg, self.next_offset + 1, "torn batch")),
                }
            }
            let buf = self
                .buffers
                .read_at(&seg.file, seg.position, header.total_len)
                .io("read", &seg.path)?;
            match codec::verify_batch(&buf) {
                Ok((header, count)) => return Ok(Step::Batch(buf, header, count)),
                Err(_) => {
                    // In the active segment a bad batch is the tail (torn, or still
                    // being written) unless an intact batch follows it: only then is
                    // it damage in the middle, which must not be skipped silently.
                    let next_pos = seg.position + header.total_len as u64;
                    if self.following_segment()?.is_none()
                        && !intact_batch_at(&seg.file, next_pos, len)
                    {
                        return Ok(Step::End);
                    }
                    let to = header.base_offset.max(self.next_offset + 1);
                    return Err(self.corrupt(seg, to, "checksum mismatch"));
                }
            }
        }
    }

    fn next_batch_header(&mut self) -> Result<Option<(codec::BatchHeader, u32)>> {
        match self.step()? {
            Step::End => Ok(None),
            Step::Batch(_, header, count) => Ok(Some((header, count))),
        }
    }

    fn has_more(&self) -> Result<bool> {
        if !self.buffered.is_empty() {
            return Ok(true);
        }
        match &self.segment {
            Some(seg) => {
                let len = seg.file.metadata().io("stat", &seg.path)?.len();
                Ok(len > seg.position || self.following_segment()?.is_some())
            }
            None => Ok(list_segments(&self.dir)?.last().is_some()),
        }
    }
}

impl PartitionReader for EmbeddedReader {
    fn poll(&mut self, max: usize) -> Result<Vec<StoredRecord>> {
        let mut out = Vec::new();
        self.poll_into(max, &mut out)?;
        Ok(out)
    }

    fn poll_into(&mut self, max: usize, out: &mut Vec<StoredRecord>) -> Result<()> {
        let max = out.len().saturating_add(max.max(1));
        while out.len() < max {
            if let Some(r) = self.buffered.pop_front() {
                out.push(r);
                continue;
            }
            let (buf, header, count) = match self.step()? {
                Step::End => break,
                Step::Batch(buf, header, count) => (buf, header, count),
            };
            let (header, records) = match codec::decode_records(buf, header, count) {
                Ok(x) => x,
                Err(e) => {
                    let detail = match e {
                        DecodeError::Corrupt(d) => d,
                        DecodeError::Incomplete => "incomplete batch",
                    };
                    let seg = self
                        .segment
                        .as_ref()
                        .ok_or_else(|| Error::Config("no segment".into()))?;
                    return Err(self.corrupt(seg, self.next_offset + 1, detail));
                }
            };
            let end = header.base_offset + records.len() as u64;
            if header.base_offset > self.next_offset {
                let seg = self
                    .segment
                    .as_ref()
                    .ok_or_else(|| Error::Config("no segment".into()))?;
                return Err(self.corrupt(seg, header.base_offset, "offsets missing"));
            }
            out.reserve(records.len().min(max - out.len()));
            for (offset, record) in records {
                if offset >= self.next_offset {
                    let r = StoredRecord { offset, record };
                    if out.len() < max {
                        out.push(r);
                    } else {
                        self.buffered.push_back(r);
                    }
                }
            }
            self.next_offset = self.next_offset.max(end);
            if let Some(seg) = self.segment.as_mut() {
                seg.position += header.total_len as u64;
            }
        }
        Ok(())
    }

    fn wait(&mut self, timeout: Duration) -> Result<bool> {
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_millis(1);
        loop {
            if self.has_more()? {
                return Ok(true);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            std::thread::sleep(pause.min(deadline - now));
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    fn position(&self) -> u64 {
        self.buffered.front().map_or(self.next_offset, |r| r.offset)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::{FsyncPolicy, Log, LogConfig, Record};

    fn unsynced(log: &EmbeddedLog, topic: &str, partition: u32) -> bool {
        let w = lock(&log.writers)
            .get(&(topic.to_owned(), partition))
            .cloned()
            .unwrap();
        lock(&w).dirty
    }

    /// Bytes of `path` in the page cache, by util-linux's `fincore` (mincore(2)).
    fn cached_bytes(path: &Path) -> u64 {
        let out = std::process::Command::new("fincore")
            .args(["--bytes", "--noheadings", "--output", "RES"])
            .arg(path)
            .output()
            .expect("fincore (util-linux) runs");
        assert!(out.status.success(), "fincore {}", path.display());
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    }

    #[test]
    fn a_writer_drops_synced_pages_behind_what_it_keeps_cached() {
        const KEEP: u64 = 64 * 1024;
        let run = |cache_behind: Option<u64>| {
            let dir = tempfile::tempdir().unwrap();
            let config = LogConfig {
                // Synced only when asked: what is dirty cannot be dropped.
                fsync: FsyncPolicy::Interval(Duration::from_secs(3600)),
                segment_bytes: 1024 * 1024,
                cache_behind,
                ..LogConfig::default()
            };
            let log = EmbeddedLog::open(dir.path(), config).unwrap();
            log.ensure_topic("t", 1).unwrap();
            let value = |i: u32| format!("{i:06}{}", "x".repeat(1018)).into_bytes();
            let append = |from: u32, to: u32| {
                let records: Vec<Record> = (from..to)
                    .map(|i| Record::new(None::<Vec<u8>>, value(i)))
                    .collect();
                log.append("t", 0, &records).unwrap();
            };
            let first = dir.path().join("t/0").join(segment_name(0, "log"));
            append(0, 600);
            let len = std::fs::metadata(&first).unwrap().len();
            assert!(len > 600 * 1024);
            let before = cached_bytes(&first);
            log.flush().unwrap();
            let after_sync = cached_bytes(&first);
            // Past the segment's size: the append after it rolls to a second segment.
            append(600, 1100);
            append(1100, 1101);
            log.flush().unwrap();
            let after_roll = cached_bytes(&first);
            // Dropped pages are read back from disk, the same records.
            let mut r = log.reader("t", 0, 0).unwrap();
            let mut out = Vec::new();
            while out.len() < 1101 {
                r.poll_into(1101, &mut out).unwrap();
            }
            for (i, s) in out.iter().enumerate() {
                assert_eq!(s.offset, i as u64);
                assert_eq!(s.record.value, value(i as u32));
            }
            (len, before, after_sync, after_roll)
        };
        let (len, before, after_sync, after_roll) = run(Some(KEEP));
        assert_eq!(
            before,
            len.next_multiple_of(4096),
            "all cached while unsynced"
        );
        // The kernel drops whole folios (ext4's may be several pages) inside the range.
        assert!(
            after_sync <= KEEP + 128 * 1024,
            "{after_sync} of {len} bytes still cached after the sync"
        );
        assert!(after_sync >= KEEP - 4096, "the newest {KEEP} bytes stay");
        assert_eq!(after_roll, 0, "a rolled segment is dropped whole");
        // Without the setting, the kernel keeps them all.
        let (len, _, after_sync, after_roll) = run(None);
        assert_eq!(after_sync, len.next_multiple_of(4096));
        assert!(after_roll > len);
    }

    #[test]
    fn a_batch_buffer_is_reused_only_once_its_records_are_dropped() {
        // (Small batches share one buffer, each in the room the last one left.)
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(dir.path(), LogConfig::default()).unwrap();
        log.ensure_topic("t", 1).unwrap();
        // Batches of about 100 KB: each fills most of its own buffer.
        let line = |b: u32, i: u32| format!("{b}-{i}-{}", "x".repeat(1000)).into_bytes();
        for b in 0..4u32 {
            let records: Vec<Record> = (0..100u32)
                .map(|i| Record::new(None::<Vec<u8>>, line(b, i)))
                .collect();
            log.append("t", 0, &records).unwrap();
        }
        let mut r = log.reader("t", 0, 0).unwrap();
        let mut out = Vec::new();
        let value = |out: &Vec<StoredRecord>, i: usize| {
            let v = &out[i].record.value;
            let end = v.iter().rposition(|&c| c == b'-').unwrap();
            assert!(v[end + 1..].iter().all(|&c| c == b'x'), "record {i} intact");
            v[..end].to_vec()
        };
        // The first batch's records still held: the second gets another buffer and
        // leaves the first batch's values as they were.
        r.poll_into(100, &mut out).unwrap();
        r.poll_into(100, &mut out).unwrap();
        assert_eq!(r.buffers.kept.len(), 2);
        assert_eq!(value(&out, 0), b"0-0");
        assert_eq!(value(&out, 99), b"0-99");
        assert_eq!(value(&out, 100), b"1-0");
        assert_eq!(value(&out, 199), b"1-99");
        // Every record dropped: the third batch goes into a buffer already there.
        out.clear();
        r.poll_into(100, &mut out).unwrap();
        assert_eq!(r.buffers.kept.len(), 2);
        assert_eq!(value(&out, 0), b"2-0");
        // One value of it kept: the fourth batch leaves that buffer alone.
        let kept = out[5].record.value.clone();
        out.clear();
        r.poll_into(100, &mut out).unwrap();
        assert_eq!(value(&out, 0), b"3-0");
        assert_eq!(value(&out, 99), b"3-99");
        assert_eq!(&kept[..], &line(2, 5)[..]);
        assert_eq!(r.buffers.kept.len(), 2);
    }

    #[test]
    fn flushing_some_partitions_syncs_those_and_leaves_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            fsync: FsyncPolicy::Never,
            ..LogConfig::default()
        };
        let log = EmbeddedLog::open(dir.path(), config).unwrap();
        log.ensure_topic("t", 3).unwrap();
        for p in 0..3 {
            log.append("t", p, &[Record::new(None::<Vec<u8>>, b"x".to_vec())])
                .unwrap();
        }
        // A partition never written here has nothing to sync; one of an unknown topic
        // neither.
        log.flush_partitions(&[("t", 0), ("t", 2), ("other", 7)])
            .unwrap();
        assert!(!unsynced(&log, "t", 0));
        assert!(unsynced(&log, "t", 1), "another writer's partition is left");
        assert!(!unsynced(&log, "t", 2));
        log.flush().unwrap();
        assert!(!unsynced(&log, "t", 1));
    }

    #[test]
    fn a_publication_is_read_back_like_a_commit_and_replaces_an_unreadable_file() {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(dir.path(), LogConfig::default()).unwrap();
        log.commit("c", &[("t", 0, 5)]).unwrap();
        log.publish("c", &[("t", 1, 7)]).unwrap();
        assert_eq!(log.committed("c", "t", 0).unwrap(), Some(5), "merged");
        assert_eq!(
            log.committed_many("c", &[("t", 1), ("u", 0), ("t", 0)])
                .unwrap(),
            [Some(7), None, Some(5)]
        );
        assert_eq!(log.committed("c", "t", 1).unwrap(), Some(7));
        // What a crash of the machine between two unsynced publications may leave.
        let file = log.consumer_file("c").unwrap();
        std::fs::write(&file, b"").unwrap();
        assert!(log.committed("c", "t", 1).is_err(), "readers are told");
        assert!(log.commit("c", &[("t", 0, 6)]).is_err(), "a commit is not");
        log.publish("c", &[("t", 1, 8)]).unwrap();
        assert_eq!(log.committed("c", "t", 1).unwrap(), Some(8));
        assert_eq!(
            log.committed("c", "t", 0).unwrap(),
            None,
            "published again by its writer"
        );
        let leftovers = std::fs::read_dir(file.parent().unwrap()).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary file is left");
    }

    fn read_values(log: &EmbeddedLog, topic: &str, partition: u32) -> Vec<(u64, Bytes)> {
        let mut r = log.reader(topic, partition, 0).unwrap();
        let mut out = Vec::new();
        loop {
            let polled = r.poll(1000).unwrap();
            if polled.is_empty() {
                return out;
            }
            out.extend(polled.into_iter().map(|s| (s.offset, s.record.value)));
        }
    }

    #[test]
    fn a_large_append_is_written_as_batches_of_at_most_write_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(dir.path(), LogConfig::default()).unwrap();
        log.ensure_topic("t", 1).unwrap();
        log.append("t", 0, &[Record::new(None::<Vec<u8>>, b"first".to_vec())])
            .unwrap();
        // About a megabyte of records, one of them larger than a batch on its own.
        let value = |i: usize| format!("{i:04}-{}", "x".repeat(1000)).into_bytes();
        let mut values: Vec<Vec<u8>> = (0..1000).map(value).collect();
        values.insert(500, vec![b'y'; WRITE_BYTES + 1]);
        let records: Vec<Record> = values
            .iter()
            .map(|v| Record::new(Some(b"k".to_vec()), v.clone()))
            .collect();
        assert_eq!(
            log.append("t", 0, &records).unwrap(),
            1,
            "one append, one base"
        );
        assert_eq!(log.end_offset("t", 0).unwrap(), 1002);

        // On disk: batches that follow each other, each at most WRITE_BYTES unless it
        // holds a single record.
        let part = dir.path().join("t").join("0");
        let bytes = fs::read(part.join(segment_name(0, "log"))).unwrap();
        let (mut pos, mut next, mut sizes) = (0, 0, Vec::new());
        while pos < bytes.len() {
            let (h, records) = codec::decode_batch(&bytes[pos..]).unwrap();
            assert_eq!(h.base_offset, next);
            assert!(h.total_len <= WRITE_BYTES || records.len() == 1);
            next += records.len() as u64;
            pos += h.total_len;
            sizes.push(records.len());
        }
        assert_eq!(next, 1002);
        assert!(
            sizes.len() >= 6,
            "the append took several batches: {sizes:?}"
        );
        assert!(sizes.contains(&1), "the large record is a batch of its own");

        // Read back whole and in order, from this writer and after a reopen; the
        // index points only at batch starts.
        let mut expected = vec![(0, Bytes::from_static(b"first"))];
        expected.extend((1..).zip(values.into_iter().map(Bytes::from)));
        assert_eq!(read_values(&log, "t", 0), expected);
        drop(log);
        let index = index::decode_index(&fs::read(part.join(segment_name(0, "index"))).unwrap());
        assert!(index.len() > 1);
        for e in index {
            let h = codec::decode_header(&bytes[e.position as usize..]).unwrap();
            assert_eq!(h.base_offset, u64::from(e.relative_offset));
        }
        let log = EmbeddedLog::open(dir.path(), LogConfig::default()).unwrap();
        assert_eq!(log.end_offset("t", 0).unwrap(), 1002);
        assert_eq!(read_values(&log, "t", 0), expected);
    }

    #[test]
    fn an_append_that_fails_part_way_leaves_none_of_its_records() {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(dir.path(), LogConfig::default()).unwrap();
        log.ensure_topic("t", 1).unwrap();
        let small = |v: &str| Record::new(None::<Vec<u8>>, v.as_bytes().to_vec());
        log.append("t", 0, &[small("before")]).unwrap();
        let segment = dir.path().join("t").join("0").join(segment_name(0, "log"));
        let len_before = fs::metadata(&segment).unwrap().len();
        // Several batches' worth of records, then one too large for any batch (its
        // zeroed memory is never touched: the size is checked before it is encoded).
        let mut records: Vec<Record> = (0..1000)
            .map(|i| small(&format!("{i}-{}", "x".repeat(1000))))
            .collect();
        records.push(Record::new(
            None::<Vec<u8>>,
            vec![0u8; codec::MAX_BATCH_BYTES],
        ));
        let err = log.append("t", 0, &records).unwrap_err().to_string();
        assert!(err.contains("exceeds"), "{err}");
        // The batches already written are cut back: the partition is as it was, and
        // the next append takes the next offset.
        assert_eq!(fs::metadata(&segment).unwrap().len(), len_before);
        assert_eq!(log.end_offset("t", 0).unwrap(), 1);
        assert_eq!(log.append("t", 0, &[small("after")]).unwrap(), 1);
        let expected = vec![
            (0, Bytes::from_static(b"before")),
            (1, Bytes::from_static(b"after")),
        ];
        assert_eq!(read_values(&log, "t", 0), expected);
        drop(log);
        let log = EmbeddedLog::open(dir.path(), LogConfig::default()).unwrap();
        assert_eq!(read_values(&log, "t", 0), expected);
    }
}
