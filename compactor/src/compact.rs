//! One compaction run: topics -> a new lake generation.
//!
//! Inputs are read up to the positions the processor published (`processor.outputs`):
//! its committed outputs and the raw input positions they account for, one snapshot.
//! Every raw record in that range is accounted for exactly once: bronze (when it could
//! be typed and is not a duplicate), silver or quarantine.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use eventlog::{Log, PartitionReader, StoredRecord};
use schemas::speed::{
    LateMessage, Lineage, LineageBuilder, SilverMessage, SilverParts, WindowMessage,
};
use schemas::topics::{
    COMMITTED_OUTPUTS, LATE_TOPIC, QUARANTINE_TOPIC, SILVER_TOPIC, WINDOWS_TOPIC,
};
use schemas::{
    BronzeEvent, EventFlags, MasterTables, Outcome, Reason, SeenKeys, SilverEvent, Source,
    event::parse_event, event::validate_event,
};

use crate::cursor::Cursor;
use crate::lake::{Lake, Manifest, NewGeneration, prune_empty_dirs};
use crate::rows;
use crate::table::{Cell, PartitionedSink, RowOrder, parquet_files, read_parquet, write_parquet};
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
    raw: BTreeMap<&'static str, Vec<u64>>,
    /// output topic -> partition -> processor's committed output position.
    out: BTreeMap<&'static str, Vec<u64>>,
}

fn targets(log: &impl Log, event_partitions: u32) -> Result<Targets> {
    // Every position from one read of the processor's publication: its processing
    // threads publish one after the other, and raw positions read before the outputs
    // they account for were published again would skip outputs past them.
    let mut wanted: Vec<(&'static str, u32)> = Vec::new();
    for source in Source::ALL {
        let parts = if source == Source::UsageEvents {
            event_partitions
        } else {
            1
        };
        wanted.extend((0..parts).map(|p| (source.raw_topic(), p)));
    }
    let raw_count = wanted.len();
    for topic in [SILVER_TOPIC, QUARANTINE_TOPIC, WINDOWS_TOPIC, LATE_TOPIC] {
        let parts = log.partitions(topic)?.unwrap_or(0);
        wanted.extend((0..parts).map(|p| (topic, p)));
    }
    let got = log.committed_many(COMMITTED_OUTPUTS, &wanted)?;
    if !got[..raw_count].iter().any(Option::is_some) {
        bail!(
            "the processor has not committed anything yet (no {COMMITTED_OUTPUTS} positions in the log): run `processor` first"
        );
    }
    let (mut raw, mut out) = (BTreeMap::new(), BTreeMap::new());
    for (i, ((topic, _), pos)) in wanted.iter().zip(got).enumerate() {
        let into: &mut BTreeMap<&'static str, Vec<u64>> =
            if i < raw_count { &mut raw } else { &mut out };
        into.entry(*topic).or_default().push(pos.unwrap_or(0));
    }
    Ok(Targets { raw, out })
}

fn own_offset(r: StoredRecord) -> Result<(u64, StoredRecord)> {
    Ok((r.offset, r))
}

/// A silver record's event, flags and raw offset, read as the processor writes it
/// (serde for anything else); the rest of its lineage is the raw record's, read
/// there.
fn decode_silver(r: StoredRecord) -> Result<(u64, SilverParts)> {
    let parts = SilverMessage::read(&r.record.value)?;
    Ok((parts.2, parts))
}

fn decode_quarantine(r: StoredRecord) -> Result<(u64, Reason)> {
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

fn decode_window(r: StoredRecord) -> Result<(u64, WindowMessage)> {
    Ok((r.offset, WindowMessage::decode(&r.record.value)?))
}

fn decode_late(r: StoredRecord) -> Result<(u64, LateMessage)> {
    Ok((r.offset, serde_json::from_slice(&r.record.value)?))
}

fn lineage(b: &mut LineageBuilder, rec: &StoredRecord, topic: &'static str, p: u32) -> Lineage {
    let r = &rec.record;
    b.lineage(
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

    /// Writes the buffered rows. Silver usage events get their `cost_spike` flags from
    /// `spike`: the p99 per service of every cost seen so far (the history, and this
    /// run's events up to here), so a run's files are right when they are written and
    /// only earlier chunks of a long run may need correcting.
    fn flush(
        &mut self,
        root: &Path,
        name: &str,
        touched: &mut BTreeSet<String>,
        spike: Option<(&BTreeMap<String, f64>, f64)>,
    ) -> Result<usize> {
        let mut paths = Vec::new();
        paths.extend(self.bronze.flush(root, name)?);
        paths.extend(self.quarantine.flush(root, name)?);
        match spike {
            Some((p99, factor)) => {
                paths.extend(self.silver.flush_patched(root, name, &|dir, b| {
                    let service = dir.rsplit_once("service=").map(|(_, s)| s);
                    let p = service.and_then(|s| p99.get(s)).copied();
                    gold::set_cost_spike(&b, p, factor)
                })?)
            }
            None => paths.extend(self.silver.flush(root, name)?),
        }
        for path in &paths {
            if let Some(dir) = path.parent() {
                touched.insert(dir.to_string_lossy().into_owned());
            }
        }
        Ok(paths.len())
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

/// The indexes of the items with work (event partitions by new records, services by
/// bytes of silver files) split into at most `groups` groups of about equal work (the
/// largest first, each to the group with the least so far): partitions keyed by org
/// are uneven (69 to 119 MB at 1M events), and the run lasts as long as its largest
/// group. Always all items when `groups` is 1.
pub(crate) fn balanced_groups(new_records: &[u64], groups: usize) -> Vec<Vec<u32>> {
    let mut order: Vec<u32> = (0..new_records.len() as u32).collect();
    if groups <= 1 {
        return vec![order];
    }
    order.retain(|&p| new_records[p as usize] > 0);
    order.sort_by_key(|&p| (std::cmp::Reverse(new_records[p as usize]), p));
    let mut out: Vec<(u64, Vec<u32>)> = vec![(0, Vec::new()); groups.min(order.len()).max(1)];
    for p in order {
        if let Some(g) = out.iter_mut().min_by_key(|g| g.0) {
            g.0 += new_records[p as usize];
            g.1.push(p);
        }
    }
    out.into_iter()
        .map(|(_, mut ps)| {
            ps.sort_unstable();
            ps
        })
        .collect()
}

/// The name under which a group of event partitions writes its files: the topic alone
/// when the group is all `count` partitions, else with the partition numbers
/// (`raw.usage_events~0+3`). The ranges in the names are sums of the group's
/// positions, which only grow, so two runs that group the partitions differently never
/// write the same name.
fn group_label(topic: &str, partitions: &[u32], count: usize) -> String {
    if partitions.len() == count {
        return topic.to_owned();
    }
    let ps: Vec<String> = partitions.iter().map(u32::to_string).collect();
    format!("{topic}~{}", ps.join("+"))
}

/// What one event writer did.
#[derive(Default)]
struct GroupOut {
    events_in: u64,
    files_written: usize,
    touched: BTreeSet<String>,
}

/// One raw usage event with what became of it, decoded for the writer.
struct Decoded {
    lineage: Lineage,
    /// Kept, or quarantined with a copy of the raw line for its quarantine row (only
    /// then: a kept event's row needs none of it). A copy, not a slice of the read
    /// batch: a slice would hold the reader's whole batch buffer until the writer
    /// is done, where the reader reuses it at once.
    outcome: std::result::Result<(SilverEvent, EventFlags), (Reason, eventlog::Bytes)>,
    bronze: BronzeRow,
}

/// Where a record's bronze row comes from.
enum BronzeRow {
    /// Not in bronze: quarantined before it could be typed, or a duplicate.
    None,
    /// The typed line (boxed: most rows are rebuilt from silver instead).
    Typed(Box<BronzeEvent>),
    /// Rebuilt from the kept event's silver record ([`BronzeEvent::of_kept`]), its
    /// strings borrowed when the row is written.
    OfKept,
}

/// What the processor made of raw offset `o`: its silver message or its quarantine
/// reason (outputs of offsets before `o` were compacted by an earlier run).
fn outcome_of<R: PartitionReader, Q: PartitionReader>(
    o: u64,
    silver: &mut Cursor<R, SilverParts>,
    quarantine: &mut Cursor<Q, Reason>,
) -> Result<std::result::Result<(SilverEvent, EventFlags), Reason>> {
    while silver.peek()?.is_some_and(|(ro, _)| *ro < o) {
        silver.pop();
    }
    while quarantine.peek()?.is_some_and(|(ro, _)| *ro < o) {
        quarantine.pop();
    }
    if silver.peek()?.is_some_and(|(ro, _)| *ro == o) {
        let (_, (event, flags, _)) = silver.pop().context("peeked")?;
        Ok(Ok((event, flags)))
    } else if quarantine.peek()?.is_some_and(|(ro, _)| *ro == o) {
        Ok(Err(quarantine.pop().context("peeked")?.1))
    } else {
        bail!("no processor output although the processor committed past it")
    }
}

/// Reads the raw event partitions and the processor's outputs for them (or applies
/// the rules, when reprocessing), and sends decoded batches to the writer.
struct Decoder<'a, L: Log> {
    log: &'a L,
    topic: &'static str,
    old: &'a Manifest,
    t: &'a Targets,
    master: &'a MasterTables,
    reprocess_all: bool,
    /// The event partitions this decoder reads.
    partitions: &'a [u32],
}

impl<L: Log> Decoder<'_, L> {
    fn run(
        &self,
        tx: &std::sync::mpsc::SyncSender<Result<Vec<Decoded>>>,
        written: &std::sync::mpsc::Receiver<Vec<Decoded>>,
    ) -> Result<()> {
        const BATCH: usize = 4096;
        let topic = self.topic;
        let (old, t) = (self.old, self.t);
        let ends = t.raw.get(topic).cloned().unwrap_or_default();
        let mut seen = SeenIds::default();
        let mut lineages = LineageBuilder::default();
        let mut batch = Vec::with_capacity(BATCH);
        let mut spare: Vec<Vec<Decoded>> = Vec::new();
        // Every partition open at once, read in turns of BATCH records: the input
        // then advances through event time together, and a date's rows land in few
        // files rather than in one per partition and chunk.
        let mut parts = Vec::new();
        for (p, &end) in ends.iter().enumerate() {
            let p = p as u32;
            let from = old.position(topic, p);
            if end <= from || !self.partitions.contains(&p) {
                continue;
            }
            let out_end = |topic: &str| {
                if self.reprocess_all {
                    return 0;
                }
                t.out
                    .get(topic)
                    .and_then(|v| v.get(p as usize))
                    .copied()
                    .unwrap_or(0)
            };
            parts.push((
                p,
                Cursor::new(self.log, topic, p, from, end, own_offset)?,
                Cursor::new(
                    self.log,
                    SILVER_TOPIC,
                    p,
                    old.position(SILVER_TOPIC, p),
                    out_end(SILVER_TOPIC),
                    decode_silver,
                )?,
                Cursor::new(
                    self.log,
                    QUARANTINE_TOPIC,
                    p,
                    old.position(QUARANTINE_TOPIC, p),
                    out_end(QUARANTINE_TOPIC),
                    decode_quarantine,
                )?,
            ));
        }
        let mut progress = vec![i64::MIN; parts.len()];
        loop {
            // The partition that is furthest behind: least event time at the end of
            // its last turn (record timestamps are event times; each partition is in
            // time order, and they hold different shares of the events, so turns by
            // time keep them together). Lines without an event time carry their
            // ingestion time, so one turn's end, not the next record, is the measure.
            let mut next = None;
            for (i, part) in parts.iter_mut().enumerate() {
                if part.1.peek()?.is_some() && next.is_none_or(|(_, t)| progress[i] < t) {
                    next = Some((i, progress[i]));
                }
            }
            let Some((i, _)) = next else { break };
            {
                let (p, raw, silver, quarantine) = &mut parts[i];
                let p = *p;
                let mut turn = 0;
                while turn < BATCH {
                    let Some((o, rec)) = raw.next()? else {
                        break;
                    };
                    turn += 1;
                    progress[i] = rec.record.timestamp_ms;
                    let value = &rec.record.value;
                    // Reprocessing types the line once, for the rules and for bronze;
                    // otherwise the processor's verdict comes with no typed line.
                    let (outcome, parsed) = if self.reprocess_all {
                        let parsed = parse_event(value);
                        let outcome = match &parsed {
                            Ok(b) => match validate_event(b.clone(), self.master, &mut seen) {
                                Outcome::Kept { record, flags } => Ok((record, flags)),
                                Outcome::Quarantined { reason } => Err(reason),
                            },
                            Err(reason) => Err(*reason),
                        };
                        (outcome, Some(parsed))
                    } else {
                        let outcome = outcome_of(o, silver, quarantine)
                            .with_context(|| format!("{topic}/{p} offset {o}"))?;
                        (outcome, None)
                    };
                    let kept_but = |r: Reason| anyhow::anyhow!("{topic}/{p}@{o}: kept but {r:?}");
                    let bronze = match &outcome {
                        Ok((e, flags)) => match parsed {
                            Some(typed) => BronzeRow::Typed(Box::new(typed.map_err(kept_but)?)),
                            None if BronzeEvent::of_kept(e, flags, value).is_some() => {
                                BronzeRow::OfKept
                            }
                            None => {
                                BronzeRow::Typed(Box::new(parse_event(value).map_err(kept_but)?))
                            }
                        },
                        Err(reason) if reason.in_bronze() => {
                            match parsed.unwrap_or_else(|| parse_event(value)) {
                                Ok(typed) => BronzeRow::Typed(Box::new(typed)),
                                Err(_) => BronzeRow::None,
                            }
                        }
                        Err(_) => BronzeRow::None,
                    };
                    // Free what the writer is done with, here where it was allocated,
                    // and keep the vectors for the next batches.
                    while let Ok(mut done) = written.try_recv() {
                        done.clear();
                        spare.push(done);
                    }
                    batch.push(Decoded {
                        lineage: lineage(&mut lineages, &rec, topic, p),
                        outcome: outcome.map_err(|r| (r, eventlog::Bytes::copy_from_slice(value))),
                        bronze,
                    });
                    if batch.len() == BATCH
                        && tx
                            .send(Ok(std::mem::replace(
                                &mut batch,
                                spare.pop().unwrap_or_else(|| Vec::with_capacity(BATCH)),
                            )))
                            .is_err()
                    {
                        return Ok(()); // the writer stopped (with its own error)
                    }
                }
            }
        }
        if !batch.is_empty() {
            let _ = tx.send(Ok(batch));
        }
        Ok(())
    }
}

pub struct Run<'a, L: Log> {
    log: &'a L,
    lake: &'a Lake,
    settings: &'a Settings,
}

impl<'a, L: Log + Sync> Run<'a, L>
where
    L::Reader: Send,
{
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
        // A lake damaged from outside (a file deleted or cut short) is rebuilt from
        // the log, the source of truth.
        let current = self.lake.manifest()?;
        let damaged = self.lake.damaged(&current)?;
        let reprocess_all = reprocess_all || !damaged.is_empty();
        if !damaged.is_empty() {
            tracing::error!(
                files = ?damaged,
                "lake files are missing or damaged; rebuilding the lake from the log"
            );
        }
        let t = targets(self.log, self.settings.event_partitions)?;
        let old = if reprocess_all {
            Manifest::default()
        } else {
            current
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

        let phase_done = |phase: &str, since: Instant| {
            tracing::debug!(phase, seconds = since.elapsed().as_secs_f64(), "phase done");
        };
        let phase = Instant::now();
        let master = self.master(root, &old, &mut m, t, &mut touched, &mut summary)?;
        phase_done("master data", phase);
        let phase = Instant::now();
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
        phase_done("usage events", phase);
        let phase = Instant::now();
        self.speed(root, &old, &mut m, t, &mut touched, &mut summary)?;
        phase_done("speed tables", phase);
        let phase = Instant::now();
        summary.files_merged = self.merge(&touched)?;
        phase_done("merges", phase);
        summary.compact_seconds = started.elapsed().as_secs_f64();

        let gold_started = Instant::now();
        let thresholds = old.spike_thresholds.clone();
        // The files written so far go to disk while gold is computed.
        let outcome = std::thread::scope(|scope| -> Result<_> {
            let early = scope.spawn(|| crate::lake::sync_early(root));
            let outcome = gold::compute(root, self.settings, &thresholds).and_then(|o| {
                gold::write_accounting(root, t.raw.iter().map(|(k, v)| (*k, v.iter().sum())))?;
                Ok(o)
            });
            summary.gold_seconds = gold_started.elapsed().as_secs_f64();
            let synced = early
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("the early sync panicked")));
            let outcome = outcome?;
            synced?;
            Ok(outcome)
        })?;
        summary.spike_rewrites = outcome.rewritten_files;
        m.spike_thresholds = outcome.thresholds;

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
            let from = old.position(topic, 0);
            let mut seen: HashSet<String> = HashSet::new();
            let mut sinks = Sinks::new(source);
            let mut lineages = LineageBuilder::default();
            let mut cur = Cursor::new(self.log, topic, 0, 0, end, own_offset)?;
            while let Some((_, rec)) = cur.next()? {
                // Parsed once: the typed row is bronze, and the rules go on from it.
                let parsed = schemas::parse_master(source, &rec.record.value);
                let outcome = match &parsed {
                    Ok(r) => schemas::validate_master(r.clone(), &tables, &mut seen),
                    Err(reason) => Outcome::Quarantined { reason: *reason },
                };
                if let Outcome::Kept { record, .. } = &outcome {
                    tables.absorb(record);
                }
                if rec.offset < from {
                    continue;
                }
                let l = lineage(&mut lineages, &rec, topic, 0);
                let mut cells = Vec::new();
                // Bronze is the row as typed (before credits are imputed): kept rows
                // and those quarantined after typing.
                let typed = match &outcome {
                    Outcome::Kept { .. } => parsed.ok(),
                    Outcome::Quarantined { reason } if reason.in_bronze() => parsed.ok(),
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
                    sinks.flush(root, &file_name(topic, from, end), touched, None)?;
            }
            m.set_position(topic, 0, end.max(from));
        }
        Ok(tables)
    }

    /// Usage events: each raw record with its outcome, from the processor's topics
    /// (incremental) or from the rules (`--reprocess-all`). The partitions are split
    /// between two writers, each fed by its own decoding thread; reprocessing uses
    /// one, so that its dedup sees every partition.
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
        let writers = if reprocess_all { 1 } else { 2 };
        let new_records: Vec<u64> = (0..ends.len())
            .map(|p| ends[p].saturating_sub(old.position(topic, p as u32)))
            .collect();
        let groups = balanced_groups(&new_records, writers);
        let split = groups.len();
        let results: Vec<Result<GroupOut>> = std::thread::scope(|scope| {
            let handles: Vec<_> = groups
                .iter()
                .map(|g| {
                    scope.spawn(move || {
                        self.event_group(g, split, root, old, t, master, reprocess_all)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("an event writer panicked")))
                })
                .collect()
        });
        for r in results {
            let r = r?;
            summary.events_in += r.events_in;
            summary.files_written += r.files_written;
            touched.extend(r.touched);
        }
        for (p, &end) in ends.iter().enumerate() {
            let p = p as u32;
            m.set_position(topic, p, end.max(old.position(topic, p)));
            for out in [SILVER_TOPIC, QUARANTINE_TOPIC] {
                let e = t.out.get(out).and_then(|v| v.get(p as usize)).copied();
                m.set_position(out, p, e.unwrap_or(0).max(old.position(out, p)));
            }
        }
        Ok(())
    }

    /// The event partitions `partitions` (one of `split` groups): decoded on a second
    /// thread, written here.
    #[allow(clippy::too_many_arguments)]
    fn event_group(
        &self,
        partitions: &[u32],
        split: usize,
        root: &Path,
        old: &Manifest,
        t: &Targets,
        master: &MasterTables,
        reprocess_all: bool,
    ) -> Result<GroupOut> {
        let topic = Source::UsageEvents.raw_topic();
        let ends = t.raw.get(&topic).cloned().unwrap_or_default();
        let mine = |p: u32| partitions.contains(&p);
        // Each writer's files carry its partitions in their names: the ranges in the
        // names are sums of those partitions' positions.
        let label = group_label(topic, partitions, ends.len());
        let mut out = GroupOut::default();
        let touched = &mut out.touched;
        // The row budget is shared by the writers.
        let flush_rows = (self.settings.flush_rows / split).max(1);
        let source = Source::UsageEvents;
        let mut sinks = Sinks::new(source);
        let mut spare = Vec::new();
        // cost_spike when rows are written: with the last run's thresholds (the
        // history's), or, on a first run, the p99 of the costs seen so far in this
        // one (at most COSTS_KEPT of them). gold::compute then checks every file
        // against the exact thresholds of the whole history and corrects the few
        // that disagree.
        const COSTS_KEPT: usize = 4_000_000;
        let mut costs: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        let mut kept_costs = 0usize;
        let collect = old.spike_thresholds.is_empty();
        let factor = self.settings.spike_factor;
        let provisional = |costs: &mut BTreeMap<String, Vec<f64>>| {
            if collect {
                gold::p99_by_service(costs)
            } else {
                old.spike_thresholds.clone()
            }
        };
        // Positions summed over partitions: the range of the file names.
        let mut chunk_start: u64 = (0..ends.len() as u32)
            .filter(|p| mine(*p))
            .map(|p| old.position(topic, p))
            .sum();
        let mut done = chunk_start;
        std::thread::scope(|scope| -> Result<()> {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Vec<Decoded>>>(4);
            // Written batches go back to be freed by the thread that allocated them
            // (freeing across threads contends on the allocator's locks).
            let (done_tx, done_rx) = std::sync::mpsc::sync_channel::<Vec<Decoded>>(8);
            let mut dirs = rows::DirNames::default();
            let decoder = Decoder {
                log: self.log,
                topic,
                old,
                t,
                master,
                reprocess_all,
                partitions,
            };
            scope.spawn(move || {
                if let Err(e) = decoder.run(&tx, &done_rx) {
                    let _ = tx.send(Err(e));
                }
            });
            let mut waited = std::time::Duration::ZERO;
            let mut flushing = std::time::Duration::ZERO;
            loop {
                let w = Instant::now();
                let Ok(batch) = rx.recv() else { break };
                waited += w.elapsed();
                let batch = batch?;
                for d in &batch {
                    let l = &d.lineage;
                    let mut cells = recycle(std::mem::take(&mut spare));
                    let bronze = match (&d.bronze, &d.outcome) {
                        (BronzeRow::Typed(b), _) => Some(b.borrowed()),
                        (BronzeRow::OfKept, Ok((e, flags))) => Some(BronzeEvent::rebuilt(e, flags)),
                        _ => None,
                    };
                    if let Some(b) = bronze {
                        rows::bronze_event_row(&mut cells, b, l);
                        sinks
                            .bronze
                            .push(dirs.date_of_micros(b.ts_micros), &cells)?;
                    }
                    match &d.outcome {
                        Ok((event, flags)) => {
                            // cost_spike is set when the rows are written (Sinks::flush).
                            let sample =
                                schemas::stats::spike_sample(event.cost_usd, flags.cost_negative);
                            if let (true, Some(c)) = (collect && kept_costs < COSTS_KEPT, sample) {
                                kept_costs += 1;
                                match costs.get_mut(&*event.service) {
                                    Some(v) => v.push(c),
                                    None => {
                                        costs.insert(event.service.to_string(), vec![c]);
                                    }
                                }
                            }
                            rows::silver_event_row(&mut cells, event, flags, l);
                            sinks.silver.push(dirs.silver(event), &cells)?;
                        }
                        Err((reason, value)) => {
                            rows::quarantine_row(&mut cells, source, value, *reason, l);
                            sinks.quarantine.push("", &cells)?;
                        }
                    }
                    spare = recycle(cells);
                    out.events_in += 1;
                    done += 1;
                    if sinks.buffered() >= flush_rows {
                        let f = Instant::now();
                        let p99 = provisional(&mut costs);
                        out.files_written += sinks.flush(
                            root,
                            &file_name(&label, chunk_start, done),
                            touched,
                            Some((&p99, factor)),
                        )?;
                        chunk_start = done;
                        flushing += f.elapsed();
                    }
                }
                let _ = done_tx.try_send(batch);
            }
            tracing::debug!(
                waited_for_decoder = waited.as_secs_f64(),
                flushing = flushing.as_secs_f64(),
                "usage events written"
            );
            Ok(())
        })?;
        tracing::debug!(events = done, "usage events read; writing the last chunk");
        if done > chunk_start {
            let p99 = provisional(&mut costs);
            out.files_written += sinks.flush(
                root,
                &file_name(&label, chunk_start, done),
                touched,
                Some((&p99, factor)),
            )?;
        }
        Ok(out)
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
            let mut dirs = rows::DirNames::default();
            let mut spare = Vec::with_capacity(12);
            for (p, &end) in ends.iter().enumerate() {
                let p = p as u32;
                let from = old.position(topic, p);
                if end <= from {
                    continue;
                }
                if topic == WINDOWS_TOPIC {
                    let mut cur = Cursor::new(self.log, topic, p, from, end, decode_window)?;
                    while let Some((o, w)) = cur.next()? {
                        let mut cells = recycle(std::mem::take(&mut spare));
                        rows::window_row(&mut cells, &w, p, o);
                        sink.push(dirs.date_of_micros(w.window_start), &cells)?;
                        spare = recycle(cells);
                        done += 1;
                    }
                } else {
                    let mut cur = Cursor::new(self.log, topic, p, from, end, decode_late)?;
                    while let Some((o, w)) = cur.next()? {
                        let mut cells = recycle(std::mem::take(&mut spare));
                        rows::late_row(&mut cells, &w, p, o);
                        sink.push(dirs.date_of_micros(w.event_time), &cells)?;
                        spare = recycle(cells);
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
            // Merges join files of the tables written from the topics (gold is
            // rewritten whole, never merged).
            write_parquet(&target, &schema, RowOrder::Log, batches)?;
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

    #[test]
    fn partitions_are_split_into_groups_of_about_equal_work() {
        // The 1M run's raw partitions (MB): {0,2} against {1,3} would be 161 against 206.
        let g = balanced_groups(&[69, 87, 92, 119], 2);
        assert_eq!(g, vec![vec![0, 3], vec![1, 2]]);
        // Partitions without new records are left out; one group takes everything.
        assert_eq!(balanced_groups(&[0, 5, 0, 7], 2), vec![vec![3], vec![1]]);
        assert_eq!(balanced_groups(&[0, 0, 0, 7], 2), vec![vec![3]]);
        assert_eq!(balanced_groups(&[0, 5, 0, 7], 1), vec![vec![0, 1, 2, 3]]);
        // Every partition with records lands in exactly one group.
        let sizes: Vec<u64> = (0..13).map(|i| (i * 37 % 11) as u64).collect();
        let mut all: Vec<u32> = balanced_groups(&sizes, 2).concat();
        all.sort_unstable();
        let expected: Vec<u32> = (0..13).filter(|&p| sizes[p as usize] > 0).collect();
        assert_eq!(all, expected);
    }

    #[test]
    fn a_group_names_its_partitions_unless_it_has_them_all() {
        let t = "raw.usage_events";
        assert_eq!(group_label(t, &[0, 3], 4), "raw.usage_events~0+3");
        assert_eq!(group_label(t, &[3], 4), "raw.usage_events~3");
        assert_eq!(group_label(t, &[0, 1, 2, 3], 4), t);
        // The label survives the file name's parsing.
        let n = file_name(&group_label(t, &[1, 2], 4), 5, 9);
        assert_eq!(parse_file_range(&n), Some(("raw.usage_events~1+2", 5, 9)));
    }
}
