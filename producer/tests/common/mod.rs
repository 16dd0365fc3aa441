#![allow(dead_code, clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use eventlog::{EmbeddedLog, FsyncPolicy, Log, LogConfig, PartitionReader};
use schemas::{MasterTables, Outcome, Source};

pub fn landing() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/landing")
}

pub fn fast_config() -> LogConfig {
    LogConfig {
        fsync: FsyncPolicy::Never,
        ..LogConfig::default()
    }
}

/// Every record of every partition: (topic, partition) -> [(key, value, headers)].
pub type Dump = BTreeMap<(String, u32), Vec<(Option<Vec<u8>>, Vec<u8>, Vec<(String, Vec<u8>)>)>>;

pub fn dump(log: &EmbeddedLog) -> Dump {
    let mut out = Dump::new();
    for (topic, n) in log.topics().unwrap() {
        for p in 0..n {
            let mut r = log.reader(&topic, p, 0).unwrap();
            let mut v = Vec::new();
            loop {
                let batch = r.poll(10_000).unwrap();
                if batch.is_empty() {
                    break;
                }
                v.extend(batch.into_iter().map(|s| {
                    (
                        s.record.key.map(|k| k.to_vec()),
                        s.record.value.to_vec(),
                        s.record
                            .headers
                            .into_iter()
                            .map(|(n, v)| (n.into_owned(), v.to_vec()))
                            .collect(),
                    )
                }));
            }
            out.insert((topic.clone(), p), v);
        }
    }
    out
}

/// Applies the `schemas` rules to what the raw topics hold, the way a consumer of the
/// log would: master topics first (orgs first), then every event partition.
#[derive(Debug, Default)]
pub struct RuleCounts {
    pub read: BTreeMap<String, u64>,
    pub kept: BTreeMap<String, u64>,
    pub reasons: BTreeMap<(String, String), u64>,
    pub flags: BTreeMap<String, u64>,
}

pub fn apply_rules(log: &EmbeddedLog) -> RuleCounts {
    let d = dump(log);
    let mut counts = RuleCounts::default();
    let mut master = MasterTables::default();
    for source in Source::MASTER {
        let mut seen = HashSet::new();
        for (_, value, _) in d
            .get(&(source.raw_topic().to_owned(), 0))
            .map(Vec::as_slice)
            .unwrap_or(&[])
        {
            *counts.read.entry(source.name().into()).or_default() += 1;
            match schemas::master::apply_master_rules(source, value, &master, &mut seen) {
                Outcome::Kept { record, flags } => {
                    master.absorb(&record);
                    *counts.kept.entry(source.name().into()).or_default() += 1;
                    for f in schemas::MasterFlags::names(source) {
                        if flags.get(f) {
                            *counts.flags.entry((*f).into()).or_default() += 1;
                        }
                    }
                }
                Outcome::Quarantined { reason } => {
                    *counts
                        .reasons
                        .entry((source.name().into(), reason.code().into()))
                        .or_default() += 1;
                }
            }
        }
    }
    let mut seen: HashSet<String> = HashSet::new();
    let topic = Source::UsageEvents.raw_topic();
    for ((t, _), records) in &d {
        if *t != topic {
            continue;
        }
        for (_, value, _) in records {
            *counts.read.entry("usage_events".into()).or_default() += 1;
            match schemas::event::apply_event_rules(value, &master, &mut seen) {
                Outcome::Kept { flags, .. } => {
                    *counts.kept.entry("usage_events".into()).or_default() += 1;
                    for (name, on) in schemas::EventFlags::NAMES.iter().zip(flags.values()) {
                        if on {
                            *counts.flags.entry((*name).into()).or_default() += 1;
                        }
                    }
                }
                Outcome::Quarantined { reason } => {
                    *counts
                        .reasons
                        .entry(("usage_events".into(), reason.code().into()))
                        .or_default() += 1;
                }
            }
        }
    }
    counts
}

/// Rows per CSV file, counted by the csv crate directly from the files.
pub fn csv_rows(dir: &Path) -> HashMap<String, u64> {
    let mut out = HashMap::new();
    for source in Source::MASTER {
        let path = dir.join(format!("{}.csv", source.name()));
        let mut r = csv::ReaderBuilder::new()
            .flexible(true)
            .from_path(&path)
            .unwrap();
        out.insert(
            source.raw_topic().to_owned(),
            r.byte_records().count() as u64,
        );
    }
    out
}
