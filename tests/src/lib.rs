//! Helpers of the end-to-end tests: run the pipeline's pieces on a landing directory
//! and read back what the topics hold. (A test harness, not a product crate: it may
//! depend on every binary crate.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use eventlog::{EmbeddedLog, FsyncPolicy, Log, LogConfig, PartitionReader, StoredRecord};

pub fn landing() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/landing")
}

pub fn log_config() -> LogConfig {
    LogConfig {
        fsync: FsyncPolicy::Never,
        ..LogConfig::default()
    }
}

pub fn open_log(data: &Path) -> EmbeddedLog {
    EmbeddedLog::open(data.join("log"), log_config()).unwrap()
}

/// `producer replay` in event-time order, in process.
pub fn replay(log: &EmbeddedLog, data: &Path, landing: &Path) {
    let opts = producer::replay::ReplayOptions {
        landing: landing.to_owned(),
        order: producer::replay::Order::EventTime,
        speedup: None,
        follow: false,
        new_run: false,
        state_dir: data.join("producer"),
        event_partitions: 4,
        batch_records: 2000,
        sort_chunk_entries: 1_000_000,
        follow_poll: Duration::from_millis(50),
    };
    producer::replay::replay(log, &opts, &AtomicBool::new(false)).unwrap();
}

pub fn processor_config(from: processor::FromOffset) -> processor::ProcessorConfig {
    processor::ProcessorConfig {
        from,
        until_idle: true,
        ..Default::default()
    }
}

/// `processor --until-idle`, in process.
pub fn process(log: &EmbeddedLog, data: &Path, from: processor::FromOffset) {
    let state = processor::state::State::open(&data.join("state/processor")).unwrap();
    let mut p =
        processor::Processor::open(log, state, processor_config(from), Default::default()).unwrap();
    p.run().unwrap();
}

/// Every record of every partition of a topic, in offset order.
pub fn read_topic(log: &EmbeddedLog, topic: &str) -> BTreeMap<u32, Vec<StoredRecord>> {
    let mut out = BTreeMap::new();
    let n = log.partitions(topic).unwrap().unwrap_or(0);
    for p in 0..n {
        let mut r = log.reader(topic, p, 0).unwrap();
        let mut v = Vec::new();
        loop {
            let batch = r.poll(100_000).unwrap();
            if batch.is_empty() {
                break;
            }
            v.extend(batch);
        }
        out.insert(p, v);
    }
    out
}

/// A topic's records as comparable bytes: (partition, key, value, headers).
pub type Flat = Vec<(u32, Option<Vec<u8>>, Vec<u8>, Vec<(String, Vec<u8>)>)>;

pub fn flat(log: &EmbeddedLog, topic: &str) -> Flat {
    read_topic(log, topic)
        .into_iter()
        .flat_map(|(p, recs)| {
            recs.into_iter().map(move |r| {
                (
                    p,
                    r.record.key.map(|k| k.to_vec()),
                    r.record.value.to_vec(),
                    r.record
                        .headers
                        .into_iter()
                        .map(|(n, v)| (n.into_owned(), v.to_vec()))
                        .collect(),
                )
            })
        })
        .collect()
}

/// An upsert topic read as the table it stands for: the last value per key.
pub fn table(
    log: &EmbeddedLog,
    topic: &str,
    key_fields: &[&str],
) -> BTreeMap<String, serde_json::Value> {
    let mut out = BTreeMap::new();
    for (_, recs) in read_topic(log, topic) {
        for r in recs {
            let v: serde_json::Value = serde_json::from_slice(&r.record.value).unwrap();
            let key = key_fields
                .iter()
                .map(|f| v[*f].to_string())
                .collect::<Vec<_>>()
                .join("|");
            out.insert(key, v);
        }
    }
    out
}

pub fn header(r: &StoredRecord, name: &str) -> String {
    String::from_utf8_lossy(r.record.header(name).unwrap_or_default()).into_owned()
}
