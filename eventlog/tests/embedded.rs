//! The embedded log against a model, against torn and corrupt tails, and across
//! processes.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use eventlog::{EmbeddedLog, Error, FsyncPolicy, Log, LogConfig, PartitionReader, Record};
use proptest::prelude::*;

fn small_config() -> LogConfig {
    LogConfig {
        fsync: FsyncPolicy::Never,
        segment_bytes: 600,
        index_interval_bytes: 100,
        ..LogConfig::default()
    }
}

fn rec(i: u64) -> Record {
    Record {
        key: (!i.is_multiple_of(3)).then(|| format!("k{}", i % 7).into_bytes().into()),
        value: format!("value-{i}-{}", "x".repeat((i % 13) as usize))
            .into_bytes()
            .into(),
        headers: vec![("line_no".into(), i.to_string().into_bytes().into())],
        timestamp_ms: i as i64,
    }
}

fn read_all(log: &EmbeddedLog, topic: &str, p: u32, from: u64) -> Vec<(u64, Record)> {
    let mut r = log.reader(topic, p, from).unwrap();
    let mut out = Vec::new();
    loop {
        let batch = r.poll(17).unwrap();
        if batch.is_empty() {
            break;
        }
        out.extend(batch.into_iter().map(|s| (s.offset, s.record)));
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Random appends across two partitions, random reads, reopens: the log always
    /// equals a plain Vec per partition.
    #[test]
    fn behaves_like_a_vec(ops in proptest::collection::vec((0u32..2, 0usize..9, any::<bool>(), 0u64..200), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let mut log = EmbeddedLog::open(dir.path(), small_config()).unwrap();
        log.ensure_topic("t", 2).unwrap();
        let mut model: Vec<Vec<Record>> = vec![Vec::new(), Vec::new()];
        let mut n = 0u64;
        for (p, len, reopen, read_from) in ops {
            let batch: Vec<Record> = (0..len).map(|_| { n += 1; rec(n) }).collect();
            let base = log.append("t", p, &batch).unwrap();
            prop_assert_eq!(base, model[p as usize].len() as u64);
            model[p as usize].extend(batch);
            if reopen {
                drop(log);
                log = EmbeddedLog::open(dir.path(), small_config()).unwrap();
            }
            for q in 0..2u32 {
                let m = &model[q as usize];
                prop_assert_eq!(log.end_offset("t", q).unwrap(), m.len() as u64);
                let from = read_from.min(m.len() as u64);
                let got = read_all(&log, "t", q, from);
                let want: Vec<(u64, Record)> = m.iter().cloned().enumerate().skip(from as usize).map(|(i, r)| (i as u64, r)).collect();
                prop_assert_eq!(got, want);
            }
        }
    }
}

fn segment_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    v.sort();
    v
}

/// Writes 3 batches and returns (log file, length before the last batch, total).
fn three_batches(root: &Path) -> (std::path::PathBuf, u64, u64) {
    let log = EmbeddedLog::open(root, LogConfig::default()).unwrap();
    log.ensure_topic("t", 1).unwrap();
    log.append("t", 0, &[rec(1), rec(2)]).unwrap();
    log.append("t", 0, &[rec(3)]).unwrap();
    let seg = segment_files(&root.join("t/0")).pop().unwrap();
    let before = std::fs::metadata(&seg).unwrap().len();
    log.append("t", 0, &[rec(4), rec(5), rec(6)]).unwrap();
    drop(log);
    let total = std::fs::metadata(&seg).unwrap().len();
    (seg, before, total)
}

#[test]
fn torn_tail_at_every_byte_is_truncated_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let (seg, before, total) = three_batches(dir.path());
    let pristine = std::fs::read(&seg).unwrap();
    for cut in before..total {
        std::fs::write(&seg, &pristine[..cut as usize]).unwrap();
        let log = EmbeddedLog::open(dir.path(), LogConfig::default()).unwrap();
        // The writer opens (and truncates) on the first append.
        let base = log.append("t", 0, &[rec(100)]).unwrap();
        assert_eq!(base, 3, "cut at {cut}");
        let got = read_all(&log, "t", 0, 0);
        assert_eq!(got.len(), 4);
        assert_eq!(got[3].1, rec(100));
        drop(log);
    }
}

#[test]
fn corrupt_last_batch_at_every_byte_is_truncated_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let (seg, before, total) = three_batches(dir.path());
    let pristine = std::fs::read(&seg).unwrap();
    for at in before..total {
        let mut bytes = pristine.clone();
        bytes[at as usize] ^= 0x5a;
        std::fs::write(&seg, &bytes).unwrap();
        let log = EmbeddedLog::open(dir.path(), LogConfig::default()).unwrap();
        // A reader in another process sees the corrupt tail as not there yet.
        assert_eq!(log.end_offset("t", 0).unwrap(), 3, "byte {at}");
        assert_eq!(read_all(&log, "t", 0, 0).len(), 3, "byte {at}");
        let base = log.append("t", 0, &[rec(100)]).unwrap();
        assert_eq!(base, 3, "byte {at}");
        assert!(std::fs::metadata(&seg).unwrap().len() > before);
        assert_eq!(read_all(&log, "t", 0, 0)[3].1, rec(100));
        drop(log);
    }
}

#[test]
fn corruption_in_the_middle_is_reported_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let (seg, before, _) = three_batches(dir.path());
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[(before - 3) as usize] ^= 0xff; // inside batch 2 (offset 2), not the tail
    std::fs::write(&seg, &bytes).unwrap();
    let log = EmbeddedLog::open(dir.path(), LogConfig::default()).unwrap();
    let mut r = log.reader("t", 0, 0).unwrap();
    let first = r.poll(2).unwrap();
    assert_eq!(first.len(), 2);
    match r.poll(10) {
        Err(Error::Corrupt {
            topic,
            partition,
            from_offset,
            ..
        }) => {
            assert_eq!((topic.as_str(), partition, from_offset), ("t", 0, 2));
        }
        other => panic!("expected a corruption error, got {other:?}"),
    }
    // The writer refuses to open rather than cut away the intact batch after it.
    let err = log.append("t", 0, &[rec(9)]).unwrap_err();
    assert!(
        matches!(err, Error::Corrupt { from_offset: 2, .. }),
        "{err}"
    );
}

#[test]
fn second_writer_gets_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let a = EmbeddedLog::open(dir.path(), LogConfig::default()).unwrap();
    a.ensure_topic("t", 1).unwrap();
    a.append("t", 0, &[rec(1)]).unwrap();
    let b = EmbeddedLog::open(dir.path(), LogConfig::default()).unwrap();
    let err = b.append("t", 0, &[rec(2)]).unwrap_err();
    assert!(matches!(err, Error::Locked { .. }), "{err}");
    assert!(
        err.to_string().contains("already open for writing"),
        "{err}"
    );
    // Readers are fine while the writer holds the lock.
    assert_eq!(read_all(&b, "t", 0, 0).len(), 1);
    drop(a);
    b.append("t", 0, &[rec(2)]).unwrap();
}

#[test]
fn segments_roll_and_reads_cross_them() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path(), small_config()).unwrap();
    log.ensure_topic("t", 1).unwrap();
    for i in 0..50 {
        log.append("t", 0, &[rec(i)]).unwrap();
    }
    assert!(segment_files(&dir.path().join("t/0")).len() > 3);
    let got = read_all(&log, "t", 0, 37);
    assert_eq!(got.first().unwrap().0, 37);
    assert_eq!(got.len(), 13);
}

#[test]
fn truncate_drops_whole_batches_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path(), small_config()).unwrap();
    log.ensure_topic("t", 1).unwrap();
    for i in 0..40 {
        log.append("t", 0, &[rec(2 * i), rec(2 * i + 1)]).unwrap();
    }
    assert!(segment_files(&dir.path().join("t/0")).len() > 3);
    assert!(log.truncate("t", 0, 31).is_err(), "31 is inside a batch");
    assert!(log.truncate("t", 0, 81).is_err(), "beyond the end");
    log.truncate("t", 0, 30).unwrap();
    assert_eq!(log.end_offset("t", 0).unwrap(), 30);
    assert_eq!(log.append("t", 0, &[rec(1000)]).unwrap(), 30);
    let got = read_all(&log, "t", 0, 0);
    assert_eq!(got.len(), 31);
    assert_eq!(got[29].1, rec(29));
    assert_eq!(got[30].1, rec(1000));
    drop(log);
    let log = EmbeddedLog::open(dir.path(), small_config()).unwrap();
    assert_eq!(log.end_offset("t", 0).unwrap(), 31);
    log.truncate("t", 0, 0).unwrap();
    assert_eq!(read_all(&log, "t", 0, 0).len(), 0);
    assert_eq!(log.append("t", 0, &[rec(5)]).unwrap(), 0);
}

#[test]
fn poll_returns_at_most_max_and_position_follows() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path(), LogConfig::default()).unwrap();
    log.ensure_topic("t", 1).unwrap();
    log.append("t", 0, &(0..10).map(rec).collect::<Vec<_>>())
        .unwrap();
    let mut r = log.reader("t", 0, 2).unwrap();
    let a = r.poll(3).unwrap();
    assert_eq!(a.iter().map(|s| s.offset).collect::<Vec<_>>(), [2, 3, 4]);
    assert_eq!(r.position(), 5);
    assert!(
        r.wait(Duration::ZERO).unwrap(),
        "buffered records count as available"
    );
    let b = r.poll(100).unwrap();
    assert_eq!(
        b.iter().map(|s| s.offset).collect::<Vec<_>>(),
        [5, 6, 7, 8, 9]
    );
    assert_eq!(r.position(), 10);
}

#[test]
fn committed_offsets_per_consumer() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!(log.committed("proc", "t", 0).unwrap(), None);
    log.commit("proc", &[("t", 0, 5), ("t", 1, 7)]).unwrap();
    log.commit("other", &[("t", 0, 1)]).unwrap();
    drop(log);
    let log = EmbeddedLog::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!(log.committed("proc", "t", 0).unwrap(), Some(5));
    assert_eq!(log.committed("proc", "t", 1).unwrap(), Some(7));
    assert_eq!(log.committed("other", "t", 0).unwrap(), Some(1));
    assert!(log.committed("../evil", "t", 0).is_err());
}

#[test]
fn names_cannot_escape_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path(), LogConfig::default()).unwrap();
    for bad in ["../x", "a/b", "", ".hidden", "_consumers"] {
        assert!(
            matches!(log.ensure_topic(bad, 1), Err(Error::InvalidName(_))),
            "{bad}"
        );
    }
    assert!(matches!(
        log.append("nope", 0, &[rec(1)]),
        Err(Error::UnknownTopic(_))
    ));
    log.ensure_topic("t", 2).unwrap();
    assert!(matches!(
        log.append("t", 2, &[rec(1)]),
        Err(Error::UnknownPartition { .. })
    ));
    assert_eq!(log.topics().unwrap(), vec![("t".to_string(), 2)]);
}

/// A topic of several partitions written before keys were partitioned by murmur2
/// (its `topic.json` names no partitioner) is refused with the way out; a topic of one
/// partition, where every hash agrees, is not.
#[test]
fn a_topic_partitioned_by_crc32c_is_refused_with_the_way_out() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path(), LogConfig::default()).unwrap();
    log.ensure_topic("events", 4).unwrap();
    log.ensure_topic("single", 1).unwrap();
    assert_eq!(log.partitions("events").unwrap(), Some(4));
    drop(log);
    for topic in ["events", "single"] {
        std::fs::write(
            dir.path().join(topic).join("topic.json"),
            if topic == "events" {
                r#"{"partitions": 4}"#
            } else {
                r#"{"partitions": 1}"#
            },
        )
        .unwrap();
    }
    let log = EmbeddedLog::open(dir.path(), LogConfig::default()).unwrap();
    let e = log.append("events", 0, &[rec(1)]).unwrap_err().to_string();
    assert!(e.contains("partitioned by CRC32C"), "{e}");
    assert!(e.contains("producer replay"), "{e}");
    assert!(log.ensure_topic("events", 4).is_err());
    assert_eq!(log.partitions("single").unwrap(), Some(1));
    log.append("single", 0, &[rec(1)]).unwrap();
}

#[test]
fn fsync_always_and_interval_policies_append() {
    for policy in [
        FsyncPolicy::Always,
        FsyncPolicy::Interval(Duration::from_millis(5)),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = LogConfig {
            fsync: policy,
            ..LogConfig::default()
        };
        let log = EmbeddedLog::open(dir.path(), cfg).unwrap();
        log.ensure_topic("t", 1).unwrap();
        for i in 0..20 {
            log.append("t", 0, &[rec(i)]).unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
        log.flush().unwrap();
        assert_eq!(read_all(&log, "t", 0, 0).len(), 20);
    }
}

const CHILD_ENV: &str = "EVENTLOG_TEST_CHILD_DIR";
const CHILD_BATCHES: u64 = 300;

/// The writer half of `writer_and_reader_in_two_processes`; does nothing unless the
/// parent started it.
#[test]
fn child_writer() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let log = EmbeddedLog::open(&dir, LogConfig::default()).unwrap();
    log.ensure_topic("t", 1).unwrap();
    for b in 0..CHILD_BATCHES {
        let batch: Vec<Record> = (0..10).map(|i| rec(b * 10 + i)).collect();
        log.append("t", 0, &batch).unwrap();
        if b.is_multiple_of(20) {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

#[test]
fn writer_and_reader_in_two_processes() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path(), small_config()).unwrap();
    log.ensure_topic("t", 1).unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_writer", "--nocapture"])
        .env(CHILD_ENV, dir.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut reader = log.reader("t", 0, 0).unwrap();
    let mut seen = 0u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen < CHILD_BATCHES * 10 && Instant::now() < deadline {
        for r in reader.poll(1000).unwrap() {
            assert_eq!(r.offset, seen, "offsets arrive in order, none skipped");
            assert_eq!(r.record, rec(seen), "never a partial or foreign record");
            seen += 1;
        }
        reader.wait(Duration::from_millis(200)).unwrap();
    }
    assert!(child.wait().unwrap().success());
    assert_eq!(seen, CHILD_BATCHES * 10);
    assert_eq!(log.end_offset("t", 0).unwrap(), CHILD_BATCHES * 10);
}
