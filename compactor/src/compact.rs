//! One compaction run: topics -> a new lake generation.
//!
//! Inputs are read up to the positions the processor published (`processor.outputs`):
//! its committed outputs and the raw input positions they account for, one snapshot.
//! Every raw record in that range is accounted for exactly once: bronze (when it could
//! be typed and is not a duplicate), silver or quarantine.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use eventlog::{Log, PartitionReader, StoredRecord};
use schemas::master::apply_master_rules;
use schemas::speed::{LateMessage, Lineage, SilverMessage, WindowMessage};
use schemas::stats::is_cost_spike;
use schemas::topics::{
    COMMITTED_OUTPUTS, LATE_TOPIC, QUARANTINE_TOPIC, SILVER_TOPIC, WINDOWS_TOPIC,
};
use schemas::{
    MasterTables, Outcome, Reason, SeenKeys, Source, event::parse_event, event::validate_event,
};

use crate::lake::{Lake, Manifest, NewGeneration, prune_empty_dirs};
use crate::rows::{self, date_dir_of_micros};
use crate::table::{Cell, PartitionedSink, parquet_files, read_parquet, write_parquet};
use crate::{Settings, gold};

/// What a run did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RunSummary {
    /// The generation the lake now points to, or `None` when nothing changed.
    pub generation: Option<u64>,
    pub events_in: u64,
    pub files_written: usize,
    pub files_merged: usize,
    pub spike_rewrites: usize,
    pub compact_seconds: f64,
    pub gold_seconds: f64,
}

/// Where each input topic partition ends for this run.
struct Targets {
    /// raw topic -> partition -> processor's committed input position.
    raw: BTreeMap<String, Vec<u64>>,
    /// output topic -> partition -> processor's committed output position.
    out: BTreeMap<&'static str, Vec<u64>>,
}

fn targets(log: &impl Log, event_partitions: u32) -> Result<Targets> {
    let mut raw = BTreeMap::new();
    let mut any = false;
    for source in Source::ALL {
        let topic = source.raw_topic();
        let parts = if source == Source::UsageEvents {
            event_partitions
        } else {
            1
        };
        let mut v = Vec::new();
        for p in 0..parts {
            let c = log.committed(COMMITTED_OUTPUTS, &topic, p)?;
            any |= c.is_some();
            v.push(c.unwrap_or(0));
        }
        raw.insert(topic, v);
    }
    if !any {
        bail!(
            "the processor has not committed anything yet (no {COMMITTED_OUTPUTS} positions in the log): run `processor` first"
        );
    }
    let mut out = BTreeMap::new();
    for topic in [SILVER_TOPIC, QUARANTINE_TOPIC, WINDOWS_TOPIC, LATE_TOPIC] {
        let parts = log.partitions(topic)?.unwrap_or(0);
        let mut v = Vec::new();
        for p in 0..parts {
            v.push(log.committed(COMMITTED_OUTPUTS, topic, p)?.unwrap_or(0));
        }
        out.insert(topic, v);
    }
    Ok(Targets { raw, out })
}

/// Reads one topic partition from a position up to (not including) `end`.
struct Cursor<R, T> {
    reader: R,
    buf: VecDeque<(u64, T)>,
    end: u64,
    what: String,
    decode: fn(&StoredRecord) -> Result<(u64, T)>,
}

impl<R: PartitionReader, T> Cursor<R, T> {
    fn new(
        log: &impl Log<Reader = R>,
        topic: &str,
        p: u32,
        from: u64,
        end: u64,
        decode: fn(&StoredRecord) -> Result<(u64, T)>,
    ) -> Result<Self> {
        Ok(Cursor {
            reader: log.reader(topic, p, from.min(end))?,
            buf: VecDeque::new(),
            end,
            what: format!("{topic}/{p}"),
            decode,
        })
    }

    /// The next record's key (its raw offset, or its own offset) and value.
    fn peek(&mut self) -> Result<Option<&(u64, T)>> {
        if self.buf.is_empty() && self.reader.position() < self.end {
            let want = (self.end - self.reader.position()).min(8192) as usize;
            let recs = self.reader.poll(want)?;
            if recs.is_empty() {
                bail!(
                    "{} ends at {} before its committed position {}",
                    self.what,
                    self.reader.position(),
                    self.end
                );
            }
            for r in recs.iter().filter(|r| r.offset < self.end) {
                self.buf.push_back(
                    (self.decode)(r)
                        .with_context(|| format!("{} offset {}", self.what, r.offset))?,
                );
            }
        }
        Ok(self.buf.front())
    }

    fn pop(&mut self) -> Option<(u64, T)> {
        self.buf.pop_front()
    }
}

fn own_offset(r: &StoredRecord) -> Result<(u64, StoredRecord)> {
    Ok((r.offset, r.clone()))
}

fn decode_silver(r: &StoredRecord) -> Result<(u64, SilverMessage)> {
    let m: SilverMessage = serde_json::from_slice(&r.record.value)?;
    Ok((m.lineage.offset, m))
}

fn decode_quarantine(r: &StoredRecord) -> Result<(u64, Reason)> {
    let header = |name: &str| {
        r.record
            .header(name)
            .and_then(|b| std::str::from_utf8(b).ok())
            .with_context(|| format!("quarantine record without a {name} header"))
    };
    let offset: u64 = header("raw_offset")?.parse()?;
    let code = header("reason")?;
    let reason =
        Reason::from_code(code).with_context(|| format!("unknown reason code {code:?}"))?;
    Ok((offset, reason))
}

fn decode_window(r: &StoredRecord) -> Result<(u64, WindowMessage)> {
    Ok((r.offset, serde_json::from_slice(&r.record.value)?))
}

fn decode_late(r: &StoredRecord) -> Result<(u64, LateMessage)> {
    Ok((r.offset, serde_json::from_slice(&r.record.value)?))
}

fn lineage(rec: &StoredRecord, topic: &str, p: u32) -> Lineage {
    let r = &rec.record;
    Lineage::from_headers(
        r.header("source_file"),
        r.header("line_no"),
        topic,
        p,
        rec.offset,
        r.timestamp_ms,
    )
}

/// Dedup for `--reprocess-all`: 128 bits of each kept `event_id` (two SipHash keys),
/// so memory is 16 bytes per event instead of the id's string.
#[derive(Default)]
struct SeenIds(HashSet<u128>);

impl SeenKeys for SeenIds {
    fn insert(&mut self, key: &str) -> bool {
        let h = |salt: u64| {
            let mut s = std::hash::DefaultHasher::new();
            salt.hash(&mut s);
            key.hash(&mut s);
            s.finish()
        };
        self.0.insert((u128::from(h(1)) << 64) | u128::from(h(2)))
    }
}

/// The sinks of one table family, and the files they wrote (for merging).
struct Sinks {
    bronze: PartitionedSink,
    silver: PartitionedSink,
    quarantine: PartitionedSink,
}

impl Sinks {
    fn new(source: Source) -> Sinks {
        Sinks {
            bronze: PartitionedSink::new(rows::bronze_table(source)),
            silver: PartitionedSink::new(rows::silver_table(source)),
            quarantine: PartitionedSink::new(rows::quarantine_table(source)),
        }
    }

    fn buffered(&self) -> usize {
        self.bronze.buffered() + self.silver.buffered() + self.quarantine.buffered()
    }

    fn flush(&mut self, root: &Path, name: &str, touched: &mut BTreeSet<String>) -> Result<usize> {
        let mut n = 0;
        for sink in [&mut self.bronze, &mut self.silver, &mut self.quarantine] {
            for path in sink.flush(root, name)? {
                if let Some(dir) = path.parent() {
                    touched.insert(dir.to_string_lossy().into_owned());
                }
                n += 1;
            }
        }
        Ok(n)
    }
}

/// `<topic>-<from>-<to>.parquet`: the records a file holds, as the range of the sum of
/// the topic's partition positions, so the same input always gives the same names.
fn file_name(topic: &str, from: u64, to: u64) -> String {
    format!("{topic}-{from:012}-{to:012}.parquet")
}

fn parse_file_range(name: &str) -> Option<(&str, u64, u64)> {
    let stem = name.strip_suffix(".parquet")?;
    let (rest, to) = stem.rsplit_once('-')?;
    let (topic, from) = rest.rsplit_once('-')?;
    Some((topic, from.parse().ok()?, to.parse().ok()?))
}

pub struct Run<'a, L: Log> {
    log: &'a L,
    lake: &'a Lake,
    settings: &'a Settings,
}

impl<'a, L: Log> Run<'a, L> {
    pub fn new(log: &'a L, lake: &'a Lake, settings: &'a Settings) -> Self {
        Run {
            log,
            lake,
            settings,
        }
    }

    /// Compacts what is new since the current generation (everything, into an empty
    /// generation, with `reprocess_all`), recomputes gold, and switches generations.
    pub fn run(&self, reprocess_all: bool) -> Result<RunSummary> {
        let started = Instant::now();
        let _lock = self.lake.lock()?;
        let t = targets(self.log, self.settings.event_partitions)?;
        let old = if reprocess_all {
            Manifest::default()
        } else {
            self.lake.manifest()?
        };
        let fresh = self.lake.current()?.is_none();
        if !reprocess_all && !fresh && !has_news(&old, &t) {
            tracing::info!("nothing new to compact; the lake is unchanged");
            return Ok(RunSummary::default());
        }
        let generation = self.lake.begin(reprocess_all)?;
        match self.build(&generation, old, &t, reprocess_all, started) {
            Ok(summary) => Ok(summary),
            Err(e) => {
                let _ = self.lake.abandon(generation);
                Err(e)
            }
        }
    }

    fn build(
        &self,
        g: &NewGeneration,
        old: Manifest,
        t: &Targets,
        reprocess_all: bool,
        started: Instant,
    ) -> Result<RunSummary> {
        let root = &g.dir;
        let mut m = old.clone();
        let mut summary = RunSummary::default();
        let mut touched = BTreeSet::new();

        let master = self.master(root, &old, &mut m, t, &mut touched, &mut summary)?;
        self.events(
            root,
            &old,
            &mut m,
            t,
            &master,
            reprocess_all,
            &mut touched,
            &mut summary,
        )?;
        self.speed(root, &old, &mut m, t, &mut touched, &mut summary)?;
        summary.files_merged = self.merge(&touched)?;
        summary.compact_seconds = started.elapsed().as_secs_f64();

        let gold_started = Instant::now();
        let thresholds = old.spike_thresholds.clone();
        let outcome = gold::compute(root, self.settings, &thresholds)?;
        summary.spike_rewrites = outcome.rewritten_files;
        m.spike_thresholds = outcome.thresholds;
        gold::write_accounting(
            root,
            t.raw.iter().map(|(k, v)| (k.as_str(), v.iter().sum())),
        )?;
        summary.gold_seconds = gold_started.elapsed().as_secs_f64();

        prune_empty_dirs(root)?;
        self.lake.commit(g, &m)?;
        summary.generation = Some(g.number);
        Ok(summary)
    }

    /// Master data: the rules run over each CSV topic from offset 0 (the tables are
    /// small, and the rules need every earlier kept row); rows at or after the
    /// compacted position are written.
    fn master(
        &self,
        root: &Path,
        old: &Manifest,
        m: &mut Manifest,
        t: &Targets,
        touched: &mut BTreeSet<String>,
        summary: &mut RunSummary,
    ) -> Result<MasterTables> {
        let mut tables = MasterTables::default();
        for source in Source::MASTER {
            let topic = source.raw_topic();
            let end = t
                .raw
                .get(&topic)
                .and_then(|v| v.first())
                .copied()
                .unwrap_or(0);
            let from = old.position(&topic, 0);
            let mut seen: HashSet<String> = HashSet::new();
            let mut sinks = Sinks::new(source);
            let mut cur = Cursor::new(self.log, &topic, 0, 0, end, own_offset)?;
            while let Some((_, rec)) = cur.peek()?.is_some().then(|| cur.pop()).flatten() {
                let outcome = apply_master_rules(source, &rec.record.value, &tables, &mut seen);
                if let Outcome::Kept { record, .. } = &outcome {
                    tables.absorb(record);
                }
                if rec.offset < from {
                    continue;
                }
                let l = lineage(&rec, &topic, 0);
                let mut cells = Vec::new();
                let typed = match &outcome {
                    // Bronze is the row as typed: before credits are imputed.
                    Outcome::Kept { .. } => Some(
                        schemas::parse_master(source, &rec.record.value)
                            .map_err(|r| anyhow::anyhow!("{topic}@{}: {r:?}", rec.offset))?,
                    ),
                    Outcome::Quarantined { reason } if reason.in_bronze() => {
                        schemas::parse_master(source, &rec.record.value).ok()
                    }
                    Outcome::Quarantined { .. } => None,
                };
                if let Some(t) = &typed {
                    rows::bronze_master_row(&mut cells, t, &l);
                    sinks.bronze.push("", &cells)?;
                }
                match &outcome {
                    Outcome::Kept { record, flags } => {
                        rows::silver_master_row(&mut cells, record, flags, &l);
                        sinks.silver.push("", &cells)?;
                    }
                    Outcome::Quarantined { reason } => {
                        rows::quarantine_row(&mut cells, source, &rec.record.value, *reason, &l);
                        sinks.quarantine.push("", &cells)?;
                    }
                }
            }
            if end > from {
                summary.files_written +=
                    sinks.flush(root, &file_name(&topic, from, end), touched)?;
            }
            m.set_position(&topic, 0, end.max(from));
        }
        Ok(tables)
    }

    /// Usage events, partition by partition: each raw record with its outcome, from
    /// the processor's topics (incremental) or from the rules (`--reprocess-all`).
    #[allow(clippy::too_many_arguments)]
    fn events(
        &self,
        root: &Path,
        old: &Manifest,
        m: &mut Manifest,
        t: &Targets,
        master: &MasterTables,
        reprocess_all: bool,
        touched: &mut BTreeSet<String>,
        summary: &mut RunSummary,
    ) -> Result<()> {
        let topic = Source::UsageEvents.raw_topic();
        let ends = t.raw.get(&topic).cloned().unwrap_or_default();
        let source = Source::UsageEvents;
        let mut sinks = Sinks::new(source);
        let mut seen = SeenIds::default();
        let mut spare = Vec::new();
        // Positions summed over partitions: the range of the file names.
        let mut chunk_start: u64 = (0..ends.len() as u32)
            .map(|p| old.position(&topic, p))
            .sum();
        let mut done = chunk_start;
        for (p, &end) in ends.iter().enumerate() {
            let p = p as u32;
            let from = old.position(&topic, p);
            if end <= from {
                continue;
            }
            let mut raw = Cursor::new(self.log, &topic, p, from, end, own_offset)?;
            let out_end = |topic: &str| {
                t.out
                    .get(topic)
                    .and_then(|v| v.get(p as usize))
                    .copied()
                    .unwrap_or(0)
            };
            let (silver_end, q_end) = (out_end(SILVER_TOPIC), out_end(QUARANTINE_TOPIC));
            let mut silver = Cursor::new(
                self.log,
                SILVER_TOPIC,
                p,
                old.position(SILVER_TOPIC, p),
                if reprocess_all { 0 } else { silver_end },
                decode_silver,
            )?;
            let mut quarantine = Cursor::new(
                self.log,
                QUARANTINE_TOPIC,
                p,
                old.position(QUARANTINE_TOPIC, p),
                if reprocess_all { 0 } else { q_end },
                decode_quarantine,
            )?;
            while let Some((o, rec)) = raw.peek()?.is_some().then(|| raw.pop()).flatten() {
                let l = lineage(&rec, &topic, p);
                let value = &rec.record.value;
                let mut cells = recycle(std::mem::take(&mut spare));
                let outcome = if reprocess_all {
                    match parse_event(value) {
                        Ok(b) => match validate_event(b, master, &mut seen) {
                            Outcome::Kept { record, flags } => Ok((record, flags)),
                            Outcome::Quarantined { reason } => Err(reason),
                        },
                        Err(reason) => Err(reason),
                    }
                } else {
                    // Outputs of raw records before `from` were compacted already.
                    while silver.peek()?.is_some_and(|(ro, _)| *ro < o) {
                        silver.pop();
                    }
                    while quarantine.peek()?.is_some_and(|(ro, _)| *ro < o) {
                        quarantine.pop();
                    }
                    if silver.peek()?.is_some_and(|(ro, _)| *ro == o) {
                        let (_, msg) = silver.pop().context("peeked")?;
                        Ok((msg.event, msg.flags))
                    } else if quarantine.peek()?.is_some_and(|(ro, _)| *ro == o) {
                        Err(quarantine.pop().context("peeked")?.1)
                    } else {
                        bail!(
                            "{topic}/{p} offset {o} has no processor output although the processor committed past it"
                        );
                    }
                };
                let bronze = match &outcome {
                    Ok(_) => Some(
                        parse_event(value)
                            .map_err(|r| anyhow::anyhow!("{topic}/{p}@{o}: kept but {r:?}"))?,
                    ),
                    Err(reason) if reason.in_bronze() => parse_event(value).ok(),
                    Err(_) => None,
                };
                if let Some(b) = &bronze {
                    rows::bronze_event_row(&mut cells, b, &l);
                    sinks
                        .bronze
                        .push(&date_dir_of_micros(b.ts_micros), &cells)?;
                }
                match &outcome {
                    Ok((event, flags)) => {
                        // With the thresholds of the last run; gold::compute corrects
                        // the files once this run's costs have moved them.
                        let mut flags = *flags;
                        flags.cost_spike =
                            old.spike_thresholds.get(&event.service).is_some_and(|p99| {
                                is_cost_spike(event.cost_usd, *p99, self.settings.spike_factor)
                            });
                        rows::silver_event_row(&mut cells, event, &flags, &l);
                        sinks.silver.push(&rows::silver_event_dir(event), &cells)?;
                    }
                    Err(reason) => {
                        rows::quarantine_row(&mut cells, source, value, *reason, &l);
                        sinks.quarantine.push("", &cells)?;
                    }
                }
                spare = recycle(cells);
                summary.events_in += 1;
                done += 1;
                if sinks.buffered() >= self.settings.flush_rows {
                    summary.files_written +=
                        sinks.flush(root, &file_name(&topic, chunk_start, done), touched)?;
                    chunk_start = done;
                }
            }
            m.set_position(&topic, p, end);
            m.set_position(
                SILVER_TOPIC,
                p,
                silver_end.max(old.position(SILVER_TOPIC, p)),
            );
            m.set_position(
                QUARANTINE_TOPIC,
                p,
                q_end.max(old.position(QUARANTINE_TOPIC, p)),
            );
        }
        if done > chunk_start {
            summary.files_written +=
                sinks.flush(root, &file_name(&topic, chunk_start, done), touched)?;
        }
        Ok(())
    }

    /// `speed/usage_windows` and `speed/late_events`, as the processor emitted them.
    fn speed(
        &self,
        root: &Path,
        old: &Manifest,
        m: &mut Manifest,
        t: &Targets,
        touched: &mut BTreeSet<String>,
        summary: &mut RunSummary,
    ) -> Result<()> {
        for topic in [WINDOWS_TOPIC, LATE_TOPIC] {
            let ends = t.out.get(topic).cloned().unwrap_or_default();
            let start: u64 = (0..ends.len() as u32).map(|p| old.position(topic, p)).sum();
            let mut sink = PartitionedSink::new(if topic == WINDOWS_TOPIC {
                rows::windows_table()
            } else {
                rows::late_table()
            });
            let mut done = start;
            for (p, &end) in ends.iter().enumerate() {
                let p = p as u32;
                let from = old.position(topic, p);
                if end <= from {
                    continue;
                }
                if topic == WINDOWS_TOPIC {
                    let mut cur = Cursor::new(self.log, topic, p, from, end, decode_window)?;
                    while let Some((o, w)) = cur.peek()?.is_some().then(|| cur.pop()).flatten() {
                        let mut cells = Vec::with_capacity(12);
                        rows::window_row(&mut cells, &w, p, o);
                        sink.push(&date_dir_of_micros(w.window_start), &cells)?;
                        done += 1;
                    }
                } else {
                    let mut cur = Cursor::new(self.log, topic, p, from, end, decode_late)?;
                    while let Some((o, w)) = cur.peek()?.is_some().then(|| cur.pop()).flatten() {
                        let mut cells = Vec::with_capacity(8);
                        rows::late_row(&mut cells, &w, p, o);
                        sink.push(&date_dir_of_micros(w.event_time), &cells)?;
                        done += 1;
                    }
                }
                m.set_position(topic, p, end);
            }
            if done > start {
                for path in sink.flush(root, &file_name(topic, start, done))? {
                    if let Some(dir) = path.parent() {
                        touched.insert(dir.to_string_lossy().into_owned());
                    }
                    summary.files_written += 1;
                }
            }
        }
        Ok(())
    }

    /// Merges every touched directory holding more than `max_files_per_partition`
    /// files into one file named by the union of their ranges.
    fn merge(&self, touched: &BTreeSet<String>) -> Result<usize> {
        let mut merged = 0;
        for dir in touched {
            let dir = Path::new(dir);
            let files: Vec<_> = parquet_files(dir)?
                .into_iter()
                .filter(|f| f.parent() == Some(dir))
                .collect();
            if files.len() <= self.settings.max_files_per_partition {
                continue;
            }
            let ranges: Vec<_> = files
                .iter()
                .filter_map(|f| {
                    let name = f.file_name()?.to_str()?;
                    parse_file_range(name).map(|(t, a, b)| (t.to_owned(), a, b))
                })
                .collect();
            let (Some(first), true) = (ranges.first(), ranges.len() == files.len()) else {
                bail!("{}: files not named by offset range", dir.display());
            };
            let from = ranges.iter().map(|r| r.1).min().unwrap_or(0);
            let to = ranges.iter().map(|r| r.2).max().unwrap_or(0);
            let target = dir.join(file_name(&first.0, from, to));
            let schema = {
                let b = read_parquet(&files[0], None)?;
                match b.first() {
                    Some(b) => b.schema(),
                    None => continue,
                }
            };
            let batches = files
                .iter()
                .map(|f| read_parquet(f, None))
                .collect::<Result<Vec<_>>>()?
                .into_iter()
                .flatten()
                .map(Ok);
            write_parquet(&target, &schema, batches)?;
            for f in &files {
                if f != &target {
                    std::fs::remove_file(f).with_context(|| format!("remove {}", f.display()))?;
                }
            }
            merged += files.len();
        }
        Ok(merged)
    }
}

/// An emptied row buffer, with its allocation, for borrows of the next record.
fn recycle<'b>(mut v: Vec<Cell<'_>>) -> Vec<Cell<'b>> {
    v.clear();
    v.into_iter().map(|_| Cell::Null).collect()
}

fn has_news(old: &Manifest, t: &Targets) -> bool {
    let raw = t.raw.iter().any(|(topic, ends)| {
        ends.iter()
            .enumerate()
            .any(|(p, e)| *e > old.position(topic, p as u32))
    });
    let out = [WINDOWS_TOPIC, LATE_TOPIC].iter().any(|topic| {
        t.out.get(topic).is_some_and(|ends| {
            ends.iter()
                .enumerate()
                .any(|(p, e)| *e > old.position(topic, p as u32))
        })
    });
    raw || out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_carry_their_range() {
        let n = file_name("raw.usage_events", 10, 20);
        assert_eq!(n, "raw.usage_events-000000000010-000000000020.parquet");
        assert_eq!(parse_file_range(&n), Some(("raw.usage_events", 10, 20)));
        assert_eq!(parse_file_range("x.parquet"), None);
    }
}
