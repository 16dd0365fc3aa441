//! `producer replay`: every landing record to its raw topic.
//!
//! A replay is a *run* of one or more *rounds*; a round is a fixed set of files
//! replayed in a fixed order (the first round is what the directory held at the start,
//! each later one what `--follow` found). Before a round appends anything, its file
//! list and the end offset of every raw topic partition are saved. The order of the
//! records a round sends to each partition is deterministic, so after a crash the
//! round resumes by skipping, per partition, exactly the records the log already has
//! since the saved offsets: no gap, no repeat. A finished run (replay without
//! `--follow` that completed) is not resumed: replaying the directory again appends
//! every record again, and the duplicates are the rules' business.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use eventlog::{Bytes, HeaderName, Log, Record, partition_for};
use schemas::Source;
use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::landing::{self, LandingFile};
use crate::sort::{Entry, ExternalSorter};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Order {
    EventTime,
    File,
}

#[derive(Debug, Clone)]
pub struct ReplayOptions {
    pub landing: PathBuf,
    pub order: Order,
    /// Pace usage events at this many times event time.
    pub speedup: Option<f64>,
    pub follow: bool,
    /// Start a new run even if the last one was interrupted.
    pub new_run: bool,
    /// Where the run state and the sort's spill files live.
    pub state_dir: PathBuf,
    pub event_partitions: u32,
    pub batch_records: usize,
    pub sort_chunk_entries: usize,
    pub follow_poll: Duration,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplayReport {
    /// Records appended by this invocation, per topic.
    pub appended: BTreeMap<String, u64>,
    /// Records found already in the log when resuming an interrupted round.
    pub resumed_past: u64,
    pub rounds: usize,
    pub ignored_files: Vec<String>,
    /// The replay stopped (on `stop`) before it finished: the next replay of the
    /// directory resumes where this one stopped.
    pub stopped: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct RunState {
    landing: String,
    order: Order,
    finished: bool,
    rounds: Vec<Round>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Round {
    files: Vec<String>,
    /// `topic/partition` -> end offset when the round started.
    start: BTreeMap<String, u64>,
    done: bool,
}

/// The topics a replay writes, with their partition counts.
fn raw_topics(event_partitions: u32) -> Vec<(String, u32)> {
    Source::ALL
        .iter()
        .map(|s| {
            let n = if *s == Source::UsageEvents {
                event_partitions
            } else {
                1
            };
            (s.raw_topic().to_owned(), n)
        })
        .collect()
}

fn state_path(state_dir: &Path, landing: &Path) -> PathBuf {
    let text = landing.to_string_lossy();
    let name: String = landing
        .file_name()
        .map(|n| {
            n.to_string_lossy()
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        })
        .unwrap_or_default();
    state_dir.join(format!(
        "replay-{name}-{:08x}.json",
        crc32c::crc32c(text.as_bytes())
    ))
}

fn load_state(path: &Path) -> Result<Option<RunState>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::State {
                path: path.to_owned(),
                detail: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).io("read", path),
    }
}

fn save_state(path: &Path, state: &RunState) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(state).map_err(|e| Error::State {
        path: path.to_owned(),
        detail: e.to_string(),
    })?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, &bytes).io("write", &tmp)?;
    File::open(&tmp)
        .and_then(|f| f.sync_all())
        .io("fsync", &tmp)?;
    std::fs::rename(&tmp, path).io("rename", path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .io("fsync", dir)?;
    }
    Ok(())
}

/// Replays a landing directory into the raw topics. Returns when done, or when
/// `stop` is set: then after appending what it has batched, with the round left
/// unfinished for the next replay to resume (`report.stopped`).
pub fn replay<L: Log>(log: &L, opts: &ReplayOptions, stop: &AtomicBool) -> Result<ReplayReport> {
    let landing = opts
        .landing
        .canonicalize()
        .map_err(|e| Error::Usage(format!("landing directory {}: {e}", opts.landing.display())))?;
    if !landing.is_dir() {
        return Err(Error::Usage(format!(
            "{} is not a directory",
            landing.display()
        )));
    }
    if opts.speedup.is_some_and(|x| !(x.is_finite() && x > 0.0)) {
        return Err(Error::Usage("--speedup must be a positive number".into()));
    }
    std::fs::create_dir_all(&opts.state_dir).io("create directory", &opts.state_dir)?;
    let topics = raw_topics(opts.event_partitions);
    let mut partitions = HashMap::new();
    for (topic, n) in &topics {
        partitions.insert(topic.clone(), log.ensure_topic(topic, *n)?);
    }
    let path = state_path(&opts.state_dir, &landing);
    let mut state = match load_state(&path)? {
        Some(s) if !s.finished && !opts.new_run => {
            if s.order != opts.order {
                tracing::warn!(
                    "resuming an interrupted replay in its original order ({:?}), not {:?}",
                    s.order,
                    opts.order
                );
            }
            s
        }
        _ => RunState {
            landing: landing.to_string_lossy().into_owned(),
            order: opts.order,
            finished: false,
            rounds: Vec::new(),
        },
    };
    let mut report = ReplayReport::default();
    let mut sink = Sink::new(log, &partitions, opts.batch_records, stop);
    let mut warned: HashSet<String> = HashSet::new();
    loop {
        let (files, ignored) = landing::scan(&landing)?;
        for f in ignored {
            if warned.insert(f.clone()) {
                tracing::warn!(file = %f, "not a landing file; ignored");
                report.ignored_files.push(f);
            }
        }
        let known: HashSet<&str> = state
            .rounds
            .iter()
            .flat_map(|r| r.files.iter().map(String::as_str))
            .collect();
        let fresh: Vec<String> = files
            .iter()
            .filter(|f| !known.contains(f.rel.as_str()))
            .map(|f| f.rel.clone())
            .collect();
        if !fresh.is_empty() && state.rounds.last().is_none_or(|r| r.done) {
            let mut start = BTreeMap::new();
            for (topic, n) in &partitions {
                for p in 0..*n {
                    start.insert(format!("{topic}/{p}"), log.end_offset(topic, p)?);
                }
            }
            state.rounds.push(Round {
                files: fresh,
                start,
                done: false,
            });
            save_state(&path, &state)?;
        }
        if let Some(round) = state.rounds.last().filter(|r| !r.done).cloned() {
            let by_rel: HashMap<&str, &LandingFile> =
                files.iter().map(|f| (f.rel.as_str(), f)).collect();
            let mut round_files = Vec::new();
            for rel in &round.files {
                let f = by_rel.get(rel.as_str()).ok_or_else(|| {
                    Error::Usage(format!(
                        "{rel} was part of the interrupted replay but is gone from {}; \
                         restore it, or start over with --new-run",
                        landing.display()
                    ))
                })?;
                round_files.push((*f).clone());
            }
            sink.resume_from(&round.start)?;
            report.resumed_past += sink.skipping();
            let ran = run_round(&mut sink, &round_files, state.order, opts);
            sink.flush_all()?;
            log.flush()?;
            match ran {
                Err(Error::Stopped) => {
                    report.stopped = true;
                    report.appended = sink.appended;
                    return Ok(report);
                }
                other => other?,
            }
            if let Some(last) = state.rounds.last_mut() {
                last.done = true;
            }
            save_state(&path, &state)?;
            report.rounds += 1;
            continue;
        }
        if !opts.follow || stop.load(Ordering::Relaxed) {
            break;
        }
        std::thread::sleep(opts.follow_poll);
        if stop.load(Ordering::Relaxed) {
            break;
        }
    }
    if !opts.follow {
        state.finished = true;
        save_state(&path, &state)?;
    }
    report.appended = sink.appended;
    Ok(report)
}

/// Batches records per topic partition and skips what a resumed round already wrote.
/// Partitions are addressed by slot (see [`Sink::slot`]) to keep the hot path free of
/// string keys.
struct Sink<'a, L: Log> {
    log: &'a L,
    /// Checked after each append: once set, the round ends with [`Error::Stopped`].
    stop: &'a AtomicBool,
    batch_records: usize,
    slots: Vec<Slot>,
    first_slot: HashMap<String, usize>,
    appended: BTreeMap<String, u64>,
}

struct Slot {
    topic: String,
    partition: u32,
    buffer: Vec<Record>,
    skip: u64,
}

impl<'a, L: Log> Sink<'a, L> {
    fn new(
        log: &'a L,
        partitions: &HashMap<String, u32>,
        batch_records: usize,
        stop: &'a AtomicBool,
    ) -> Self {
        let mut slots = Vec::new();
        let mut first_slot = HashMap::new();
        let mut topics: Vec<(&String, &u32)> = partitions.iter().collect();
        topics.sort();
        for (topic, n) in topics {
            first_slot.insert(topic.clone(), slots.len());
            for p in 0..*n {
                slots.push(Slot {
                    topic: topic.clone(),
                    partition: p,
                    buffer: Vec::new(),
                    skip: 0,
                });
            }
        }
        Sink {
            log,
            stop,
            batch_records: batch_records.max(1),
            slots,
            first_slot,
            appended: BTreeMap::new(),
        }
    }

    fn slot(&self, topic: &str, partition: u32) -> Result<usize> {
        self.first_slot
            .get(topic)
            .map(|first| first + partition as usize)
            .ok_or_else(|| Error::Usage(format!("no such topic {topic}")))
    }

    fn skipping(&self) -> u64 {
        self.slots.iter().map(|s| s.skip).sum()
    }

    fn resume_from(&mut self, start: &BTreeMap<String, u64>) -> Result<()> {
        for slot in &mut self.slots {
            let from = start
                .get(&format!("{}/{}", slot.topic, slot.partition))
                .copied()
                .unwrap_or(0);
            let end = self.log.end_offset(&slot.topic, slot.partition)?;
            slot.skip = end.saturating_sub(from);
        }
        Ok(())
    }

    /// Whether the next record for this slot is new (else it is skipped).
    fn is_new(&mut self, slot: usize) -> bool {
        let s = &mut self.slots[slot];
        if s.skip > 0 {
            s.skip -= 1;
            false
        } else {
            true
        }
    }

    fn push(&mut self, slot: usize, record: Record) -> Result<()> {
        self.slots[slot].buffer.push(record);
        if self.slots[slot].buffer.len() >= self.batch_records {
            self.flush(slot)?;
            self.check_stop()?;
        }
        Ok(())
    }

    fn check_stop(&self) -> Result<()> {
        if self.stop.load(Ordering::Relaxed) {
            return Err(Error::Stopped);
        }
        Ok(())
    }

    fn flush(&mut self, slot: usize) -> Result<()> {
        let s = &mut self.slots[slot];
        if s.buffer.is_empty() {
            return Ok(());
        }
        self.log.append(&s.topic, s.partition, &s.buffer)?;
        match self.appended.get_mut(&s.topic) {
            Some(n) => *n += s.buffer.len() as u64,
            None => {
                self.appended.insert(s.topic.clone(), s.buffer.len() as u64);
            }
        }
        s.buffer.clear();
        Ok(())
    }

    fn flush_all(&mut self) -> Result<()> {
        for slot in 0..self.slots.len() {
            self.flush(slot)?;
        }
        Ok(())
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn lineage(rel: &Bytes, line_no: u64) -> Vec<(HeaderName, Bytes)> {
    vec![
        (HeaderName::Borrowed("source_file"), rel.clone()),
        (
            HeaderName::Borrowed("line_no"),
            Bytes::from(line_no.to_string().into_bytes()),
        ),
    ]
}

/// A usage-event line as its raw record: keyed by `org_id` (by its own bytes when it
/// has none), value unchanged.
fn event_record(line: &[u8], rel: &Bytes, line_no: u64, partitions: u32) -> (u32, Record) {
    let routing = schemas::event::event_routing(line);
    let key = match routing.org_id {
        Some(org) => org.as_bytes().to_vec(),
        None => line.to_vec(),
    };
    let partition = partition_for(&key, partitions);
    let record = Record {
        key: Some(key.into()),
        value: Bytes::copy_from_slice(line),
        headers: lineage(rel, line_no),
        timestamp_ms: routing
            .ts_micros
            .map_or_else(now_ms, |us| us.div_euclid(1000)),
    };
    (partition, record)
}

/// The line without its terminator (`\n` or `\r\n`).
fn strip_eol(mut line: &[u8]) -> &[u8] {
    if let Some(l) = line.strip_suffix(b"\n") {
        line = l;
    }
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn run_round<L: Log>(
    sink: &mut Sink<'_, L>,
    files: &[LandingFile],
    order: Order,
    opts: &ReplayOptions,
) -> Result<()> {
    // Master data first, orgs before the rest: the rules look orgs up.
    for source in Source::MASTER {
        for f in files.iter().filter(|f| f.source == source) {
            replay_csv(sink, f)?;
        }
    }
    let events: Vec<&LandingFile> = files
        .iter()
        .filter(|f| f.source == Source::UsageEvents)
        .collect();
    let first = sink.slot(Source::UsageEvents.raw_topic(), 0)?;
    let partitions = opts.event_partitions;
    let mut pacer = Pacer::new(opts.speedup);
    let progress = crate::progress::bar("replaying events");
    match order {
        Order::File => {
            for f in &events {
                let rel = Bytes::copy_from_slice(f.rel.as_bytes());
                let mut r =
                    BufReader::with_capacity(1 << 20, File::open(&f.path).io("open", &f.path)?);
                let mut line = Vec::new();
                let mut line_no = 0u64;
                loop {
                    line.clear();
                    if r.read_until(b'\n', &mut line).io("read", &f.path)? == 0 {
                        break;
                    }
                    line_no += 1;
                    let body = strip_eol(&line);
                    if body.is_empty() {
                        continue;
                    }
                    let (p, rec) = event_record(body, &rel, line_no, partitions);
                    if sink.is_new(first + p as usize) {
                        pacer.pace(sink, rec.timestamp_ms)?;
                        sink.push(first + p as usize, rec)?;
                    }
                    if line_no.is_multiple_of(4096) {
                        progress.inc(4096);
                    }
                }
            }
        }
        Order::EventTime => {
            let spill = opts.state_dir.join(format!("sort-{}", std::process::id()));
            let result = replay_sorted(sink, &events, &spill, opts, &mut pacer, &progress, first);
            let _ = std::fs::remove_dir_all(&spill);
            result?;
        }
    }
    progress.finish_and_clear();
    Ok(())
}

fn replay_sorted<L: Log>(
    sink: &mut Sink<'_, L>,
    events: &[&LandingFile],
    spill: &Path,
    opts: &ReplayOptions,
    pacer: &mut Pacer,
    progress: &indicatif::ProgressBar,
    first: usize,
) -> Result<()> {
    let mut sorter = ExternalSorter::new(spill, opts.sort_chunk_entries);
    // Reading times is most of the sort's cost and each file is independent: two
    // threads scan files while this one feeds the sorter (the order entries arrive in
    // does not matter, the sort is total).
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| -> Result<()> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Vec<Entry>>>(4);
        for _ in 0..2 {
            let tx = tx.clone();
            let next = &next;
            scope.spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(f) = events.get(i) else { break };
                    let scanned = scan_times(f, i as u32);
                    let failed = scanned.is_err();
                    if tx.send(scanned).is_err() || failed {
                        break;
                    }
                }
            });
        }
        drop(tx);
        for entries in rx {
            for e in entries? {
                sorter.push(e)?;
            }
        }
        Ok(())
    })?;
    let mut sorted = sorter.finish()?;
    let rels: Vec<Bytes> = events
        .iter()
        .map(|f| Bytes::copy_from_slice(f.rel.as_bytes()))
        .collect();
    let mut open: HashMap<u32, File> = HashMap::new();
    let mut line = Vec::new();
    while let Some(e) = sorted.next_entry()? {
        let f = events[e.file as usize];
        if open.len() >= 256 && !open.contains_key(&e.file) {
            open.clear();
        }
        let file = match open.entry(e.file) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(File::open(&f.path).io("open", &f.path)?)
            }
        };
        line.resize(e.len as usize, 0);
        file.read_exact_at(&mut line, e.offset)
            .io("read", &f.path)?;
        let (p, rec) = event_record(
            &line,
            &rels[e.file as usize],
            e.line_no,
            opts.event_partitions,
        );
        if sink.is_new(first + p as usize) {
            pacer.pace(sink, rec.timestamp_ms)?;
            sink.push(first + p as usize, rec)?;
        }
        if e.line_no.is_multiple_of(4096) {
            progress.inc(4096);
        }
    }
    Ok(())
}

/// The sort entry of every line of one event file.
fn scan_times(f: &LandingFile, file: u32) -> Result<Vec<Entry>> {
    let mut r = BufReader::with_capacity(1 << 20, File::open(&f.path).io("open", &f.path)?);
    let mut entries = Vec::new();
    let mut line = Vec::new();
    let mut offset = 0u64;
    let mut line_no = 0u64;
    loop {
        line.clear();
        let n = r.read_until(b'\n', &mut line).io("read", &f.path)?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let body = strip_eol(&line);
        if !body.is_empty() {
            let ts = schemas::event::event_routing(body)
                .ts_micros
                .unwrap_or(i64::MIN);
            let len = u32::try_from(body.len()).map_err(|_| {
                Error::Usage(format!("{} line {line_no} is longer than 4 GiB", f.rel))
            })?;
            entries.push(Entry {
                ts_micros: ts,
                file,
                offset,
                len,
                line_no,
            });
        }
        offset += n as u64;
    }
    Ok(entries)
}

fn replay_csv<L: Log>(sink: &mut Sink<'_, L>, f: &LandingFile) -> Result<()> {
    let slot = sink.slot(f.source.raw_topic(), 0)?;
    let file = File::open(&f.path).io("open", &f.path)?;
    let rel = Bytes::copy_from_slice(f.rel.as_bytes());
    csv_rows(file, f.source, |key, value, line_no| {
        if sink.is_new(slot) {
            sink.push(
                slot,
                Record {
                    key: Some(key.into_bytes().into()),
                    value: value.into(),
                    headers: lineage(&rel, line_no),
                    timestamp_ms: now_ms(),
                },
            )?;
        }
        Ok(())
    })
    .map_err(|e| match e {
        Error::Usage(m) => Error::Usage(format!("{}: {m}", f.path.display())),
        other => other,
    })
}

/// Each row of a CSV extract of `source` as its raw record (natural key, the row as a
/// JSON object of its fields) and line number: the header row names the fields, a
/// byte-order mark is dropped, rows may have more or fewer fields than the header.
pub fn csv_rows(
    input: impl std::io::Read,
    source: Source,
    mut each: impl FnMut(String, Vec<u8>, u64) -> Result<()>,
) -> Result<()> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(input);
    let header: Vec<String> = reader
        .byte_headers()
        .map_err(|e| Error::Usage(e.to_string()))?
        .iter()
        .map(|h| {
            String::from_utf8_lossy(h)
                .trim_start_matches('\u{feff}')
                .to_owned()
        })
        .collect();
    let mut row = csv::ByteRecord::new();
    loop {
        match reader.read_byte_record(&mut row) {
            Ok(true) => {}
            Ok(false) => return Ok(()),
            Err(e) => return Err(Error::Usage(e.to_string())),
        }
        let line_no = row.position().map_or(0, |p| p.line());
        let fields: Vec<&[u8]> = row.iter().collect();
        let (key, value) = schemas::csv_row_value(source, &header, &fields);
        each(key, value, line_no)?;
    }
}

/// Paces events at `speedup` times event time: the first event sets the clock.
struct Pacer {
    speedup: Option<f64>,
    origin: Option<(i64, Instant)>,
}

impl Pacer {
    fn new(speedup: Option<f64>) -> Pacer {
        Pacer {
            speedup,
            origin: None,
        }
    }

    fn pace<L: Log>(&mut self, sink: &mut Sink<'_, L>, event_ms: i64) -> Result<()> {
        let Some(x) = self.speedup else { return Ok(()) };
        let (t0, w0) = *self.origin.get_or_insert((event_ms, Instant::now()));
        let due = w0 + Duration::from_secs_f64(((event_ms - t0).max(0) as f64 / 1000.0) / x);
        let now = Instant::now();
        if due > now {
            // What is due now must be visible before we sleep.
            sink.flush_all()?;
            // In steps, so that a stop is not kept waiting for a gap in event time.
            while Instant::now() < due {
                sink.check_stop()?;
                std::thread::sleep(
                    due.saturating_duration_since(Instant::now())
                        .min(Duration::from_millis(100)),
                );
            }
        }
        Ok(())
    }
}
