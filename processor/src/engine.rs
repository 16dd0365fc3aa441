//! The processing loop: master data, then events partition by partition; windows on
//! the watermark; one atomic commit per batch.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use eventlog::{Bytes, HeaderName, Log, PartitionReader, Record, ReusedBuffers, StoredRecord};
use schemas::event::{parse_event, validate_event};
use schemas::master::apply_master_rules;
use schemas::speed::{
    DailyMessage, LateMessage, RawPosition, SilverMessage, UsageTotals, WINDOW_MICROS,
    window_starts, write_window_avro,
};
use schemas::{BronzeEvent, MasterTables, Outcome, Reason, SeenKeys, Source};
// The per-event maps (names, days, windows, the batch's dedup ids) hash with foldhash:
// SipHash, the standard library's default, cost 5% of the processor's instructions.
use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};

use crate::metrics::Metrics;
use crate::state::{
    self, CF_DAILY, CF_DEDUP, CF_MASTER, CF_WINDOWS, Seen, State, bytewise_cmp, bytewise_order,
    decode_totals, encode_totals, group_key,
};
use crate::{
    COMMITTED_OUTPUTS, DAILY_TOPIC, Error, LATE_TOPIC, QUARANTINE_TOPIC, Result, SILVER_TOPIC,
    WINDOWS_TOPIC,
};

/// Where the processor starts reading the event partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FromOffset {
    /// Rebuild everything (master data too) from offset 0.
    Earliest,
    /// Skip to the end: only records appended from now on.
    Latest,
    /// Where the last commit left off (the default).
    Committed,
    /// This offset in every event partition. Before the committed offset, the
    /// partition's state and outputs are rebuilt (deterministically, from 0).
    At(u64),
}

impl std::str::FromStr for FromOffset {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "earliest" => Ok(FromOffset::Earliest),
            "latest" => Ok(FromOffset::Latest),
            "committed" => Ok(FromOffset::Committed),
            n => n.parse().map(FromOffset::At).map_err(|_| {
                Error::Config(format!(
                    "--from-offset {n:?}: expected earliest, latest, committed or a number"
                ))
            }),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ProcessorConfig {
    pub event_partitions: u32,
    /// Watermark = highest kept event time − this.
    pub lateness_micros: i64,
    /// Dedup keeps event ids this long in event time.
    pub dedup_horizon_micros: i64,
    /// Records read from one input partition at a time.
    pub poll_records: usize,
    /// A commit once this many input records are processed...
    pub commit_records: usize,
    /// ...or this much time has passed with records pending...
    pub commit_interval: Duration,
    /// ...or, while the input is behind (the last step read a whole poll's worth of
    /// records), this much: fewer, larger commits when no one is waiting for them.
    pub commit_interval_behind: Duration,
    pub from: FromOffset,
    pub until_idle: bool,
    /// This instance's place among `instances` processors sharing the work: it owns
    /// the event partitions `p` with `p % instances == instance` (their state, their
    /// outputs, their commits); instance 0 also owns the master data's quarantine.
    /// Every instance reads the master topics in full.
    pub instance: u32,
    pub instances: u32,
}

impl ProcessorConfig {
    /// Whether this instance owns event partition `p`.
    pub fn owns(&self, p: u32) -> bool {
        p % self.instances.max(1) == self.instance
    }

    /// Whether this instance writes output partition `p` of `topic`.
    fn owns_output(&self, topic: &str, p: u32) -> bool {
        if topic == QUARANTINE_TOPIC && p == self.event_partitions {
            self.owns_master()
        } else {
            self.owns(p)
        }
    }

    /// Instance 0 quarantines bad master rows and commits the master topics' offsets.
    fn owns_master(&self) -> bool {
        self.instance == 0
    }
}

/// `I/N`: instance I (from 0) of N processors.
pub fn parse_instance(s: &str) -> std::result::Result<(u32, u32), String> {
    let bad = || format!("--instance {s:?}: expected I/N with 0 <= I < N, e.g. 0/2");
    let (i, n) = s.split_once('/').ok_or_else(bad)?;
    let (i, n): (u32, u32) = (
        i.trim().parse().map_err(|_| bad())?,
        n.trim().parse().map_err(|_| bad())?,
    );
    if n == 0 || i >= n {
        return Err(bad());
    }
    Ok((i, n))
}

impl Default for ProcessorConfig {
    fn default() -> Self {
        ProcessorConfig {
            event_partitions: 4,
            lateness_micros: 10 * 60 * 1_000_000,
            dedup_horizon_micros: 90 * schemas::time::MICROS_PER_DAY,
            poll_records: 5_000,
            commit_records: 50_000,
            commit_interval: Duration::from_millis(10),
            commit_interval_behind: Duration::from_millis(200),
            from: FromOffset::Committed,
            until_idle: false,
            instance: 0,
            instances: 1,
        }
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RunReport {
    pub records_in: u64,
    pub commits: u64,
}

/// (window start, org, service); org and service as [`Names`] ids.
type WindowKey = (i64, u32, u32);
/// A put (`Some`) or delete (`None`) of a key in a column family.
type StateChange = (&'static str, Vec<u8>, Option<Vec<u8>>);
/// (usage date, org, service); org and service as [`Names`] ids.
type DayKey = (i32, u32, u32);

/// Org and service names as small ids, so that the per-event window and day updates
/// copy integers, not strings. Ids depend on arrival order, so every output is
/// ordered by the names, never by the ids.
#[derive(Default)]
struct Names {
    ids: HashMap<String, u32>,
    names: Vec<String>,
}

impl Names {
    fn id(&mut self, name: &str) -> u32 {
        if let Some(id) = self.ids.get(name) {
            return *id;
        }
        let id = self.names.len() as u32;
        self.names.push(name.to_owned());
        self.ids.insert(name.to_owned(), id);
        id
    }

    fn name(&self, id: u32) -> &str {
        self.names.get(id as usize).map_or("", String::as_str)
    }

    /// The state key of a window of partition `p`.
    fn window_key(&self, p: u32, (start, org, service): WindowKey) -> Vec<u8> {
        group_key(p, start, self.name(org), self.name(service))
    }
}

/// A window not final yet.
#[derive(Default)]
struct OpenWindow {
    totals: UsageTotals,
    /// Its state is in RocksDB (written by a commit, or read at start). A window that
    /// opens and closes between two commits, as most do, never is, and needs no
    /// delete.
    stored: bool,
}

struct Partition<R> {
    p: u32,
    reader: R,
    /// Highest kept event time seen.
    max_ts: Option<i64>,
    /// Open (not yet final) windows.
    windows: BTreeMap<WindowKey, OpenWindow>,
    dirty_windows: HashSet<WindowKey>,
    /// Final windows whose state a commit wrote: deleted at the next commit.
    closed_windows: Vec<WindowKey>,
    days: HashMap<DayKey, UsageTotals>,
    /// The records of the last poll, emptied: kept for its allocation.
    polled: Vec<StoredRecord>,
}

impl<R> Partition<R> {
    fn watermark(&self, lateness: i64) -> i64 {
        self.max_ts.map_or(i64::MIN, |t| t.saturating_sub(lateness))
    }
}

const OUTPUT_TOPICS: [&str; 5] = [
    SILVER_TOPIC,
    QUARANTINE_TOPIC,
    WINDOWS_TOPIC,
    DAILY_TOPIC,
    LATE_TOPIC,
];

pub struct Processor<'a, L: Log> {
    log: &'a L,
    /// Shared with the commit thread of [`run_until`](Self::run_until).
    state: Arc<State>,
    cfg: ProcessorConfig,
    metrics: Metrics,
    master: MasterTables,
    names: Names,
    master_readers: Vec<(Source, L::Reader)>,
    parts: Vec<Partition<L::Reader>>,
    /// The open batch's output records by topic and partition: a handful of entries,
    /// searched in order (cheaper per record than a tree of string keys).
    outputs: Vec<(&'static str, u32, Vec<Record>)>,
    /// The output partitions this instance writes, found once at open (the topics
    /// are ensured there), not read from the log's metadata at every commit.
    output_partitions: Arc<[(&'static str, u32)]>,
    dedup: HashMap<IdKey, Seen>,
    master_rows: HashMap<Vec<u8>, Bytes>,
    /// The last commit's changes, which the commit thread may still be writing.
    in_flight: InFlight,
    pending: usize,
    /// Events read since the metrics were last published (counted into `local`
    /// then, rather than looked up by topic name per event).
    events_in: u64,
    local: crate::metrics::Snapshot,
    records: RecordWriter,
    /// The typed lines of the last poll, emptied: kept for its allocation (5,000
    /// events of about 250 bytes: fresh memory the kernel would zero at every poll).
    parsed: Vec<Result<BronzeEvent, Reason>>,
}

/// The state changes of the last commit, kept until the next one is prepared: while
/// the commit thread writes them, the state in RocksDB may or may not show them yet,
/// so the next batch reads them here first (they are what RocksDB holds once the
/// commit is done, so reading them after that is right too).
#[derive(Default)]
struct InFlight {
    dedup: HashMap<IdKey, Seen>,
    /// Daily totals by partition, indexed as `Processor::parts`.
    days: Vec<HashMap<DayKey, UsageTotals>>,
    master_rows: HashMap<Vec<u8>, Bytes>,
}

/// A commit this long is logged (they take milliseconds).
const SLOW_COMMIT: Duration = Duration::from_millis(250);

/// The half of a commit that waits on the disk, done on the commit thread while the
/// next batch is processed: the outputs (already appended) are fsynced, their end
/// offsets added to the state changes, and those written in one synced RocksDB write.
struct CommitJob {
    changes: rocksdb::WriteBatch,
    /// The output partitions the instance writes (see `Processor::output_partitions`).
    outputs: Arc<[(&'static str, u32)]>,
    /// The lowest watermark of the batch's partitions (dedup expiry follows it).
    min_wm: i64,
    started: Instant,
}

impl CommitJob {
    /// Returns the seconds the whole commit took, from its preparation on.
    /// A commit that takes [`SLOW_COMMIT`] or longer is logged with where its time
    /// went.
    fn finish<L: Log>(self, log: &L, state: &State, cfg: &ProcessorConfig) -> Result<f64> {
        let begun = Instant::now();
        log.flush_partitions(&self.outputs)?;
        let ends = output_ends(log, &self.outputs)?;
        let flushed = Instant::now();
        let mut b = state.batch_with(self.changes);
        for (topic, p, end) in &ends {
            b.put_u64(&out_key(topic, *p), *end)?;
        }
        b.commit()?;
        let written = Instant::now();
        if self.min_wm > i64::MIN {
            state.expire_dedup_before(self.min_wm.saturating_sub(cfg.dedup_horizon_micros));
        }
        publish_committed(log, state, cfg, &ends)?;
        let took = self.started.elapsed();
        if took >= SLOW_COMMIT {
            let ms = |d: Duration| d.as_secs_f64() * 1e3;
            tracing::warn!(
                total_ms = ms(took),
                prepared_and_queued_ms = ms(begun - self.started),
                outputs_fsync_ms = ms(flushed - begun),
                state_write_ms = ms(written - flushed),
                publish_ms = ms(written.elapsed()),
                "slow commit"
            );
        }
        Ok(took.as_secs_f64())
    }
}

/// Every output partition the instance `cfg` writes.
fn owned_outputs<L: Log>(log: &L, cfg: &ProcessorConfig) -> Result<Vec<(&'static str, u32)>> {
    let mut owned = Vec::new();
    for topic in OUTPUT_TOPICS {
        let parts = log.partitions(topic)?.unwrap_or(0);
        owned.extend(
            (0..parts)
                .filter(|p| cfg.owns_output(topic, *p))
                .map(|p| (topic, p)),
        );
    }
    Ok(owned)
}

/// The end offset of each of the output partitions `owned` (one request).
fn output_ends<L: Log>(
    log: &L,
    owned: &[(&'static str, u32)],
) -> Result<Vec<(&'static str, u32, u64)>> {
    let ends = log.end_offsets(owned)?;
    Ok(owned
        .iter()
        .zip(ends)
        .map(|(&(t, p), e)| (t, p, e))
        .collect())
}

/// Publishes, as the consumer [`COMMITTED_OUTPUTS`], the committed output positions
/// (`ends`) and the input positions they account for.
fn publish_committed<L: Log>(
    log: &L,
    state: &State,
    cfg: &ProcessorConfig,
    ends: &[(&'static str, u32, u64)],
) -> Result<()> {
    let mut offsets: Vec<(&str, u32, u64)> = ends.to_vec();
    // The input positions those outputs account for, in the same file: a reader
    // (the compactor) sees one consistent snapshot of what was consumed and what it
    // produced.
    for source in Source::ALL {
        let topic = source.raw_topic();
        let owned: Vec<u32> = if source == Source::UsageEvents {
            (0..cfg.event_partitions).filter(|p| cfg.owns(*p)).collect()
        } else if cfg.owns_master() {
            vec![0]
        } else {
            Vec::new()
        };
        for p in owned {
            let pos = state.get_u64(&in_key(topic, p))?.unwrap_or(0);
            offsets.push((topic, p, pos));
        }
    }
    // Not fsynced: RocksDB holds these positions durably, and `open` publishes them
    // again; a reader never sees more than the synced outputs.
    log.publish(COMMITTED_OUTPUTS, &offsets)?;
    Ok(())
}

/// The windows that the watermark `wm` has made final (all of them when `flush`),
/// taken out of `windows` whole: those that start before the first one still open.
fn split_closed<V>(
    windows: &mut BTreeMap<WindowKey, V>,
    wm: i64,
    flush: bool,
) -> BTreeMap<WindowKey, V> {
    match windows.first_key_value() {
        Some(_) if flush => std::mem::take(windows),
        // The first window closes, so `wm - WINDOW_MICROS` cannot overflow.
        Some((&(start, _, _), _)) if start + WINDOW_MICROS <= wm => {
            let open = windows.split_off(&(wm - WINDOW_MICROS + 1, 0, 0));
            std::mem::replace(windows, open)
        }
        _ => BTreeMap::new(),
    }
}

/// Bytes of an event id held in the key itself: the generator's ids have 17.
const INLINE_ID: usize = 30;

/// An event id as a key of the batch's dedup maps, looked up by its bytes. An id of
/// up to [`INLINE_ID`] bytes is held in the map's own slot rather than in an
/// allocation of its own per kept event (which the commit freed again); a longer one
/// on the heap.
#[derive(Clone)]
enum IdKey {
    Inline { len: u8, bytes: [u8; INLINE_ID] },
    Heap(Box<[u8]>),
}

impl IdKey {
    fn new(id: &[u8]) -> Self {
        if id.len() > INLINE_ID {
            return IdKey::Heap(id.into());
        }
        let mut bytes = [0u8; INLINE_ID];
        bytes[..id.len()].copy_from_slice(id);
        IdKey::Inline {
            len: id.len() as u8,
            bytes,
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            IdKey::Inline { len, bytes } => &bytes[..usize::from(*len)],
            IdKey::Heap(b) => b,
        }
    }
}

// Equality and hash of the bytes, whichever way they are held, as `Borrow` requires.
impl PartialEq for IdKey {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for IdKey {}

impl Hash for IdKey {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.as_bytes().hash(h);
    }
}

impl Borrow<[u8]> for IdKey {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

/// Dedup of one event: its id's entry among this batch's changes (`overlay`), else
/// `committed`, the entry the state held for it when the batch was read (looked up
/// for the whole poll at once, [`Processor::committed_seen`]; nothing commits within
/// a poll). The rules ask `insert` once per event, for its own id.
struct DedupView<'s> {
    overlay: &'s mut HashMap<IdKey, Seen>,
    committed: Option<Seen>,
    here: Seen,
    floor: i64,
}

impl SeenKeys for DedupView<'_> {
    fn insert(&mut self, key: &str) -> bool {
        let earlier = self.overlay.get(key.as_bytes()).copied().or(self.committed);
        match earlier {
            // The same log position again: a replay, not a duplicate.
            Some(s) if s.partition == self.here.partition && s.offset == self.here.offset => true,
            Some(s) if s.ts_micros >= self.floor => false,
            _ => {
                self.overlay.insert(IdKey::new(key.as_bytes()), self.here);
                true
            }
        }
    }
}

struct MasterSeen<'s> {
    state: &'s State,
    overlay: &'s mut HashMap<Vec<u8>, Bytes>,
    /// The last commit's rows (see [`InFlight`]).
    in_flight: &'s HashMap<Vec<u8>, Bytes>,
    source: Source,
    row: Bytes,
    error: Option<Error>,
}

fn master_key(source: Source, natural_key: &str) -> Vec<u8> {
    format!("{}/{natural_key}", source.name()).into_bytes()
}

impl SeenKeys for MasterSeen<'_> {
    fn insert(&mut self, key: &str) -> bool {
        let k = master_key(self.source, key);
        if self.overlay.contains_key(&k) || self.in_flight.contains_key(&k) {
            return false;
        }
        match self.state.get(CF_MASTER, &k) {
            Ok(Some(_)) => false,
            Ok(None) => {
                self.overlay.insert(k, self.row.clone());
                true
            }
            Err(e) => {
                self.error = Some(e);
                false
            }
        }
    }
}

fn in_key(topic: &str, p: u32) -> String {
    format!("in/{topic}/{p}")
}

fn out_key(topic: &str, p: u32) -> String {
    format!("out/{topic}/{p}")
}

/// The keys and values of the output records, written one after another into
/// shared chunks of memory: a record costs no allocation of its own (each took
/// three before: its key, its value, and the value's conversion to `Bytes`). A chunk
/// is taken back for new records once the last record in it is dropped (after the
/// commit that appends them), rather than freed and allocated again: fresh memory
/// is faulted in and zeroed by the kernel, which is slow on the VMs we run on.
struct RecordWriter {
    chunk: BytesMut,
    /// Chunks filled earlier, oldest first: the oldest is the first whose records a
    /// commit has appended and dropped.
    filled: ReusedBuffers,
    scratch: Vec<u8>,
}

/// Room of each new chunk.
const RECORD_CHUNK: usize = 64 << 10;
/// Filled chunks kept for reuse, at most (8 MiB): more than one commit's outputs of
/// a processing thread at full speed. Past it the oldest is let go.
const FILLED_CHUNKS: usize = 128;

impl RecordWriter {
    fn new() -> Self {
        RecordWriter {
            chunk: BytesMut::with_capacity(RECORD_CHUNK),
            filled: ReusedBuffers::new(FILLED_CHUNKS),
            scratch: Vec::with_capacity(1024),
        }
    }

    /// Room for `need` more bytes: the current chunk, else a filled one none of whose
    /// records is alive any more, else a new one.
    fn room(&mut self, need: usize) {
        if self.chunk.capacity() - self.chunk.len() >= need {
            return;
        }
        let full = std::mem::replace(&mut self.chunk, BytesMut::new());
        self.filled.keep(full);
        self.chunk = self.filled.take(need, RECORD_CHUNK);
    }

    /// A record whose value `write` writes (`write_avro`).
    fn written(&mut self, key: &str, write: impl FnOnce(&mut Vec<u8>), ts_ms: i64) -> Record {
        self.scratch.clear();
        write(&mut self.scratch);
        self.record(key, ts_ms)
    }

    /// A record whose value is `value` as JSON.
    fn json(&mut self, key: &str, value: &impl serde::Serialize, ts_ms: i64) -> Result<Record> {
        self.scratch.clear();
        serde_json::to_writer(&mut self.scratch, value)
            .map_err(|e| Error::Config(format!("encode: {e}")))?;
        Ok(self.record(key, ts_ms))
    }

    /// The record of `key` and the value in `scratch`.
    fn record(&mut self, key: &str, ts_ms: i64) -> Record {
        self.room(key.len() + self.scratch.len());
        self.chunk.extend_from_slice(key.as_bytes());
        let key = self.chunk.split().freeze();
        self.chunk.extend_from_slice(&self.scratch);
        let value = self.chunk.split().freeze();
        Record {
            key: Some(key),
            value,
            headers: Vec::new(),
            timestamp_ms: ts_ms,
        }
    }
}

fn quarantine_record(
    rec: &StoredRecord,
    source: Source,
    reason: Reason,
    topic: &str,
    p: u32,
) -> Record {
    let mut headers: Vec<(HeaderName, Bytes)> = vec![
        (
            "source".into(),
            Bytes::from_static(source.name().as_bytes()),
        ),
        (
            "reason".into(),
            Bytes::from_static(reason.code().as_bytes()),
        ),
        (
            "stage".into(),
            Bytes::from_static(reason.stage().as_str().as_bytes()),
        ),
        ("raw_topic".into(), Bytes::copy_from_slice(topic.as_bytes())),
        (
            "raw_partition".into(),
            Bytes::from(p.to_string().into_bytes()),
        ),
        (
            "raw_offset".into(),
            Bytes::from(rec.offset.to_string().into_bytes()),
        ),
    ];
    for name in ["source_file", "line_no"] {
        if let Some(v) = rec.record.header(name) {
            headers.push((name.into(), Bytes::copy_from_slice(v)));
        }
    }
    Record {
        key: Some(Bytes::from_static(source.name().as_bytes())),
        // A copy, as the headers: a slice would hold the reader's whole batch buffer
        // until the commit, where the reader reuses it as soon as it is free.
        value: Bytes::copy_from_slice(&rec.record.value),
        headers,
        timestamp_ms: rec.record.timestamp_ms,
    }
}

impl<'a, L: Log> Processor<'a, L> {
    /// Opens the state, discards outputs a crash left uncommitted, and positions the
    /// readers as `cfg.from` says.
    pub fn open(log: &'a L, state: State, cfg: ProcessorConfig, metrics: Metrics) -> Result<Self> {
        let n = cfg.event_partitions;
        let events_topic = Source::UsageEvents.raw_topic();
        log.ensure_topic(events_topic, n)?;
        let actual = log.partitions(events_topic)?.unwrap_or(n);
        if actual != n {
            return Err(Error::Config(format!(
                "{events_topic} has {actual} partitions but the config says {n}"
            )));
        }
        for source in Source::MASTER {
            log.ensure_topic(source.raw_topic(), 1)?;
        }
        for topic in OUTPUT_TOPICS {
            let parts = if topic == QUARANTINE_TOPIC { n + 1 } else { n };
            // The running daily totals: each record supersedes the one before with its
            // key, so the broker may keep only the latest (SPEC section 3).
            if topic == DAILY_TOPIC {
                log.ensure_compacted_topic(topic, parts)?;
            } else {
                log.ensure_topic(topic, parts)?;
            }
        }
        let output_partitions = owned_outputs(log, &cfg)?.into();
        let mut me = Processor {
            log,
            state: Arc::new(state),
            cfg,
            metrics,
            master: MasterTables::default(),
            names: Names::default(),
            master_readers: Vec::new(),
            parts: Vec::new(),
            outputs: Vec::new(),
            output_partitions,
            dedup: HashMap::new(),
            master_rows: HashMap::new(),
            in_flight: InFlight::default(),
            pending: 0,
            events_in: 0,
            local: Default::default(),
            records: RecordWriter::new(),
            parsed: Vec::new(),
        };
        me.discard_uncommitted_outputs()?;
        if me.cfg.from == FromOffset::Earliest {
            me.reset_master()?;
        }
        me.load_master()?;
        for source in Source::MASTER {
            let topic = source.raw_topic();
            let from = me.state.get_u64(&in_key(topic, 0))?.unwrap_or(0);
            me.master_readers
                .push((source, log.reader(topic, 0, from)?));
        }
        let owned: Vec<u32> = (0..n).filter(|p| me.cfg.owns(*p)).collect();
        for p in owned {
            let committed = me.state.get_u64(&in_key(events_topic, p))?.unwrap_or(0);
            let end = log.end_offset(events_topic, p)?;
            let from = match me.cfg.from {
                FromOffset::Committed => committed,
                FromOffset::Latest => end.max(committed),
                FromOffset::Earliest => {
                    me.reset_partition(p)?;
                    0
                }
                FromOffset::At(n) if n < committed => {
                    me.reset_partition(p)?;
                    0
                }
                FromOffset::At(n) => n.min(end),
            };
            let mut windows = BTreeMap::new();
            for (k, v) in me.state.scan_prefix(CF_WINDOWS, &p.to_be_bytes())? {
                if let (Some((_, start, org, service)), Some(t)) =
                    (state::parse_group_key(&k), decode_totals(&v))
                {
                    let key = (start, me.names.id(&org), me.names.id(&service));
                    windows.insert(
                        key,
                        OpenWindow {
                            totals: t,
                            stored: true,
                        },
                    );
                }
            }
            let max_ts = me.state.get_i64(&format!("maxts/{p}"))?;
            me.parts.push(Partition {
                p,
                reader: log.reader(events_topic, p, from)?,
                max_ts,
                windows,
                dirty_windows: HashSet::new(),
                closed_windows: Vec::new(),
                days: HashMap::new(),
                polled: Vec::new(),
            });
        }
        Ok(me)
    }

    /// Outputs beyond the committed positions were appended by a run that crashed
    /// before its commit: the restart recomputes them, so they go.
    fn discard_uncommitted_outputs(&mut self) -> Result<()> {
        for (topic, p, end) in output_ends(self.log, &self.output_partitions)? {
            let committed = self.state.get_u64(&out_key(topic, p))?.unwrap_or(0);
            if end > committed {
                tracing::warn!(
                    topic,
                    partition = p,
                    committed,
                    end,
                    "discarding {} uncommitted output records",
                    end - committed
                );
                self.log.truncate(topic, p, committed)?;
            } else if end < committed {
                return Err(Error::State(format!(
                    "{topic}/{p} ends at {end} but {committed} records were committed: the log lost committed output"
                )));
            }
        }
        let ends = output_ends(self.log, &self.output_partitions)?;
        publish_committed(self.log, &self.state, &self.cfg, &ends)?;
        Ok(())
    }

    /// Forgets a partition's state and outputs, to rebuild them from offset 0.
    fn reset_partition(&mut self, p: u32) -> Result<()> {
        tracing::info!(partition = p, "rebuilding the partition from offset 0");
        self.state.delete_prefix(CF_WINDOWS, &p.to_be_bytes())?;
        self.state.delete_prefix(CF_DAILY, &p.to_be_bytes())?;
        let mut b = self.state.batch();
        for (k, v) in self.state.scan_prefix(CF_DEDUP, b"")? {
            if Seen::decode(&v).is_some_and(|s| s.partition == p) {
                b.delete(CF_DEDUP, &k)?;
            }
        }
        b.delete(state::CF_META, format!("maxts/{p}").as_bytes())?;
        b.put_u64(&in_key(Source::UsageEvents.raw_topic(), p), 0)?;
        for topic in OUTPUT_TOPICS {
            b.put_u64(&out_key(topic, p), 0)?;
        }
        b.commit()?;
        for topic in OUTPUT_TOPICS {
            self.log.truncate(topic, p, 0)?;
        }
        Ok(())
    }

    fn reset_master(&mut self) -> Result<()> {
        self.state.delete_prefix(CF_MASTER, b"")?;
        let mq = self.cfg.event_partitions;
        let mut b = self.state.batch();
        for source in Source::MASTER {
            b.put_u64(&in_key(source.raw_topic(), 0), 0)?;
        }
        b.put_u64(&out_key(QUARANTINE_TOPIC, mq), 0)?;
        b.commit()?;
        if self.cfg.owns_master() {
            self.log.truncate(QUARANTINE_TOPIC, mq, 0)?;
        }
        Ok(())
    }

    fn load_master(&mut self) -> Result<()> {
        for source in [Source::CustomersOrgs, Source::Resources] {
            let prefix = format!("{}/", source.name());
            for (_, row) in self.state.scan_prefix(CF_MASTER, prefix.as_bytes())? {
                if let Ok(record) = schemas::parse_master(source, &row) {
                    self.master.absorb(&record);
                }
            }
        }
        Ok(())
    }

    /// Whether the open batch has output records (the list keeps emptied vectors).
    fn has_outputs(&self) -> bool {
        self.outputs.iter().any(|(_, _, v)| !v.is_empty())
    }

    fn out(&mut self, topic: &'static str, p: u32, record: Record) {
        let found = self
            .outputs
            .iter()
            .position(|(t, q, _)| *q == p && *t == topic);
        match found {
            Some(i) => self.outputs[i].2.push(record),
            None => self.outputs.push((topic, p, vec![record])),
        }
    }

    fn on_master(&mut self, source: Source, rec: StoredRecord) -> Result<()> {
        let topic = source.raw_topic();
        self.local.count_in(topic);
        let mut seen = MasterSeen {
            state: &self.state,
            overlay: &mut self.master_rows,
            in_flight: &self.in_flight.master_rows,
            source,
            row: rec.record.value.clone(),
            error: None,
        };
        let outcome = apply_master_rules(source, &rec.record.value, &self.master, &mut seen);
        if let Some(e) = seen.error {
            return Err(e);
        }
        match outcome {
            Outcome::Kept { record, .. } => self.master.absorb(&record),
            Outcome::Quarantined { reason } if self.cfg.owns_master() => {
                *self
                    .local
                    .quarantined
                    .entry(reason.code().into())
                    .or_default() += 1;
                let q = quarantine_record(&rec, source, reason, topic, 0);
                self.out(QUARANTINE_TOPIC, self.cfg.event_partitions, q);
            }
            Outcome::Quarantined { .. } => {}
        }
        Ok(())
    }

    /// Each parsed event's entry in the committed dedup table (`None` for lines that
    /// did not parse): the last commit's, else the state's, looked up for the whole
    /// poll in one batch.
    fn committed_seen(&self, parsed: &[Result<BronzeEvent, Reason>]) -> Result<Vec<Option<Seen>>> {
        let mut seen = Vec::with_capacity(parsed.len());
        let (mut keys, mut slots) = (Vec::new(), Vec::new());
        for (j, e) in parsed.iter().enumerate() {
            let last = match e {
                Ok(e) => match self.in_flight.dedup.get(e.event_id.as_bytes()) {
                    None => {
                        keys.push(e.event_id.as_bytes());
                        slots.push(j);
                        None
                    }
                    last => last.copied(),
                },
                Err(_) => None,
            };
            seen.push(last);
        }
        for (j, v) in slots
            .into_iter()
            .zip(self.state.multi_get(CF_DEDUP, &keys)?)
        {
            seen[j] = v.and_then(|v| Seen::decode(&v));
        }
        Ok(seen)
    }

    fn on_event(
        &mut self,
        i: usize,
        rec: StoredRecord,
        parsed: Result<BronzeEvent, Reason>,
        committed: Option<Seen>,
    ) -> Result<()> {
        let lateness = self.cfg.lateness_micros;
        let p = self.parts[i].p;
        let topic = Source::UsageEvents.raw_topic();
        self.events_in += 1;
        let outcome = match parsed {
            Err(reason) => Outcome::Quarantined { reason },
            Ok(event) => {
                let wm = self.parts[i].watermark(lateness);
                let mut seen = DedupView {
                    overlay: &mut self.dedup,
                    committed,
                    here: Seen {
                        partition: p,
                        offset: rec.offset,
                        ts_micros: event.ts_micros,
                    },
                    floor: wm.saturating_sub(self.cfg.dedup_horizon_micros),
                };
                validate_event(event, &self.master, &mut seen)
            }
        };
        let (event, flags) = match outcome {
            Outcome::Quarantined { reason } => {
                *self
                    .local
                    .quarantined
                    .entry(reason.code().into())
                    .or_default() += 1;
                if reason == Reason::Duplicate {
                    self.local.dedup_hits += 1;
                }
                let q = quarantine_record(&rec, Source::UsageEvents, reason, topic, p);
                self.out(QUARANTINE_TOPIC, p, q);
                return Ok(());
            }
            Outcome::Kept { record, flags } => (record, flags),
        };
        let ts_ms = event.ts_micros.div_euclid(1000);
        // Daily totals: read through the state once per batch and key.
        let (org_id, service_id) = (self.names.id(&event.org_id), self.names.id(&event.service));
        let day: DayKey = (event.usage_date, org_id, service_id);
        if !self.parts[i].days.contains_key(&day) {
            let last = self.in_flight.days.get(i).and_then(|d| d.get(&day));
            let t = match last {
                Some(t) => *t,
                None => {
                    let k = group_key(p, i64::from(day.0), &event.org_id, &event.service);
                    self.state
                        .get(CF_DAILY, &k)?
                        .and_then(|v| decode_totals(&v))
                        .unwrap_or_default()
                }
            };
            self.parts[i].days.insert(day, t);
        }
        if let Some(t) = self.parts[i].days.get_mut(&day) {
            t.add(&event, &flags);
        }
        // Windows: update the ones not final yet; late if one of them is final.
        let part = &mut self.parts[i];
        let wm = part.watermark(lateness);
        let starts = window_starts(event.ts_micros);
        let late = starts[0] + WINDOW_MICROS <= wm;
        for s in starts {
            if s + WINDOW_MICROS > wm {
                let key = (s, org_id, service_id);
                part.windows
                    .entry(key)
                    .or_default()
                    .totals
                    .add(&event, &flags);
                part.dirty_windows.insert(key);
            }
        }
        part.max_ts = Some(
            part.max_ts
                .map_or(event.ts_micros, |m| m.max(event.ts_micros)),
        );
        if late {
            self.local.late_events += 1;
            let msg = LateMessage {
                event_id: event.event_id.clone(),
                org_id: event.org_id.clone(),
                event_time: event.ts_micros,
                watermark: wm,
                partition: p,
                offset: rec.offset,
            };
            let r = self.records.json(&event.org_id, &msg, ts_ms)?;
            self.out(LATE_TOPIC, p, r);
        }
        let msg = SilverMessage {
            event,
            flags,
            lineage: RawPosition {
                partition: p,
                offset: rec.offset,
                ingest_ms: rec.record.timestamp_ms,
            },
        };
        let r = self
            .records
            .written(&msg.event.org_id, |b| msg.write_avro(b), ts_ms);
        self.out(SILVER_TOPIC, p, r);
        self.on_watermark(i, false)
    }

    /// Emits every window of partition `i` that the watermark has passed (all of
    /// them when `flush`), once, final.
    fn on_watermark(&mut self, i: usize, flush: bool) -> Result<()> {
        let wm = self.parts[i].watermark(self.cfg.lateness_micros);
        let p = self.parts[i].p;
        let part = &mut self.parts[i];
        let closed_map = split_closed(&mut part.windows, wm, flush);
        if closed_map.is_empty() {
            return Ok(());
        }
        let mut closed = Vec::with_capacity(closed_map.len());
        for (key, window) in closed_map {
            part.dirty_windows.remove(&key);
            if window.stored {
                part.closed_windows.push(key);
            }
            closed.push((key, window.totals));
        }
        // Emitted by start, org and service name: the same order in every run (the
        // keys are distinct, so an unstable sort gives it without a scratch buffer).
        let name = |id: u32| self.names.name(id).as_bytes();
        closed.sort_unstable_by(|((s1, o1, v1), _), ((s2, o2, v2), _)| {
            s1.cmp(s2)
                .then_with(|| bytewise_cmp(name(*o1), name(*o2)))
                .then_with(|| bytewise_cmp(name(*v1), name(*v2)))
        });
        for ((start, org, service), totals) in closed {
            let (org, service) = (self.names.name(org), self.names.name(service));
            let span = (start, start + WINDOW_MICROS);
            let r = self.records.written(
                org,
                |b| write_window_avro(b, org, service, span, &totals),
                span.1 / 1000,
            );
            self.out(WINDOWS_TOPIC, p, r);
        }
        Ok(())
    }

    /// Reads what is available once: master topics to their end, then up to
    /// `poll_records` from each event partition. Returns the records processed.
    pub fn step(&mut self) -> Result<usize> {
        let mut n = 0;
        for m in 0..self.master_readers.len() {
            loop {
                let batch = self.master_readers[m].1.poll(self.cfg.poll_records)?;
                if batch.is_empty() {
                    break;
                }
                let source = self.master_readers[m].0;
                for rec in batch {
                    n += 1;
                    self.on_master(source, rec)?;
                }
            }
        }
        for i in 0..self.parts.len() {
            let mut batch = std::mem::take(&mut self.parts[i].polled);
            self.parts[i]
                .reader
                .poll_into(self.cfg.poll_records, &mut batch)?;
            // Lines typed first, so that their ids' dedup entries are read in one
            // batched lookup rather than one point lookup per event.
            let mut parsed = std::mem::take(&mut self.parsed);
            parsed.extend(batch.iter().map(|r| parse_event(&r.record.value)));
            let committed = self.committed_seen(&parsed)?;
            for ((rec, event), seen) in batch.drain(..).zip(parsed.drain(..)).zip(committed) {
                n += 1;
                self.on_event(i, rec, event, seen)?;
            }
            self.parts[i].polled = batch;
            self.parsed = parsed;
        }
        self.pending += n;
        Ok(n)
    }

    /// Makes the open batch's effects durable, all at once: outputs appended and
    /// fsynced, then one synced RocksDB write of state, input offsets and output
    /// positions.
    pub fn commit(&mut self) -> Result<()> {
        let job = self.prepare_commit()?;
        let seconds = job.finish(self.log, &self.state, &self.cfg)?;
        self.committed(seconds)
    }

    /// The first half of a commit, on the processing thread: the batch's outputs
    /// appended (not yet fsynced) and its state changes gathered, to be finished by
    /// [`CommitJob::finish`]. The previous commit must be finished: the output end
    /// offsets this one records must not count records of the next.
    fn prepare_commit(&mut self) -> Result<CommitJob> {
        let started = Instant::now();
        let mut daily_out = Vec::new();
        let mut batch_state: Vec<StateChange> = Vec::new();
        self.in_flight
            .days
            .resize_with(self.parts.len(), HashMap::new);
        for (part, in_flight) in self.parts.iter_mut().zip(&mut self.in_flight.days) {
            // The batch's days become the ones in flight; the map of the last ones,
            // emptied, takes the next batch's.
            std::mem::swap(&mut part.days, in_flight);
            part.days.clear();
            for (&key, &totals) in in_flight.iter() {
                let (date, org, service) = key;
                let (org, service) = (
                    self.names.name(org).to_owned(),
                    self.names.name(service).to_owned(),
                );
                batch_state.push((
                    CF_DAILY,
                    group_key(part.p, i64::from(date), &org, &service),
                    Some(encode_totals(&totals).to_vec()),
                ));
                let o = self.master.orgs.get(&org);
                let msg = DailyMessage {
                    org_id: org,
                    usage_date: date,
                    service,
                    org_name: o.map(|o| o.org_name.to_string()).unwrap_or_default(),
                    industry: o.map(|o| o.industry.to_string()).unwrap_or_default(),
                    plan_tier: o.map(|o| o.plan_tier.to_string()).unwrap_or_default(),
                    totals,
                };
                daily_out.push((part.p, msg));
            }
            for key in part.dirty_windows.drain() {
                if let Some(w) = part.windows.get_mut(&key) {
                    w.stored = true;
                    batch_state.push((
                        CF_WINDOWS,
                        self.names.window_key(part.p, key),
                        Some(encode_totals(&w.totals).to_vec()),
                    ));
                }
            }
            for key in part.closed_windows.drain(..) {
                batch_state.push((CF_WINDOWS, self.names.window_key(part.p, key), None));
            }
        }
        // Daily upserts in a stable order, so a rebuild writes the same records.
        daily_out.sort_by(|a, b| {
            (a.0, &a.1.org_id, a.1.usage_date, &a.1.service).cmp(&(
                b.0,
                &b.1.org_id,
                b.1.usage_date,
                &b.1.service,
            ))
        });
        for (p, msg) in daily_out {
            let r = self.records.json(
                &msg.record_key(),
                &msg,
                i64::from(msg.usage_date) * 86_400_000,
            )?;
            self.out(DAILY_TOPIC, p, r);
        }
        // Emptied, not dropped: the next batch's records reuse the vectors' room.
        for (topic, p, records) in &mut self.outputs {
            let (topic, p) = (*topic, *p);
            if !records.is_empty() {
                self.log.append(topic, p, records)?;
                *self.local.records_out.entry(topic.to_owned()).or_default() +=
                    records.len() as u64;
                records.clear();
            }
        }
        let mut b = self.state.batch();
        // In key order (see the dedup ids below): each column family's keys then
        // come in order. Stable, so that of two changes of one key the later wins.
        batch_state.sort_by(|a, b| a.1.cmp(&b.1));
        for (cf, k, v) in batch_state {
            match v {
                Some(v) => b.put(cf, &k, &v)?,
                None => b.delete(cf, &k)?,
            }
        }
        // In key order: RocksDB's memtable (a skip list) inserts a key next to the
        // one before it more cheaply than at a random place, and event ids are random.
        let in_flight = &mut self.in_flight;
        std::mem::swap(&mut self.dedup, &mut in_flight.dedup);
        self.dedup.clear();
        let seen: Vec<_> = in_flight.dedup.iter().collect();
        let mut value = Vec::with_capacity(32);
        for i in bytewise_order(seen.iter().map(|(id, _)| id.as_bytes())) {
            let (id, seen) = seen[i as usize];
            value.clear();
            seen.encode_into(&mut value);
            b.put(CF_DEDUP, id.as_bytes(), &value)?;
        }
        std::mem::swap(&mut self.master_rows, &mut in_flight.master_rows);
        self.master_rows.clear();
        for (k, row) in &in_flight.master_rows {
            b.put(CF_MASTER, k, row)?;
        }
        for (source, reader) in &self.master_readers {
            b.put_u64(&in_key(source.raw_topic(), 0), reader.position())?;
        }
        let events_topic = Source::UsageEvents.raw_topic();
        let mut min_wm = i64::MAX;
        for part in &self.parts {
            b.put_u64(&in_key(events_topic, part.p), part.reader.position())?;
            if let Some(t) = part.max_ts {
                b.put_i64(&format!("maxts/{}", part.p), t)?;
            }
            min_wm = min_wm.min(part.watermark(self.cfg.lateness_micros));
        }
        self.pending = 0;
        Ok(CommitJob {
            changes: b.into_changes(),
            outputs: self.output_partitions.clone(),
            min_wm,
            started,
        })
    }

    /// Counts a finished commit.
    fn committed(&mut self, seconds: f64) -> Result<()> {
        self.local.commits += 1;
        self.local.commit_seconds_sum += seconds;
        self.local.commit_seconds_last = seconds;
        self.publish_metrics()
    }

    fn publish_metrics(&mut self) -> Result<()> {
        let mut lag = BTreeMap::new();
        let mut wms = BTreeMap::new();
        let topic = Source::UsageEvents.raw_topic();
        let inputs: Vec<(&str, u32)> = self.parts.iter().map(|part| (topic, part.p)).collect();
        let ends = self.log.end_offsets(&inputs)?;
        for (part, end) in self.parts.iter().zip(ends) {
            lag.insert(part.p, end.saturating_sub(part.reader.position()));
            if let Some(t) = part.max_ts {
                wms.insert(part.p, (t - self.cfg.lateness_micros) as f64 / 1e6);
            }
        }
        if self.events_in > 0 {
            *self.local.records_in.entry(topic.to_owned()).or_default() += self.events_in;
            self.events_in = 0;
        }
        let local = std::mem::take(&mut self.local);
        let state_bytes = self.state.size_bytes();
        let instance = self.cfg.instance;
        self.metrics.update(|m| {
            for (k, v) in local.records_in {
                *m.records_in.entry(k).or_default() += v;
            }
            for (k, v) in local.records_out {
                *m.records_out.entry(k).or_default() += v;
            }
            for (k, v) in local.quarantined {
                *m.quarantined.entry(k).or_default() += v;
            }
            m.dedup_hits += local.dedup_hits;
            m.late_events += local.late_events;
            m.commits += local.commits;
            m.commit_seconds_sum += local.commit_seconds_sum;
            m.commit_seconds_last = local.commit_seconds_last;
            // Several processing threads share the metrics: each updates its own
            // partitions and its own state's size.
            m.lag_records.extend(lag);
            m.watermark_seconds.extend(wms);
            m.state_bytes.insert(instance, state_bytes);
        });
        Ok(())
    }

    /// Emits every open window as final (the end of input).
    pub fn flush_windows(&mut self) -> Result<()> {
        for i in 0..self.parts.len() {
            self.on_watermark(i, true)?;
        }
        Ok(())
    }

    /// Sleeps until any input partition has records, or `timeout`: short pauses that
    /// grow from 0.2 ms to 2 ms, so a follower notices new records within ~2 ms
    /// without spinning.
    fn wait_for_input(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_micros(200);
        while Instant::now() < deadline {
            for part in &mut self.parts {
                if part.reader.wait(Duration::ZERO)? {
                    return Ok(());
                }
            }
            for (_, reader) in &mut self.master_readers {
                if reader.wait(Duration::ZERO)? {
                    return Ok(());
                }
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(2));
        }
        Ok(())
    }

    /// Runs until idle (with `until_idle`) or forever, committing as configured.
    pub fn run(&mut self) -> Result<RunReport> {
        self.run_until(&std::sync::atomic::AtomicBool::new(false))
    }

    /// As [`run`](Self::run), and returns (after committing what it processed) once
    /// `stop` is set: how an embedding program or a test ends a follower.
    ///
    /// Commits are pipelined: each one's fsyncs and RocksDB write run on a commit
    /// thread while the next batch is read and processed, and a commit waits for the
    /// one before it only when it has its own outputs to append. One commit at most
    /// is in flight, and its effects land in the same order as without the thread, so
    /// a crash at any point leaves what a crash of the one-thread loop would.
    pub fn run_until(&mut self, stop: &std::sync::atomic::AtomicBool) -> Result<RunReport> {
        let (log, state, cfg) = (self.log, self.state.clone(), self.cfg.clone());
        std::thread::scope(|s| {
            let (jobs, job_rx) = mpsc::channel::<CommitJob>();
            let (done_tx, done) = mpsc::channel::<Result<f64>>();
            let name = format!("commit-{}-of-{}", cfg.instance, cfg.instances);
            std::thread::Builder::new()
                .name(name)
                .spawn_scoped(s, move || {
                    for job in job_rx {
                        if done_tx.send(job.finish(log, &state, &cfg)).is_err() {
                            break;
                        }
                    }
                })
                .map_err(|e| Error::Config(format!("cannot start a commit thread: {e}")))?;
            let mut committer = Committer {
                jobs,
                done,
                in_flight: false,
            };
            let run = self.run_loop(stop, &mut committer);
            // Whatever happened, the commit in flight ends before this returns.
            let last = self.settle(&mut committer);
            run.and_then(|report| last.map(|()| report))
        })
    }

    fn run_loop(
        &mut self,
        stop: &std::sync::atomic::AtomicBool,
        committer: &mut Committer,
    ) -> Result<RunReport> {
        let mut report = RunReport::default();
        let mut last_commit = Instant::now();
        loop {
            if stop.load(std::sync::atomic::Ordering::Relaxed) {
                if self.pending > 0 || self.has_outputs() {
                    self.commit_on(committer)?;
                    report.commits += 1;
                }
                return Ok(report);
            }
            let n = self.step()?;
            report.records_in += n as u64;
            // Behind: the step read a whole poll's worth, so more is waiting. Commits
            // then come at the longer interval: each costs fsyncs and a RocksDB write
            // whatever its size, and the events it holds are late already.
            let interval = if n >= self.cfg.poll_records {
                self.cfg.commit_interval_behind
            } else {
                self.cfg.commit_interval
            };
            let due = self.pending >= self.cfg.commit_records
                || (self.pending > 0 && last_commit.elapsed() >= interval);
            if n > 0 && !due {
                continue;
            }
            if self.pending > 0 || self.has_outputs() {
                self.commit_on(committer)?;
                report.commits += 1;
                last_commit = Instant::now();
            }
            if n > 0 {
                continue;
            }
            if self.cfg.until_idle {
                self.flush_windows()?;
                self.commit_on(committer)?;
                report.commits += 1;
                return Ok(report);
            }
            // Idle: the commit in flight is finished first, so that what was read is
            // committed (and its metrics published) before the wait.
            self.settle(committer)?;
            self.wait_for_input(Duration::from_millis(50))?;
        }
    }

    /// Prepares a commit and hands its second half to the commit thread, once the
    /// one before it is finished.
    fn commit_on(&mut self, committer: &mut Committer) -> Result<()> {
        self.settle(committer)?;
        let job = self.prepare_commit()?;
        committer
            .jobs
            .send(job)
            .map_err(|_| Error::State("the commit thread has stopped".into()))?;
        committer.in_flight = true;
        Ok(())
    }

    /// Waits for the commit in flight, if any, and counts it.
    fn settle(&mut self, committer: &mut Committer) -> Result<()> {
        if !std::mem::take(&mut committer.in_flight) {
            return Ok(());
        }
        let seconds = committer
            .done
            .recv()
            .map_err(|_| Error::State("the commit thread has stopped".into()))??;
        self.committed(seconds)
    }
}

/// The processing thread's end of the commit thread.
struct Committer {
    jobs: mpsc::Sender<CommitJob>,
    done: mpsc::Receiver<Result<f64>>,
    /// A job was sent whose result is not received yet.
    in_flight: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_chunks_are_reused_once_their_records_are_dropped() {
        let mut w = RecordWriter::new();
        let first = w.chunk.as_ptr() as usize;
        let in_first =
            |r: &Record| (first..first + RECORD_CHUNK).contains(&(r.value.as_ptr() as usize));
        let quarter = |w: &mut RecordWriter, byte: u8| {
            w.written("org_1", |b| b.resize(RECORD_CHUNK / 4, byte), 0)
        };
        // Three records fill most of the first chunk; the fourth does not fit.
        let a: Vec<Record> = (0..4).map(|_| quarter(&mut w, 1)).collect();
        assert_eq!(a.iter().filter(|r| in_first(r)).count(), 3);
        // While they are alive the first chunk is not reused.
        let b: Vec<Record> = (0..4).map(|_| quarter(&mut w, 2)).collect();
        assert!(!b.iter().any(in_first));
        // Dropped, as a commit drops them once appended: the first chunk is reused,
        // and no record's bytes are overwritten.
        drop(a);
        let c: Vec<Record> = (0..4).map(|_| quarter(&mut w, 3)).collect();
        assert!(c.iter().any(in_first), "the first chunk was not reused");
        // Taken from the filled ones (not freed and allocated again at the same
        // address): the second and third chunks are left there.
        assert_eq!(w.filled.len(), 2);
        for (records, byte) in [(&b, 2), (&c, 3)] {
            for r in records {
                assert_eq!(r.key.as_deref(), Some(&b"org_1"[..]));
                assert!(r.value.iter().all(|&x| x == byte));
            }
        }
        // A record larger than a chunk gets a chunk of its own size.
        let big = w.written("k", |b| b.resize(3 * RECORD_CHUNK, 4), 0);
        assert_eq!(big.value.len(), 3 * RECORD_CHUNK);
        assert!(big.value.iter().all(|&x| x == 4));
        // The chunks kept for reuse are bounded, however many records are alive.
        let held: Vec<Record> = (0..FILLED_CHUNKS + 10)
            .map(|_| w.written("k", |b| b.resize(RECORD_CHUNK, 5), 0))
            .collect();
        assert_eq!(w.filled.len(), FILLED_CHUNKS);
        assert!(held.iter().all(|r| r.value.len() == RECORD_CHUNK));
    }

    #[test]
    fn dedup_keys_are_found_by_their_bytes_inline_or_not() {
        let long = "evt_".repeat(10);
        let ids = [
            "",
            "evt_nwlh5boz2guf",
            &long[..INLINE_ID],
            &long[..INLINE_ID + 1],
            &long,
        ];
        let mut map: HashMap<IdKey, usize> = HashMap::new();
        for (i, id) in ids.iter().enumerate() {
            let key = IdKey::new(id.as_bytes());
            assert_eq!(key.as_bytes(), id.as_bytes());
            assert_eq!(matches!(key, IdKey::Inline { .. }), id.len() <= INLINE_ID);
            map.insert(key, i);
        }
        assert_eq!(map.len(), ids.len(), "no two ids are one key");
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(map.get(id.as_bytes()), Some(&i));
        }
        assert_eq!(map.get(b"evt_nwlh5boz2gu".as_slice()), None);
    }

    #[test]
    fn a_window_is_final_once_the_watermark_reaches_its_end() {
        let h = WINDOW_MICROS / 2;
        let mut windows: BTreeMap<WindowKey, u8> = [
            ((0, 9, 9), 0),
            ((h, 0, 0), 1),
            ((h, 5, 1), 2),
            ((2 * h, 0, 0), 3),
            ((3 * h, 7, 7), 4),
        ]
        .into();
        // Nothing ends at or before the watermark: nothing closes.
        assert!(split_closed(&mut windows, WINDOW_MICROS - 1, false).is_empty());
        assert_eq!(windows.len(), 5);
        // The watermark at the end of the 30-minute window: it and those before close,
        // whatever their org and service.
        let closed = split_closed(&mut windows, h + WINDOW_MICROS, false);
        assert_eq!(closed.into_values().collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(windows.values().copied().collect::<Vec<_>>(), [3, 4]);
        // The end of input closes the rest; an empty set and the lowest watermark close
        // nothing.
        assert_eq!(split_closed(&mut windows, i64::MIN, true).len(), 2);
        assert!(windows.is_empty());
        assert!(split_closed(&mut windows, i64::MIN, false).is_empty());
        windows.insert((i64::MIN / 2, 0, 0), 5);
        assert!(split_closed(&mut windows, i64::MIN, false).is_empty());
    }
}
